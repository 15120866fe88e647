// effarch (wasm SIMD128, the npm package's `benchClip`) against onnxruntime-web on the same
// ViT-B/16 vision tower, one browser session, one thread each; run by scripts/bench_browser.sh.
//   node bench.mjs ROOT MODEL.onnx [iters]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [root, model, itersArg] = process.argv.slice(2);
const iters = Number(itersArg ?? 5);
const here = path.dirname(new URL(import.meta.url).pathname);
const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html', '.onnx': 'application/octet-stream' };
const page = `<!doctype html><meta charset="utf-8"><script type="module">
window.bench = async (iters) => {
  const out = {};
  const eff = await import('/pkg/effarch.js');
  await eff.default();
  const rows = await eff.benchClip({ keeps: [1, 0.7, 0.5], batches: [1], iters, backend: 'cpu' });
  out.effarch = rows.map(r => ({ keep: r.keep, ms: r.ms_median, ratio: r.ratio }));
  const ort = await import('/ort/ort.wasm.min.mjs');
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = '/ort/';
  const buf = await (await fetch('/model.onnx')).arrayBuffer();
  const sess = await ort.InferenceSession.create(buf, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  const x = new Float32Array(3 * 224 * 224).map(() => Math.random() * 2 - 1);
  const feeds = { pixel_values: new ort.Tensor('float32', x, [1, 3, 224, 224]) };
  await sess.run(feeds);
  const ts = [];
  for (let i = 0; i < iters; i++) { const t = performance.now(); await sess.run(feeds); ts.push(performance.now() - t); }
  ts.sort((a, b) => a - b);
  out.ort = { version: ort.env.versions?.web ?? '?', ms: ts[Math.floor(ts.length / 2)] };
  return out;
};
</script>`;
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url.split('?')[0]);
  let file;
  if (url === '/' || url === '/bench.html') { res.writeHead(200, { 'content-type': 'text/html' }); return res.end(page); }
  if (url === '/model.onnx') file = model;
  else if (url.startsWith('/ort/')) file = path.join(here, 'node_modules/onnxruntime-web/dist', url.slice(5));
  else if (url.startsWith('/pkg/')) file = path.join(root, 'pkg', url.slice(5));
  if (!file || !fs.existsSync(file)) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'],
});
try {
  const p = await browser.newPage();
  p.on('console', m => { if (m.type() === 'error') console.error('page:', m.text()); });
  await p.goto(`http://127.0.0.1:${server.address().port}/bench.html`);
  const r = await p.evaluate(n => window.bench(n), iters);
  const base = r.effarch.find(e => e.keep >= 1).ms;
  console.log(`ViT-B/16 vision tower, headless Chromium, 1 thread each, median of ${iters}`);
  console.log(`onnxruntime-web ${r.ort.version} (wasm SIMD):  ${r.ort.ms.toFixed(1)} ms`);
  for (const e of r.effarch) console.log(`effarch wasm SIMD128 keep ${e.keep.toFixed(2)}: ${e.ms.toFixed(1)} ms (ratio ${e.ratio.toFixed(3)})`);
  console.log(`effarch / onnxruntime-web (unpruned): ${(base / r.ort.ms).toFixed(3)}`);
  console.log(JSON.stringify(r));
} finally {
  await browser.close();
  server.close();
}
