// The page's worker: loads the wasm core, downloads (or reads from the cache) only the
// tensors a run needs, and runs the model, so the page itself never blocks.
//
// Messages in:  {id, type: 'load' | 'loadFiles' | 'run' | 'compare' | 'sweep' | 'evaluate' | 'clearCache', ...}
// Messages out: {id, type: 'progress' | 'done' | 'error' | 'sweepPoint', ...}
import { loadEngine } from './engine.js';
import { fetchModel, readLocalFiles, clearCache } from './loader.js';
import { serve } from './rpc.js';

// The wasm core: the threaded build when the page is cross-origin isolated (engine.js), with
// the thread count the page put in this worker's URL.
const ready = loadEngine({ threads: Number(new URL(self.location.href).searchParams.get('threads') || 0) });

let session = null;
let loaded = null; // {key, withText, backend}

function post(msg) {
  self.postMessage(msg);
}

let sizes = null; // {f32, int8} bytes of the loaded tensors, where known

async function load(id, { model, base, backend, withText, precision = 'f32' }) {
  const { engine } = await ready;
  const key = `${base}|${backend}|${precision}`;
  if (session && loaded && loaded.key === key && (loaded.withText || !withText)) {
    return describe(false, model);
  }
  const progress = (p) => post({ id, type: 'progress', ...p });
  // int8: the f32 tensors are quantised once downloaded and only the int8 copy is cached.
  const int8 = precision === 'int8' ? { quantize: (b) => engine.quantizeCheckpoint(b), isLinearWeight: (n, s) => engine.isLinearWeight(n, Uint32Array.from(s)) } : null;
  const files = await fetchModel(base, withText, progress, int8);
  await create(files, withText, backend, precision);
  loaded = { key, withText, backend };
  sizes = files.sizes;
  return describe(files.fromCache, model);
}

async function loadFiles(id, { files, backend, precision = 'f32' }) {
  await ready;
  const f = await readLocalFiles(files);
  await create(f, f.withText, backend, precision);
  loaded = { key: `local:${files.weights.name}:${files.weights.size}|${backend}|${precision}`, withText: f.withText, backend };
  sizes = null;
  return describe(false, files.weights.name);
}

async function create(files, withText, backend, precision) {
  if (session) {
    session.free();
    session = null;
  }
  const { engine } = await ready;
  const s = await engine.ClipSession.create(files.config, files.weights, withText, backend, precision);
  if (withText) s.setTokenizer(files.vocab, files.merges);
  session = s;
}

function describe(fromCache, model) {
  return {
    device: session.device(),
    fallback: session.fallback() ?? null,
    numLayers: session.numLayers(),
    grid: session.grid(),
    fromCache,
    model,
    choice: session.choice() ?? null,
    precision: session.precision(),
    sizes,
  };
}

// The last f32 embeddings by image, model and options, so that an int8 run of the same can
// report `cos_to_f32` (the page shows it).
const f32Embeds = new Map();

async function run(_id, { image, options, key }) {
  if (!session) throw new Error('no model is loaded yet');
  const r = await session.run(new Uint8Array(image), options);
  const k = key && `${key}|${JSON.stringify({ ...options, labels: [] })}`;
  if (k && session.precision() === 'f32') {
    if (f32Embeds.size >= 64) f32Embeds.clear();
    f32Embeds.set(k, r.image_embeds);
  } else if (k && f32Embeds.has(k)) {
    r.cos_to_f32 = cosine(r.image_embeds, f32Embeds.get(k));
  }
  return r;
}

/** Every method on one image at one keep (the core shares the embedding and early layers). */
async function compare(_id, { image, options }) {
  if (!session) throw new Error('no model is loaded yet');
  const report = await session.compare(new Uint8Array(image), options);
  // Each card's title from the core's list of methods (a report names the scorer as it ran).
  const { engine } = await ready;
  for (const m of report.methods) m.title = engine.pruningMethod(m.scorer).short;
  return report;
}

/** p = 1.0 … 0.3 on one image: latency and cos-sim of each pruned embedding to the unpruned one. */
async function sweep(id, { image, options, keeps }) {
  if (!session) throw new Error('no model is loaded yet');
  const bytes = new Uint8Array(image);
  const base = { ...options, labels: [], compareUnpruned: false };
  // Warm-up (pipelines, buffers), then the unpruned reference.
  await session.run(bytes, { ...base, keep: 1 });
  const ref = await session.run(bytes, { ...base, keep: 1 });
  const points = [];
  for (const keep of keeps) {
    const r = keep >= 1 ? ref : await session.run(bytes, { ...base, keep });
    const point = { keep, ms: r.timings_ms.total, cos: cosine(r.image_embeds, ref.image_embeds), flopRatio: r.flops / r.flops_unpruned };
    points.push(point);
    post({ id, type: 'sweepPoint', point });
  }
  return { points, device: ref.device };
}

function cosine(a, b) {
  let d = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    d += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? d / Math.sqrt(na * nb) : 0;
}

/**
 * Zero-shot evaluation over a folder: `items` [{file, path, label}] in batches, progress after
 * each, then the summary `{rows, csv, svg}` and the images/s.
 */
async function evaluate(id, { items, options, title, batch = 8 }) {
  if (!session) throw new Error('no model is loaded yet');
  const { engine } = await ready;
  const results = [];
  const t0 = performance.now();
  for (let i = 0; i < items.length; i += batch) {
    const chunk = items.slice(i, i + batch);
    const images = await Promise.all(chunk.map(async (it) => new Uint8Array(await it.file.arrayBuffer())));
    const r = await session.evalBatch(images, Uint32Array.from(chunk.map((it) => it.label)), chunk.map((it) => it.path), options);
    results.push(...r);
    const s = (performance.now() - t0) / 1000;
    post({ id, type: 'progress', evaluated: results.length, total: items.length, rate: results.length / s, eta: ((items.length - results.length) * s) / results.length });
  }
  return engine.evalSummary(results, options, title);
}

const handlers = {
  async hello() {
    const { engine, threads, build, note } = await ready;
    const auto = await engine.autoChoice();
    return { defaultDevice: auto.device, autoReason: auto.reason ?? '', adapter: auto.adapter ?? null, cpu: engine.cpuDevice(), threads, build, threadNote: note, methods: engine.pruningMethods() };
  },
  load,
  loadFiles,
  run,
  compare,
  sweep,
  evaluate,
  async clearCache() {
    return { removed: await clearCache() };
  },
};

// One message at a time: runs share one model, and the core refuses overlapping runs.
serve(handlers);
