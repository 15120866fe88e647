// The CLIP tab's wiring: controls, URL state, images, runs and the sweep. Drawing is in
// overlay.js and report.js. Model loading and inference run in worker.js, so nothing here
// blocks; every request carries an id and its reply comes back as a promise.
import { drawSweep } from './chart.js';
import { compareCard } from './compare.js';
import { folderSet, renderEval } from './evaluation.js';
import { modelBase } from './loader.js';
import { animateSteps, drawOverlay as draw } from './overlay.js';
import { copyLinkButton, imageInputs, pickFiles, siteDefaultModel, readUrl as readParams, threadsControl, workerUrl, writeUrl as writeParams } from './page.js';
import { renderReport } from './report.js';
import { sampleGallery } from './samples.js';
import { connect } from './rpc.js';
import { backendLabel, backendTitle, loadWithChoice, panel, setThreadCount, sizeNote } from './ui.js';

const $ = (id) => document.getElementById(id);
// `view`: '' (one method) or 'compare' (every method side by side); `sort`: the compare grid's order.
// `precision`: int8 by default (a quarter of the download, cos ≥ 0.999 to f32 in the tests at
// ViT-B/16 size), f32 one click away.
const DEFAULTS = { model: 'openai/clip-vit-base-patch16', sample: 'chelsea-cat', image: '', scorer: 'kq-norm', layers: '1', keep: '0.5', backend: 'auto', precision: 'int8', labels: '', view: '', sort: '' };
const SWEEP_KEEPS = [1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3];

// ---- worker RPC --------------------------------------------------------------------------
const call = connect(workerUrl('./worker.js'), (msg) => showError(`The worker failed: ${msg}. Reload the page.`));

// ---- state -------------------------------------------------------------------------------
const state = { ...DEFAULTS };
let imageBytes = null; // ArrayBuffer of the current image
let imageBitmap = null; // for drawing
let imageName = '';
let lastReport = null;
let modelInfo = null;
let localFiles = null;
let auto = null; // why "auto" runs where it does: {reason, source: 'rule' | 'measured' | 'cached'}
let adapter = null; // the browser's GPU adapter (keys the cache of measured choices)

function readUrl() {
  if (readParams(state, DEFAULTS).has('image')) state.sample = '';
  // Links made before the precision control: backend=cpu-int8.
  if (state.backend === 'cpu-int8') Object.assign(state, { backend: 'cpu', precision: 'int8' });
  if (!['int8', 'f32'].includes(state.precision)) state.precision = DEFAULTS.precision;
}

function writeUrl() {
  // The image: a sample by name, or an image URL; an uploaded file cannot travel in a link.
  const sample = !state.image && state.sample && state.sample !== DEFAULTS.sample;
  writeParams(state, DEFAULTS, { skip: ['sample'], extra: sample ? { sample: state.sample } : {} });
}

function syncControls() {
  $('model').value = state.model;
  $('keep').value = state.keep;
  $('keep-out').textContent = Number(state.keep).toFixed(2);
  $('scorer').value = state.scorer;
  $('layers').value = state.layers;
  tomeHint();
  $('backend').value = state.backend;
  $('precision').value = state.precision;
  $('labels').value = state.labels;
  $('compare-sort').value = state.sort;
  for (const b of document.querySelectorAll('.samples button')) b.classList.toggle('selected', b.dataset.sample === state.sample);
}

/** The Scorer menu and the evaluation's methods, from the core's list (`pruningMethods`): a new
 * method in the core appears here with no change to the page. Language-model methods (FastV,
 * DART) act in Qwen2.5-VL only, so the CLIP page leaves them out. */
function scorerMenu(methods) {
  const vision = methods.filter((m) => m.tower === 'vision');
  $('scorer').replaceChildren(
    ...vision.map((m) => {
      const o = document.createElement('option');
      o.value = m.name;
      o.textContent = m.label;
      return o;
    }),
  );
  $('scorer').value = state.scorer;
  evalScorers = vision.filter((m) => m.compared).map((m) => m.name);
}

