// The Mamba tab: a Mamba LM (HF `state-spaces/mamba-130m-hf` layout) loaded whole into its
// own worker, streaming generation with tokens/s, the backend, the multi-resolution scan
// (MRSS) switch with its live skip rate, and the scaling benchmark against attention. The
// settings live in the URL next to the CLIP tab's, so a link reproduces the generation
// (same seed, same text).
import { drawScaling } from './chart.js';
import { modelBase } from './loader.js';
import { copyLinkButton, pickFiles, readUrl as readParams, renderStats, workerUrl, writeUrl as writeParams } from './page.js';
import { connect } from './rpc.js';
import { backendLabel, backendTitle, loadWithChoice, panel, setThreadCount } from './ui.js';

const $ = (id) => document.getElementById(id);
const DEFAULTS = {
  tab: 'clip',
  lm: 'state-spaces/mamba-130m-hf',
  prompt: 'The state space model',
  max: '64',
  temp: '0',
  topk: '0',
  topp: '1',
  seed: '0',
  tau: '0',
  lmbackend: 'auto',
  // f32 by default here: int8's accuracy check at mamba-130m widths (logits cos 0.983 to f32)
  // is below CLIP's 0.999; int8 decodes about 2.6× faster natively.
  lmprecision: 'f32',
  ns: '64,128,256,512,1024',
  width: '256',
};
const state = { ...DEFAULTS };
let loaded = null; // {key, device}
let localFiles = null;
let auto = null; // why "auto" runs where it does: {reason, source: 'rule' | 'measured' | 'cached'}
let adapter = null;
let runs = 0;

// ---- its own worker (the CLIP tab's stays free) --------------------------------------------
const call = connect(workerUrl('./mamba-worker.js'), (msg) => showError(`The Mamba worker failed: ${msg}. Reload the page.`));

// ---- URL state (keys the CLIP tab does not use; its keys are left alone) -------------------
const readUrl = () => readParams(state, DEFAULTS);
const writeUrl = () => writeParams(state, DEFAULTS);
const FIELDS = [
  ['lm-model', 'lm'],
  ['lm-prompt', 'prompt'],
  ['lm-max', 'max'],
  ['lm-temp', 'temp'],
  ['lm-topk', 'topk'],
  ['lm-topp', 'topp'],
  ['lm-seed', 'seed'],
  ['lm-backend', 'lmbackend'],
  ['lm-precision', 'lmprecision'],
  ['lm-bench-ns', 'ns'],
  ['lm-bench-width', 'width'],
];
function syncControls() {
  for (const [id, k] of FIELDS) $(id).value = state[k];
  const on = Number(state.tau) > 0;
  $('lm-mrss').checked = on;
  $('lm-tau').disabled = !on;
  if (on) $('lm-tau').value = state.tau;
  $('lm-tau-out').textContent = on ? Number(state.tau).toFixed(2) : 'off';
}

// ---- UI helpers ----------------------------------------------------------------------------
const { setStatus, showError, task, progress } = panel({ status: 'lm-status', error: 'lm-error', progress: 'lm-progress', busyClass: 'lm-busy' });
const stats = (items) => renderStats($('lm-stats'), items);

// ---- tabs: each tab has its own backend badge in the header --------------------------------
function showTab(tab) {
  const mamba = tab === 'mamba';
  $('clip-view').hidden = mamba;
  $('mamba-view').hidden = !mamba;
  $('backend-badge').hidden = mamba;
  $('lm-badge').hidden = !mamba;
  $('tab-clip').setAttribute('aria-selected', String(!mamba));
  $('tab-mamba').setAttribute('aria-selected', String(mamba));
  state.tab = tab;
  writeUrl();
  document.dispatchEvent(new CustomEvent('effarch:tab', { detail: tab }));
}
function badge(device) {
  const b = $('lm-badge');
  b.textContent = backendLabel(device);
  b.title = backendTitle(device, state.lmbackend, auto);
  b.dataset.backend = device.startsWith('gpu') ? 'webgpu' : 'cpu';
  b.dataset.auto = state.lmbackend === 'auto' ? (auto?.source ?? '') : 'manual';
}

