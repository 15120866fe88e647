// The README's example of another page using the package built by `wasm-pack build --target web`
// (served here from /pkg/). The e2e test opens this page and checks what it prints.
import init, { ClipSession } from '/pkg/effarch.js';

const out = document.getElementById('out');
try {
  await init();
  const model = new URL('/fixtures/clip-tiny', location.href).href; // or https://huggingface.co/openai/clip-vit-base-patch16/resolve/main
  const session = await ClipSession.fromUrl(model, true, 'auto');
  const image = new Uint8Array(await (await fetch('/samples/coffee.jpg')).arrayBuffer());
  const report = await session.run(image, { keep: 0.5, scorer: 'kq-norm', layers: [1], labels: ['a cup of coffee', 'a rocket'] });
  // backend 'auto' timed one layer on each backend: what it took and the figures.
  const choice = session.choice();
  out.textContent = JSON.stringify({ device: report.device, auto: choice?.reason, figures: choice?.figures.length, kept: report.kept[0].indices.length, dim: report.image_embeds.length, total_ms: report.timings_ms.total, labels: report.label_probs.length });
} catch (e) {
  out.textContent = `error: ${e.message ?? e}`;
}
