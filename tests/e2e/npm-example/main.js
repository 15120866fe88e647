// The README's example of another page using the npm package built by scripts/build_pkg.sh
// (served here from /pkg/, with the cross-origin-isolation headers, so the package picks its
// multi-threaded build). The e2e test opens this page and checks what it prints.
import loadEngine from '/pkg/index.js';

const out = document.getElementById('out');
try {
  // relaxed: false keeps the plain SIMD128 threaded build (the page itself loads the
  // relaxed-SIMD one in this browser), so the e2e test runs each build somewhere.
  const { engine, threads, build } = await loadEngine({ threads: 2, relaxed: false });
  const model = new URL('/fixtures/clip-tiny', location.href).href; // or https://huggingface.co/openai/clip-vit-base-patch16/resolve/main
  const session = await engine.ClipSession.fromUrl(model, true, 'auto');
  const image = new Uint8Array(await (await fetch('/samples/coffee.jpg')).arrayBuffer());
  const report = await session.run(image, { keep: 0.5, scorer: 'kq-norm', layers: [1], labels: ['a cup of coffee', 'a rocket'] });
  // backend 'auto' timed one layer on each backend: what it took and the figures.
  const choice = session.choice();
  out.textContent = JSON.stringify({ build, threads, device: report.device, auto: choice?.reason, figures: choice?.figures.length, kept: report.kept[0].indices.length, dim: report.image_embeds.length, total_ms: report.timings_ms.total, labels: report.label_probs.length });
} catch (e) {
  out.textContent = `error: ${e.message ?? e}`;
}