// ToMe merges in every layer: the pruning layers do not apply to it.
function tomeHint() {
  const tome = state.scorer.startsWith('tome');
  $('layers').disabled = tome;
  $('layers').title = tome ? 'ToMe merges tokens in every layer; the pruning layers apply to the other scorers' : '';
}

function options() {
  const keep = Number(state.keep);
  const layers = state.layers
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 0) throw new Error(`pruning layer "${s}" is not a layer number (0, 1, 2, …)`);
      return n;
    });
  if (!layers.length) throw new Error('give at least one pruning layer');
  return { keep, scorer: state.scorer, layers, labels: labels(), compareUnpruned: true };
}

function labels() {
  return state.labels.split(',').map((s) => s.trim()).filter(Boolean);
}

// ---- UI helpers --------------------------------------------------------------------------
const { setStatus, showError, setBusy, task, progress } = panel({ status: 'status', error: 'error', progress: 'progress', busyClass: 'busy' });

function backendBadge(device, fallback) {
  const b = $('backend-badge');
  const gpu = device.startsWith('gpu');
  b.textContent = backendLabel(device);
  b.title = backendTitle(device, state.backend, auto);
  b.dataset.backend = gpu ? 'webgpu' : 'cpu';
  b.dataset.auto = state.backend === 'auto' ? (auto?.source ?? '') : 'manual';
  b.classList.toggle('warn', !!fallback);
  if (fallback) showError(`The GPU failed and the model now runs on the CPU: ${fallback}`);
}

// ---- model -------------------------------------------------------------------------------
/** Makes sure the model for the current settings is loaded (the worker keeps it between runs). */
async function ensureModel(withText) {
  if (localFiles) {
    if (!modelInfo) {
      setStatus('Reading local files…');
      const key = `local:${localFiles.weights?.name}`;
      modelInfo = await loadOn(key, (backend) => call('loadFiles', { files: localFiles, backend, precision: state.precision }));
      afterLoad();
    }
    return;
  }
  const base = modelBase(state.model, location.href);
  try {
    const info = await loadOn(state.model, (backend) => call('load', { model: state.model, base, backend, withText, precision: state.precision }, progress));
    const fresh = !modelInfo || info.device !== modelInfo.device || info.model !== modelInfo.model;
    modelInfo = info;
    if (fresh) afterLoad();
  } catch (e) {
    modelInfo = null;
    if (/could not reach/.test(e.message)) $('local-files').open = true;
    throw e;
  } finally {
    $('progress').hidden = true;
  }
}

/** Loads on the user's backend or `auto`'s measured (or cached) choice (ui.js), per precision. */
async function loadOn(model, load) {
  const r = await loadWithChoice({ backend: state.backend, adapter, model: `${model}|${state.precision}`, load, setStatus, what: 'layer' });
  if (r.auto) auto = r.auto;
  return r.info;
}

function afterLoad() {
  backendBadge(modelInfo.device, modelInfo.fallback);
  $('precision-size').textContent = sizeNote(modelInfo);
  setStatus(`Model ready${modelInfo.fromCache ? ' (from the cache)' : ''}: ${modelInfo.numLayers} layers, ${modelInfo.grid}×${modelInfo.grid} patches, ${modelInfo.precision}.`);
}

/** What the weights cost: "int8: 87.0 MiB in this browser's cache (f32: 345.0 MiB)". */
// ---- images ------------------------------------------------------------------------------
async function setImage(bytes, name) {
  imageBytes = bytes;
  imageName = name;
  try {
    imageBitmap = await createImageBitmap(new Blob([bytes]));
  } catch {
    imageBitmap = null; // undecodable: the core's error will say why
  }
}

async function loadSample(name) {
  const r = await fetch(new URL(`samples/${name}.jpg`, location.href));
  if (!r.ok) throw new Error(`sample ${name}: HTTP ${r.status}`);
  await setImage(await r.arrayBuffer(), name);
}

