// effarch's wasm builds (the npm package's `benchClip` in the build `loadEngine` picks: in
// Chromium's isolated page the relaxed-SIMD threaded one, at 1 thread as a pool of one) against onnxruntime-web on the same ViT-B/16 vision tower, at
// the same thread counts (1, 2 and navigator.hardwareConcurrency), in one headless Chromium
// session: one cross-origin-isolated page per thread count (each engine sizes its pool once per
// page), each engine in its own Web Worker as the page runs effarch. Run by scripts/bench_browser.sh.
// With MAMBA_DIR (a mamba-130m-width checkpoint in the hub layout, as
// scripts/bench_mamba_reference.py writes it), effarch's Mamba decode and prefill tokens/s at
// the same thread counts, on the CPU (and WebGPU where the browser has an adapter).
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
window.bench = async (threads, iters) => {
  const out = { threads };
  // effarch in a Web Worker, as the page runs it: a worker's caller blocks while the pool
  // works, where the main thread would spin (rayon's web_spin_lock) and take a core.
  out.effarch = await new Promise((resolve, reject) => {
    const w = new Worker('/bench-worker.js', { type: 'module' });
    w.onmessage = (e) => (e.data.error ? reject(new Error(e.data.error)) : resolve(e.data));
    w.onerror = (e) => reject(new Error(e.message));
    w.postMessage({ threads, iters });
  });
  // onnxruntime-web in a Web Worker too: both engines placed alike (issue 27), on the f32
  // export and (where given) its quantize_dynamic copy: transformers.js's default q8.
  const ort = (model) => new Promise((resolve, reject) => {
    const w = new Worker('/ort-worker.js', { type: 'module' });
    w.onmessage = (e) => (e.data.error ? reject(new Error(e.data.error)) : resolve(e.data));
    w.onerror = (e) => reject(new Error(e.message));
    w.postMessage({ threads, iters, model });
  });
  out.ort = await ort('/model.onnx');
  out.ortQ8 = (await fetch('/model-q8.onnx', { method: 'HEAD' })).ok ? await ort('/model-q8.onnx') : null;
  out.cores = navigator.hardwareConcurrency;
  return out;
};
window.benchMamba = (threads, backend) => new Promise((resolve, reject) => {
  const w = new Worker('/mamba-worker.js', { type: 'module' });
  w.onmessage = (e) => (e.data.error ? reject(new Error(e.data.error)) : resolve(e.data));
  w.onerror = (e) => reject(new Error(e.message));
  w.postMessage({ threads, backend });
});
window.cores = navigator.hardwareConcurrency;
</script>`;
const worker = `import { loadEngine } from '/pkg/index.js';
self.onmessage = async ({ data: { threads, iters } }) => {
  try {
    const { engine, threads: got, build } = await loadEngine({ threads });
    const rows = await engine.benchClip({ keeps: [1, 0.7, 0.5], batches: [1], iters, backend: 'cpu' });
    // The page's int8 precision on the CPU: int8 linear layers on the SIMD128 int8 kernel,
    // unpruned and pruned (its ratios beside f32's).
    const int8 = await engine.benchClip({ keeps: [1, 0.7, 0.5], batches: [1], iters, backend: 'cpu', precision: 'int8' });
    const kernels = engine.benchGemm();
    const row = (r) => ({ keep: r.keep, ms: r.ms_median, ratio: r.ratio });
    self.postMessage({ build, threads: got, rows: rows.map(row), int8_rows: int8.map(row), int8_ms: int8.find(r => r.keep >= 1).ms_median, kernels });
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};`;
// The Mamba LM as the page's Mamba tab loads it (MambaSession.create from the checkpoint's
// bytes), then its bench(): a 512-token prefill and 64 greedy decoding steps.
const mambaWorker = `import { loadEngine } from '/pkg/index.js';
self.onmessage = async ({ data: { threads, backend } }) => {
  try {
    const { engine, threads: got, build } = await loadEngine({ threads });
    const config = await (await fetch('/mamba/config.json')).text();
    const bytes = new Uint8Array(await (await fetch('/mamba/model.safetensors')).arrayBuffer());
    const s = await engine.MambaSession.create(config, bytes, undefined, backend);
    const r = await s.bench({ promptLens: [512], decode: 64, iters: 2 });
    self.postMessage({ build, threads: got, device: r.device, row: r.rows[0] });
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};`;
const ortWorker = `self.onmessage = async ({ data: { threads, iters, model } }) => {
  try {
    const ort = await import('/ort/ort.wasm.min.mjs');
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = '/ort/';
    const buf = await (await fetch(model)).arrayBuffer();
    const sess = await ort.InferenceSession.create(buf, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
    const x = new Float32Array(3 * 224 * 224).map(() => Math.random() * 2 - 1);
    const feeds = { pixel_values: new ort.Tensor('float32', x, [1, 3, 224, 224]) };
    await sess.run(feeds);
    const ts = [];
    for (let i = 0; i < iters; i++) { const t = performance.now(); await sess.run(feeds); ts.push(performance.now() - t); }
    ts.sort((a, b) => a - b);
    self.postMessage({ version: ort.env.versions?.web ?? '?', ms: ts[Math.floor(ts.length / 2)] });
  } catch (e) {
    self.postMessage({ error: String(e.message ?? e) });
  }
};`;
const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url.split('?')[0]);
  // Cross-origin isolated: SharedArrayBuffer for both engines' threads.
  const iso = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  let file;
  if (url === '/' || url === '/bench.html') { res.writeHead(200, { 'content-type': 'text/html', ...iso }); return res.end(page); }
  if (url === '/bench-worker.js') { res.writeHead(200, { 'content-type': 'text/javascript', ...iso }); return res.end(worker); }
  if (url === '/mamba-worker.js') { res.writeHead(200, { 'content-type': 'text/javascript', ...iso }); return res.end(mambaWorker); }
  if (url === '/ort-worker.js') { res.writeHead(200, { 'content-type': 'text/javascript', ...iso }); return res.end(ortWorker); }
  if (url === '/model.onnx') file = model;
  else if (url === '/model-q8.onnx' && process.env.ONNX_Q8) file = process.env.ONNX_Q8;
  else if (url.startsWith('/mamba/') && process.env.MAMBA_DIR) file = path.join(process.env.MAMBA_DIR, path.basename(url));
  else if (url.startsWith('/ort/')) file = path.join(here, 'node_modules/onnxruntime-web/dist', url.slice(5));
  else if (url.startsWith('/pkg/')) file = path.join(root, 'pkg', url.slice(5));
  if (!file || !fs.existsSync(file)) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream', ...iso });
  fs.createReadStream(file).pipe(res);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'],
});
const url = `http://127.0.0.1:${server.address().port}/bench.html`;
try {
  const probe = await browser.newPage();
  await probe.goto(url);
  const cores = await probe.evaluate(() => window.cores);
  await probe.close();
  const counts = [...new Set([1, 2, cores])].sort((a, b) => a - b);
  const results = [];
  // MAMBA_ONLY=1: only the Mamba rows (the ViT rows take most of the run's minutes).
  for (const n of process.env.MAMBA_ONLY ? [] : counts) {
    const p = await browser.newPage();
    p.on('console', m => { if (m.type() === 'error') console.error('page:', m.text()); });
    await p.goto(url);
    results.push(await p.evaluate(([n, it]) => window.bench(n, it), [n, iters]));
    await p.close();
  }
  if (results.length) {
    console.log(`ViT-B/16 vision tower, headless Chromium (${cores} cores), median of ${iters}, ms per image`);
    console.log('threads  ORT-web f32  ORT-web q8  effarch f32 (build)          f32/ORT f32  keep 0.7  keep 0.5  effarch int8  int8/ORT q8  int8 0.7  int8 0.5');
    for (const r of results) {
      const [u, p7, p5] = [1, 0.7, 0.5].map(k => r.effarch.rows.find(e => Math.abs(e.keep - k) < 1e-6));
      const [i7, i5] = [0.7, 0.5].map(k => r.effarch.int8_rows.find(e => Math.abs(e.keep - k) < 1e-6));
      const q8 = r.ortQ8 ? r.ortQ8.ms : NaN;
      console.log(`${String(r.threads).padStart(7)}  ${r.ort.ms.toFixed(1).padStart(11)}  ${q8.toFixed(1).padStart(10)}  ${u.ms.toFixed(1).padStart(11)} (${r.effarch.build}, ${r.effarch.threads})`.padEnd(68) + `${(u.ms / r.ort.ms).toFixed(3).padStart(11)}  ${p7.ratio.toFixed(3).padStart(8)}  ${p5.ratio.toFixed(3).padStart(8)}  ${r.effarch.int8_ms.toFixed(1).padStart(12)}  ${(r.effarch.int8_ms / q8).toFixed(3).padStart(11)}  ${i7.ratio.toFixed(3).padStart(8)}  ${i5.ratio.toFixed(3).padStart(8)}`);
    }
    console.log('micro-kernel (1 thread, L1)   GFLOP/s     peak  of peak');
    for (const k of results[0].effarch.kernels ?? []) {
      const peak = k.peak_gflops == null ? ['-', '-'] : [k.peak_gflops.toFixed(1), `${(100 * k.gflops / k.peak_gflops).toFixed(0)}%`];
      console.log(`${k.kernel.padEnd(28)} ${k.gflops.toFixed(1).padStart(8)} ${peak[0].padStart(8)} ${peak[1].padStart(8)}`);
    }
    const one = results.find(r => r.threads === 1), two = results.find(r => r.threads === 2);
    if (one && two) {
      const e = one.effarch.rows.find(x => x.keep >= 1).ms / two.effarch.rows.find(x => x.keep >= 1).ms;
      console.log(`scaling 1 → 2 threads (ideal 2.00): effarch ${e.toFixed(2)}, onnxruntime-web ${(one.ort.ms / two.ort.ms).toFixed(2)}`);
    }
  }
  const mamba = [];
  if (process.env.MAMBA_DIR) {
    const runs = counts.map(n => [n, 'cpu']).concat([[1, 'webgpu']]);
    for (const [n, backend] of runs) {
      const p = await browser.newPage();
      await p.goto(url);
      try {
        mamba.push({ backend, ...(await p.evaluate(([n, b]) => window.benchMamba(n, b), [n, backend])) });
      } catch (e) {
        if (backend === 'cpu') throw e;
        console.log(`mamba on ${backend}: ${e.message.split('\n')[0]}`);
      }
      await p.close();
    }
    console.log('Mamba, mamba-130m widths (24 layers, 50280 × 768), 512-token prefill, 64 decoded tokens, median of 2');
    console.log('backend  threads  build        prefill tok/s  decode tok/s  device');
    for (const m of mamba) {
      console.log(`${m.backend.padEnd(7)}  ${String(m.threads).padStart(7)}  ${m.build.padEnd(11)}  ${m.row.prefill_tokens_per_s.toFixed(1).padStart(13)}  ${m.row.decode_tokens_per_s.toFixed(1).padStart(12)}  ${m.device}`);
    }
  }
  console.log(JSON.stringify({ ort_version: results[0]?.ort.version, results, mamba }));
} finally {
  await browser.close();
  server.close();
}
