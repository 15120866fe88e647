// The sample images under the upload box (www/samples/, copied by Trunk), as buttons.
export const SAMPLES = [
  ['chelsea-cat', 'a cat'],
  ['astronaut', 'an astronaut'],
  ['coffee', 'a cup of coffee'],
  ['rocket', 'a rocket'],
];

/** One button per sample in `container`; a click calls `onPick(name)`. */
export function sampleGallery(container, onPick) {
  for (const [name, alt] of SAMPLES) {
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.sample = name;
    b.title = alt;
    const img = document.createElement('img');
    img.src = `samples/${name}.jpg`;
    img.alt = alt;
    b.append(img);
    b.onclick = () => onPick(name);
    container.append(b);
  }
}