// ---- model and generation ------------------------------------------------------------------
async function ensureModel() {
  if (localFiles) {
    const key = `local:${localFiles.weights?.name}|${state.lmbackend}|${state.lmprecision}`;
    if (loaded?.key !== key) {
      setStatus('Reading local files…');
      const info = await loadOn(`local:${localFiles.weights?.name}`, (backend) => call('loadFiles', { files: localFiles, backend, precision: state.lmprecision }));
      loaded = { key, device: info.device };
      afterLoad(info);
    }
    return;
  }
  const base = modelBase(state.lm, location.href);
  const key = `${base}|${state.lmbackend}|${state.lmprecision}`;
  if (loaded?.key === key) return;
  try {
    const info = await loadOn(state.lm, (backend) => call('load', { base, backend, precision: state.lmprecision }, progress));
    loaded = { key, device: info.device };
    afterLoad(info);
  } catch (e) {
    loaded = null;
    if (/could not reach/.test(e.message)) $('lm-local-files').open = true;
    throw e;
  } finally {
    $('lm-progress').hidden = true;
  }
}
/** As the CLIP tab: the user's backend or `auto`'s measured (or cached) choice (ui.js). */
async function loadOn(model, load) {
  await hello; // the adapter keys the cache
  const r = await loadWithChoice({ backend: state.lmbackend, adapter, model: `${model}|${state.lmprecision}`, load, setStatus, what: 'block' });
  if (r.auto) auto = r.auto;
  return r.info;
}
function afterLoad(info) {
  badge(info.device);
  setStatus(`Model ready${info.fromCache ? ' (from the cache)' : ''}.`);
}

function options() {
  const num = (k, lo, hi, int) => {
    const v = Number(state[k]);
    if (!Number.isFinite(v) || v < lo || v > hi || (int && !Number.isInteger(v))) throw new Error(`${k} = "${state[k]}" must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}]`);
    return v;
  };
  return {
    maxNewTokens: num('max', 1, 4096, true),
    temperature: num('temp', 0, 10),
    topK: num('topk', 0, 1e6, true),
    topP: num('topp', 1e-6, 1),
    seed: num('seed', 0, Number.MAX_SAFE_INTEGER, true),
    mrssTau: num('tau', 0, 100),
  };
}

async function generate() {
  const view = $('mamba-view');
  const ok = await task('Generating…', async () => {
    const opts = options();
    await ensureModel();
    const out = $('lm-output');
    out.querySelector('.prompt').textContent = state.prompt;
    const gen = out.querySelector('.gen');
    gen.textContent = '';
    let n = 0;
    out.dataset.streamed = '0';
    // The live rate is the decoding's: counted from the first token (the prompt's prefill
    // comes before it and is reported apart, as a prefill rate, at the end).
    let tFirst = 0;
    const live = (merged) => {
      const now = performance.now();
      if (n === 1) tFirst = now;
      const secs = (now - tFirst) / 1000;
      const items = [['tokens', String(n)], ['tokens/s', n > 1 && secs > 0 ? ((n - 1) / secs).toFixed(1) : '—', 'lm-live-tps']];
      if (opts.mrssTau > 0) items.push(['MRSS merged (live)', `${(100 * merged).toFixed(1)}% of state updates`, 'lm-skip']);
      stats(items);
    };
    const r = await call('generate', { prompt: state.prompt, options: opts }, (m) => {
      if (m.type !== 'token') return;
      n++;
      out.dataset.streamed = String(n);
      gen.textContent += m.text;
      live(m.merged);
    });
    gen.textContent = r.text;
    const items = [
      ['prompt', `${r.prompt_tokens} tokens, prefill ${r.prefill_ms.toFixed(1)} ms (${(r.prompt_tokens / Math.max(r.prefill_ms, 1e-3) * 1000).toFixed(0)} tokens/s)`, 'lm-prefill'],
      ['generated', `${r.tokens.length} tokens${r.stopped_at_eos ? ' (EOS)' : ''}`],
      ['decode speed', `${r.tokens_per_s.toFixed(1)} tokens/s`, 'lm-tps'],
      ['backend', backendLabel(r.device)],
    ];
    if (opts.mrssTau > 0) items.push(['MRSS merged', `${(100 * r.mrss_merged).toFixed(1)}% of state updates (τ = ${opts.mrssTau})`, 'lm-skip']);
    const q = r.mrss_quality;
    if (q) {
      items.push(['vs the full scan', `top-1 ${(100 * q.top1_agreement).toFixed(1)}%, KL ${q.mean_kl.toExponential(1)}`, 'lm-quality']);
      items.push(['perplexity (MRSS / full)', `${q.perplexity_mrss.toFixed(2)} / ${q.perplexity_full.toFixed(2)}`]);
    }
    stats(items);
    setStatus(`Done: ${r.tokens.length} tokens at ${r.tokens_per_s.toFixed(1)} tokens/s.`);
    return true;
  });
  view.dataset.runs = String(++runs);
  view.dataset.outcome = ok ? 'ok' : 'error';
}

