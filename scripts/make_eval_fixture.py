"""Builds tests/fixtures/eval-tiny: a small labelled set in the ImageFolder layout for the
`effarch eval clip` tests, from the page's four samples (www/samples, with their licences)
and synthetic variants of each (crops, a mirror, greyscale, a colour shift), 64×64 PNGs.

    python scripts/make_eval_fixture.py          # needs Pillow
"""
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/eval-tiny"
CLASSES = {"cat": "chelsea-cat.jpg", "astronaut": "astronaut.jpg", "cup_of_coffee": "coffee.jpg", "rocket": "rocket.jpg"}


def variants(im):
    w, h = im.size
    s = min(w, h)
    yield "center", im.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    yield "mirror", ImageOps.mirror(im)
    yield "corner", im.crop((0, 0, int(w * 0.8), int(h * 0.8)))
    yield "grey", ImageOps.grayscale(im).convert("RGB")
    r, g, b = im.split()
    yield "shift", Image.merge("RGB", (b, r, g))


for cls, src in CLASSES.items():
    im = Image.open(ROOT / "www/samples" / src).convert("RGB")
    d = OUT / cls
    d.mkdir(parents=True, exist_ok=True)
    for name, v in variants(im):
        v.resize((64, 64), Image.BICUBIC).save(d / f"{name}.png", optimize=True)
(OUT / "labels.csv").write_text("path,label\n" + "".join(f"{c}/{n}.png,{c}\n" for c in CLASSES for n in ["center", "mirror", "corner", "grey", "shift"]))
(OUT / "LICENSES.md").write_text("Derived from the page's samples; see www/samples/LICENSES.md for each source image's licence.\n")
print(f"wrote {OUT}")
