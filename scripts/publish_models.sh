#!/usr/bin/env bash
# Publishes an int8 copy of a CLIP checkpoint with a built site, so that the hosted demo's
# default model comes from the site's own origin at a quarter of the f32 bytes:
# `effarch quantize` into DIST/models/NAME (config.json, model.safetensors, vocab.json,
# merges.txt: what the page reads), then DIST/models.json naming it the default, with the
# bytes the page's first load reads (the vision tower; the text tower only with labels).
# The Pages workflow runs it on ViT-B/16, downloaded from the hub on the runner; CI runs it on
# the tiny fixture in tests/e2e/run.sh, which then loads the published copy in the page.
#
#   scripts/publish_models.sh DIST MODEL_DIR NAME
# EFFARCH: the effarch binary to use (default: target/release/effarch, built when missing).
set -euo pipefail
[ $# = 3 ] || { echo "usage: $0 DIST MODEL_DIR NAME" >&2; exit 2; }
dist=$1 model=$2 name=$3
[ -d "$dist" ] || { echo "$dist: not a directory (build the site first: trunk build --release)" >&2; exit 2; }
for f in config.json model.safetensors; do
  [ -f "$model/$f" ] || { echo "$model/$f: missing (MODEL_DIR is a checkpoint in the hub layout)" >&2; exit 2; }
done
effarch=${EFFARCH:-target/release/effarch}
[ -x "$effarch" ] || cargo build --release --quiet --bin effarch
out="$dist/models/$name"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$effarch" quantize --model "$model" --precision int8 --out "$tmp/q" --json >"$tmp/report.json"
mkdir -p "$out"
for f in config.json model.safetensors vocab.json merges.txt; do
  [ -f "$tmp/q/$f" ] && cp "$tmp/q/$f" "$out/$f"
done
# models.json: the default model and what it costs (python3: every runner and CI machine has it).
python3 - "$dist" "$name" "$model/model.safetensors" <<'PY'
import json, os, struct, sys
dist, name, source = sys.argv[1], sys.argv[2], sys.argv[3]
path = f"{dist}/models/{name}/model.safetensors"
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
header.pop("__metadata__", None)
vision = lambda k: k.startswith("vision_model.") or k.startswith("visual_projection.") or k == "logit_scale"
size = lambda keep: sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if keep(k))
entry = {
    "name": name,
    "path": f"./models/{name}",
    "precision": "int8",
    "vision_bytes": size(vision),
    "bytes": size(lambda k: True),
    "source_bytes": os.path.getsize(source),
}
json.dump({"default": entry["path"], "models": [entry]}, open(f"{dist}/models.json", "w"), indent=2)
print(f"published {entry['path']}: vision tower {entry['vision_bytes'] / 1e6:.1f} MB int8 (the page's first load), whole checkpoint {entry['bytes'] / 1e6:.1f} MB (the source: {entry['source_bytes'] / 1e6:.1f} MB)")
PY