async function loadImageUrl(url) {
  let r;
  try {
    r = await fetch(new URL(url, location.href));
  } catch (e) {
    throw new Error(`image ${url}: ${e.message} (the host may not allow cross-origin reads)`);
  }
  if (!r.ok) throw new Error(`image ${url}: HTTP ${r.status}`);
  await setImage(await r.arrayBuffer(), url.split('/').pop());
}

async function useFile(file) {
  if (!file) return;
  state.sample = '';
  state.image = '';
  syncControls();
  writeUrl();
  await setImage(await file.arrayBuffer(), file.name);
  await run();
}

// ---- runs --------------------------------------------------------------------------------
let running = null;
let rerun = false;
let runsDone = 0;
/** Runs with the current settings; calls during a run coalesce into one more run after it. */
async function run() {
  if (running) {
    rerun = true;
    return running;
  }
  setBusy(1);
  running = (async () => {
    do {
      rerun = false;
      const ok = await runOnce();
      // Finished runs (and whether the last one failed), for tests and automation.
      document.body.dataset.runs = String(++runsDone);
      document.body.dataset.outcome = ok ? 'ok' : 'error';
    } while (rerun);
  })();
  try {
    await running;
  } finally {
    running = null;
    setBusy(-1);
  }
}

/** One run; resolves to whether it succeeded (failures are shown in the page). */
async function runOnce() {
  if (!imageBytes) return false;
  if (state.view === 'compare') return compareOnce();
  showCompare(false);
  const done = await task('Running…', async () => {
    const opts = options();
    await ensureModel(opts.labels.length > 0);
    setStatus('Running…');
    // `key`: the image and model, so the worker can give an int8 run its cos to an f32 one.
    const report = await call('run', { image: imageBytes.slice(0), options: opts, key: `${imageName}|${state.model}` });
    lastReport = report;
    // The last report, for tests and automation (e.g. comparing embeddings across builds).
    globalThis.effarchLastReport = report;
    backendBadge(report.device, report.fallback);
    render(report);
    const t = report.timings_ms.total;
    const c = report.timings_ms.compare || 0;
    const cmp = c > 0 ? ` (+ ${c.toFixed(1)} ms for the unpruned comparison pass)` : '';
    setStatus(`Done in ${t.toFixed(1)} ms · ${(1000 / t).toFixed(1)} img/s${cmp} · ${imageName}`);
    return true;
  });
  return done === true;
}

// ---- compare methods -----------------------------------------------------------------------
let lastCompare = null;

function showCompare(on) {
  $('compare-out').hidden = !on;
  document.querySelector('.result-grid').hidden = on;
}

/** Every method at the current keep and layers on the current image, as a grid of cards. */
async function compareOnce() {
  const done = await task('Comparing methods…', async () => {
    const o = options();
    await ensureModel(o.labels.length > 0);
    setStatus('Comparing methods…');
    const report = await call('compare', { image: imageBytes.slice(0), options: { keep: o.keep, layers: o.layers, labels: o.labels } });
    lastCompare = report;
    globalThis.effarchLastCompare = report; // for tests and automation
    backendBadge(report.device, report.fallback);
    showCompare(true);
    renderCompare();
    setStatus(`Compared ${report.methods.length} methods in ${report.total_ms.toFixed(0)} ms: their passes ${report.passes_ms.toFixed(0)} ms, against ${report.sequential_ms.toFixed(0)} ms one after another from scratch · ${imageName}`);
    document.body.dataset.compares = String(Number(document.body.dataset.compares || 0) + 1);
    return true;
  });
  return done === true;
}


function renderCompare() {
  const r = lastCompare;
  if (!r) return;
  const order = r.methods.map((m, i) => ({ m, i }));
  const key = { cos: (x) => -x.m.cos_to_unpruned, ms: (x) => x.m.ms, flops: (x) => x.m.flops_ratio }[state.sort];
  if (key) order.sort((a, b) => key(a) - key(b) || a.i - b.i);
  const grid = $('compare-grid');
  grid.replaceChildren(
    ...order.map(({ m }) => compareCard(m, r, imageBitmap)),
  );
  const layers = state.layers;
  $('compare-note').textContent = `keep ${Number(state.keep).toFixed(2)} at layer(s) ${layers}; unpruned ${r.unpruned_ms.toFixed(1)} ms. Each method's time counts the patch embedding and the unpruned layers before its pruning layer, which ran once for all the methods. Hatched: pruned; tinted: merged into one token (ToMe, VisionZip's contextual tokens).${r.label_probs_unpruned ? ' Label bars: the method (blue) over the unpruned model (grey).' : ''}`;
}

