// UI pieces both tabs share: a status line with an error box and a busy spinner (a class on
// <body>), a download progress bar, and the label of the backend a model runs on.

const $ = (id) => document.getElementById(id);

export function fmtBytes(n) {
  return n > 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

/** "WebGPU · <adapter>" or "CPU · wasm SIMD128 · N threads" for the core's device description. */
export function backendLabel(device) {
  const m = /^gpu \(wgpu, (.*?), BrowserWebGpu/.exec(device);
  if (device.startsWith('gpu')) return `WebGPU · ${/int8 weights/.test(device) ? 'int8 · ' : ''}${m ? m[1] || 'adapter' : device}`;
  const t = Number(/, (\d+) threads\)/.exec(device)?.[1] ?? 1);
  return `CPU · ${/int8/.test(device) ? 'int8 · ' : ''}wasm SIMD128 · ${t} thread${t === 1 ? '' : 's'}`;
}

/**
 * The badge's tooltip: the device, and on `auto` why it was picked (`auto`: `{reason, source}`,
 * source "measured", "cached" or "rule").
 */
export function backendTitle(device, backend, auto) {
  if (backend !== 'auto' || !auto?.reason) return device;
  const base = device.replace(/ \(auto: .*\)$/, '');
  const when = auto.source === 'cached' ? ' (measured earlier in this browser and cached; choose a backend to override)' : '';
  return `${base}. auto: ${auto.reason}${when}`;
}

// ---- the measured `auto` choice, cached per browser -----------------------------------------
// `auto` times one layer of the loaded model on each backend (in the worker, by the core) the
// first time a model is loaded with a given adapter and thread count; the choice is kept in
// localStorage so later loads skip the measurement. Workers have no localStorage: the page
// keeps the cache and tells the worker which backend to load.
const AUTO_STORE = 'effarch.auto.v1';
let threads = 1; // the CPU path's threads (the worker's build and pool say how many)

/** The CPU thread count the workers run with (keys the cache: the CPU's speed depends on it). */
export function setThreadCount(n) {
  threads = Math.max(1, Number(n) || 1);
}

function autoKey(adapter, model) {
  return `${adapter ?? 'no GPU adapter'}|${threads} thread${threads === 1 ? '' : 's'}|${model}`;
}

/** The cached choice `{backend, reason, figures}` for this adapter and model, or null (also for an entry that is not one). */
function cachedChoice(adapter, model) {
  try {
    const c = JSON.parse(localStorage.getItem(AUTO_STORE) || '{}')[autoKey(adapter, model)];
    return c && ['webgpu', 'cpu'].includes(c.backend) && typeof c.reason === 'string' ? c : null;
  } catch {
    return null;
  }
}

/** Drops the cached choice for this adapter and model (it failed to load). */
function forgetChoice(adapter, model) {
  try {
    const all = JSON.parse(localStorage.getItem(AUTO_STORE) || '{}');
    delete all[autoKey(adapter, model)];
    localStorage.setItem(AUTO_STORE, JSON.stringify(all));
  } catch {
    // blocked storage: nothing was cached either
  }
}

/** Keeps a measured choice (one with figures) for later loads. */
function saveChoice(adapter, model, choice) {
  if (!choice?.figures?.length) return;
  try {
    const all = JSON.parse(localStorage.getItem(AUTO_STORE) || '{}');
    all[autoKey(adapter, model)] = { backend: choice.backend, reason: choice.reason, figures: choice.figures, at: Date.now() };
    localStorage.setItem(AUTO_STORE, JSON.stringify(all));
  } catch {
    // storage full or blocked: the next load measures again
  }
}

/**
 * The backend to ask the worker for: the user's choice, or on `auto` a cached measured choice.
 * Returns `{backend, auto}`, `auto` being `{reason, source: 'cached'}` when the cache answered.
 */
function backendToLoad(backend, adapter, model) {
  if (backend !== 'auto') return { backend, auto: null };
  const c = cachedChoice(adapter, model);
  return c ? { backend: c.backend, auto: { reason: c.reason, source: 'cached' } } : { backend: 'auto', auto: null };
}

/**
 * One tab's status line (`status`), error box (`error`) and progress bar (`progress`, with
 * `<progress>-fill` and `<progress>-text`); `busyClass` is set on <body> while work runs.
 */
export function panel({ status, error, progress, busyClass }) {
  let busy = 0;
  const setStatus = (text) => {
    $(status).textContent = text;
  };
  const showError = (msg) => {
    $(error).textContent = msg;
    $(error).hidden = false;
  };
  const clearError = () => {
    $(error).hidden = true;
  };
  const setBusy = (delta) => {
    busy += delta;
    document.body.classList.toggle(busyClass, busy > 0);
  };
  /** Runs `fn` with `label` shown; a failure is shown in the error box and resolves to undefined. */
  async function task(label, fn) {
    setBusy(1);
    setStatus(label);
    try {
      clearError();
      return await fn();
    } catch (e) {
      showError(e.message || String(e));
      setStatus('Ready.');
      return undefined;
    } finally {
      setBusy(-1);
    }
  }
  /** A loader progress event `{loaded, total, rate, eta, int8}` (total 0 when unknown; `int8`:
   *  the bytes kept once quantised), or `{what: 'quantizing'}`. */
  function showProgress(p) {
    if (p.what === 'quantizing') {
      setStatus("Quantising the weights to int8 (once: the int8 copy is kept in this browser's cache)…");
      return;
    }
    $(progress).hidden = false;
    const frac = p.total ? Math.min(1, p.loaded / p.total) : 0;
    $(`${progress}-fill`).style.width = `${(frac * 100).toFixed(1)}%`;
    const eta = p.eta ? `, ${Math.ceil(p.eta)} s left` : '';
    const kept = p.int8 ? ` (f32; kept as int8: ${fmtBytes(p.int8)})` : '';
    $(`${progress}-text`).textContent = `${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ''}${kept} · ${fmtBytes(p.rate)}/s${eta}`;
    setStatus(`Downloading weights… ${p.total ? `${(frac * 100).toFixed(0)}%` : fmtBytes(p.loaded)}`);
  }
  return { setStatus, showError, clearError, setBusy, task, progress: showProgress };
}

/**
 * Loads a model with `load(backend)`: on the user's backend, or on `auto` on the choice measured
 * earlier in this browser for this adapter and model, else measuring (in the worker) and keeping
 * the result. Resolves to `{info, auto}`: `auto` is `{reason, source: 'measured' | 'cached'}`
 * when `auto` chose now, else null. `what`: the unit timed ("layer", "block").
 */
export async function loadWithChoice({ backend, adapter, model, load, setStatus, what }) {
  const pick = backendToLoad(backend, adapter, model);
  if (pick.auto) setStatus(`Loading on ${pick.backend === 'webgpu' ? 'WebGPU' : 'the CPU'}, the faster here when measured…`);
  else if (backend === 'auto') setStatus(`Loading, then timing one ${what} on each backend to pick the faster…`);
  let info;
  try {
    info = await load(pick.backend);
  } catch (e) {
    // A cached WebGPU choice on an adapter that no longer works: forget it and choose again.
    if (!pick.auto || pick.backend !== 'webgpu') throw e;
    forgetChoice(adapter, model);
    return loadWithChoice({ backend, adapter, model, load, setStatus, what });
  }
  if (backend === 'auto' && info.choice) {
    saveChoice(adapter, model, info.choice);
    return { info, auto: { reason: info.choice.reason, source: 'measured' } };
  }
  return { info, auto: backend === 'auto' ? pick.auto : null };
}

/** The size hint under the Precision control for a loaded model (`{sizes: {f32, int8}, precision, fromCache}`). */
export function sizeNote(info) {
  const s = info.sizes;
  if (!s) return '';
  if (info.precision === 'int8' && s.int8) return `int8: ${fmtBytes(s.int8)} ${info.fromCache ? 'read from' : 'kept in'} this browser's cache${s.f32 ? ` (f32: ${fmtBytes(s.f32)})` : ''}`;
  if (s.f32) return `f32: ${fmtBytes(s.f32)}${info.fromCache ? ' from the cache' : ''}`;
  // An int8 checkpoint run in f32 (its int8 values widened, not the original f32 weights).
  return s.int8 ? `f32 from an int8 checkpoint (${fmtBytes(s.int8)})` : '';
}