async function bench() {
  const view = $('mamba-view');
  const ok = await task('Timing the Mamba block and the attention block…', async () => {
    const ns = state.ns.split(/[\s,]+/).filter(Boolean).map(Number);
    if (ns.length < 2 || ns.some((n) => !Number.isInteger(n) || n < 1 || n > 8192)) throw new Error(`sequence lengths "${state.ns}": give two or more integers in 1…8192`);
    const hidden = Number(state.width);
    if (!Number.isInteger(hidden) || hidden < 8 || hidden > 1024) throw new Error(`width "${state.width}" must be an integer in 8…1024`);
    const r = await call('bench', { options: { ns, hidden, steps: 4, iters: 1, backend: state.lmbackend } });
    $('lm-bench-out').hidden = false;
    drawScaling($('lm-chart'), r);
    const body = $('lm-bench-table').tBodies[0];
    body.replaceChildren();
    const head = document.createElement('tr');
    head.className = 'head';
    for (const h of ['N', 'Mamba prefill', 'attention prefill', 'Mamba ms/token', 'attention ms/token']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      head.append(th);
    }
    body.append(head);
    for (const row of r.rows) {
      const tr = document.createElement('tr');
      for (const v of [row.n, `${row.mamba_prefill_ms.toFixed(1)} ms`, `${row.attn_prefill_ms.toFixed(1)} ms`, row.mamba_decode_ms.toFixed(3), row.attn_decode_ms.toFixed(3)]) {
        const td = document.createElement('td');
        td.textContent = String(v);
        tr.append(td);
      }
      body.append(tr);
    }
    const e = r.exponents;
    $('lm-bench-note').textContent = `${backendLabel(r.device)}, d = ${r.hidden}. Fitted exponents (time ∝ N^e): prefill Mamba ${e.mamba_prefill.toFixed(2)} vs attention ${e.attn_prefill.toFixed(2)}; decode Mamba ${e.mamba_decode.toFixed(2)} vs attention ${e.attn_decode.toFixed(2)}.`;
    setStatus('Scaling benchmark done.');
    return true;
  });
  view.dataset.benchOutcome = ok ? 'ok' : 'error';
}

// ---- wiring --------------------------------------------------------------------------------
function wire() {
  $('tab-clip').onclick = () => showTab('clip');
  $('tab-mamba').onclick = async () => {
    showTab('mamba');
    if (!loaded) await task('Loading the model…', ensureModel);
  };
  for (const [id, k] of FIELDS) {
    $(id).addEventListener('change', () => {
      state[k] = $(id).value.trim();
      if (k === 'lm') localFiles = null;
      writeUrl();
    });
  }
  $('lm-mrss').onchange = () => {
    state.tau = $('lm-mrss').checked ? $('lm-tau').value : '0';
    syncControls();
    writeUrl();
  };
  $('lm-tau').oninput = () => {
    state.tau = $('lm-tau').value;
    $('lm-tau-out').textContent = Number(state.tau).toFixed(2);
    writeUrl();
  };
  $('lm-load').onclick = () => {
    state.lm = $('lm-model').value.trim();
    localFiles = null;
    loaded = null;
    writeUrl();
    task('Loading the model…', ensureModel);
  };
  $('lm-files').onchange = (ev) => {
    localFiles = pickFiles(ev.target.files, { config: /config\.json$/, weights: /\.safetensors$/, tokenizer: /tokenizer\.json$/ });
    loaded = null;
    task('Reading local files…', ensureModel);
  };
  $('lm-generate').onclick = () => generate();
  $('lm-bench').onclick = () => bench();
  copyLinkButton('lm-copy-link', writeUrl, setStatus, 'this generation');
}

readUrl();
syncControls();
wire();
const hello = call('hello').then((h) => {
  adapter = h.adapter;
  setThreadCount(h.threads);
  if (h.autoReason) auto = { reason: h.autoReason, source: 'rule' };
  if (!loaded) badge(state.lmbackend === 'cpu' ? h.cpu : h.defaultDevice);
}, () => {});
if (state.tab === 'mamba') {
  showTab('mamba');
  generate(); // a shared link reproduces what the sender saw
}