async function sweep() {
  if (!imageBytes) return;
  await task('Sweeping keep ratios…', async () => {
    const opts = options();
    await ensureModel(opts.labels.length > 0);
    const points = [];
    $('sweep-out').hidden = false;
    drawSweep($('chart'), points, SWEEP_KEEPS);
    const res = await call('sweep', { image: imageBytes.slice(0), options: opts, keeps: SWEEP_KEEPS }, (m) => {
      if (m.type === 'sweepPoint') {
        points.push(m.point);
        drawSweep($('chart'), points, SWEEP_KEEPS);
        setStatus(`Sweeping… p = ${m.point.keep.toFixed(1)} done`);
      }
    });
    drawSweep($('chart'), res.points, SWEEP_KEEPS);
    setStatus(`Sweep done on ${res.device}.`);
  });
}

// ---- evaluating a folder -------------------------------------------------------------------
const EVAL_KEEPS = [1, 0.9, 0.7, 0.5, 0.3];
// The methods an evaluation runs: the core's default comparison set (`pruningMethods`).
let evalScorers = [];
async function evaluateFolder() {
  const files = [...($('eval-folder').files ?? [])];
  const set = folderSet(files);
  if (!set.items.length) {
    showError('Pick a folder with one sub-folder per class, each holding images (PNG, JPEG, GIF, WebP, BMP).');
    return;
  }
  await task(`Evaluating ${set.items.length} images…`, async () => {
    await ensureModel(true);
    const opts = { classes: set.classes, templates: [$('eval-template').value || 'a photo of a {}.'], keeps: EVAL_KEEPS, scorers: evalScorers, layers: options().layers };
    const title = `${state.model} on ${set.root} (${set.items.length} images, ${set.classes.length} classes), pruning at layer(s) ${opts.layers.join(',')}`;
    const res = await call('evaluate', { items: set.items, options: opts, title }, (m) => {
      if (m.type === 'progress' && m.evaluated !== undefined) setStatus(`Evaluating… ${m.evaluated}/${m.total} images · ${m.rate.toFixed(1)} img/s · ${Math.ceil(m.eta)} s left`);
    });
    renderEval(res);
    setStatus(`Evaluated ${set.items.length} images in ${set.classes.length} classes.`);
    document.body.dataset.evaluations = String(Number(document.body.dataset.evaluations || 0) + 1);
  });
}

// ---- rendering ---------------------------------------------------------------------------
function render(r) {
  const steps = r.kept;
  const stepInput = $('step');
  stepInput.max = String(Math.max(0, steps.length - 1));
  stepInput.value = stepInput.max;
  $('steps').hidden = steps.length < 2;
  drawOverlay();
  renderReport(r);
}

function drawOverlay() {
  const r = lastReport;
  const c = $('overlay');
  const si = Number($('step').value);
  const out = draw(c, imageBitmap, r, si);
  if (!out) return;
  if (r.groups) {
    c.dataset.tokens = String(out.tokens);
    delete c.dataset.pruned;
    $('pruned-count').textContent = `${r.num_patches} patches merged into ${out.tokens} tokens (${out.merged} patches share a token: one colour each)`;
    $('step-label').textContent = '';
    return;
  }
  delete c.dataset.tokens;
  c.dataset.pruned = String(out.pruned);
  c.dataset.kept = String(out.kept);
  const step = out.step;
  $('pruned-count').textContent = `${out.pruned} of ${r.num_patches} patches pruned${step ? ` after layer ${step.layer}` : ''}`;
  $('step-label').textContent = step ? `step ${si + 1}/${r.kept.length} (layer ${step.layer})` : '';
}

// ---- wiring ------------------------------------------------------------------------------
function buildSamples() {
  sampleGallery($('samples'), (name) =>
    task(`Loading ${name}…`, async () => {
      state.sample = name;
      state.image = '';
      syncControls();
      writeUrl();
      await loadSample(name);
    }).then(run),
  );
}

function onChange(id, key, { rerunModel = false, live = false } = {}) {
  const el = $(id);
  const apply = () => {
    state[key] = el.value;
    if (key === 'keep') $('keep-out').textContent = Number(el.value).toFixed(2);
    if (key === 'scorer') tomeHint();
    writeUrl();
  };
  if (live) el.addEventListener('input', apply);
  el.addEventListener('change', async () => {
    apply();
    if (rerunModel) {
      modelInfo = null;
      localFiles = key === 'model' ? null : localFiles;
    }
    await run();
  });
}

function wire() {
  onChange('keep', 'keep', { live: true });
  onChange('scorer', 'scorer');
  onChange('layers', 'layers');
  onChange('backend', 'backend', { rerunModel: true });
  onChange('precision', 'precision', { rerunModel: true });
  onChange('labels', 'labels');
  onChange('model', 'model', { rerunModel: true });
  $('load').onclick = async () => {
    state.model = $('model').value.trim();
    localFiles = null;
    modelInfo = null;
    writeUrl();
    await run();
  };
  $('run').onclick = () => {
    state.view = '';
    writeUrl();
    run();
  };
  $('compare').onclick = () => {
    state.view = 'compare';
    writeUrl();
    run();
  };
  $('compare-close').onclick = () => {
    state.view = '';
    writeUrl();
    run();
  };
  $('compare-sort').onchange = () => {
    state.sort = $('compare-sort').value;
    writeUrl();
    renderCompare();
  };
  $('sweep').onclick = () => sweep();
  $('eval-run').onclick = () => evaluateFolder();
  $('step').oninput = () => drawOverlay();
  animateSteps($('animate'), $('step'), drawOverlay);
  copyLinkButton('copy-link', writeUrl, setStatus, 'this run');
  $('clear-cache').onclick = () =>
    task('Clearing the cache…', async () => {
      const r = await call('clearCache');
      setStatus(r.removed ? 'Cached weights removed; the next load downloads again.' : 'The cache was already empty.');
    });
  $('files').onchange = async (ev) => {
    localFiles = pickFiles(ev.target.files, { config: /config\.json$/, weights: /\.safetensors$/, vocab: /vocab\.json$/, merges: /merges\.txt$/ });
    modelInfo = null;
    await run();
  };
  imageInputs($('image-file'), $('drop'), useFile);
}

async function main() {
  DEFAULTS.model = (await siteDefaultModel()) ?? DEFAULTS.model;
  state.model = DEFAULTS.model;
  readUrl();
  threadsControl('threads');
  buildSamples();
  syncControls();
  wire();
  const hello = await task('Loading the WebAssembly core…', () => call('hello'));
  if (hello) {
    adapter = hello.adapter;
    setThreadCount(hello.threads);
    document.body.dataset.threads = String(hello.threads);
    document.body.dataset.build = hello.build;
    if (hello.threadNote) $('threads').title = hello.threadNote;
    if (hello.autoReason) auto = { reason: hello.autoReason, source: 'rule' };
    backendBadge(state.backend.startsWith('cpu') ? hello.cpu : hello.defaultDevice);
    scorerMenu(hello.methods);
  }
  await task('Loading the image…', () => (state.image ? loadImageUrl(state.image) : loadSample(state.sample || DEFAULTS.sample)));
  drawOverlay();
  // Opened on the Mamba tab: no CLIP download until the CLIP tab is shown.
  if (new URLSearchParams(location.search).get('tab') === 'mamba') {
    await new Promise((resolve) => {
      const on = (e) => {
        if (e.detail !== 'clip') return;
        document.removeEventListener('effarch:tab', on);
        resolve();
      };
      document.addEventListener('effarch:tab', on);
    });
  }
  await run();
}

main();
