// UI pieces both tabs share: a status line with an error box and a busy spinner (a class on
// <body>), a download progress bar, and the label of the backend a model runs on.

const $ = (id) => document.getElementById(id);

export function fmtBytes(n) {
  return n > 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`;
}

/** "WebGPU · <adapter>" or "CPU · wasm SIMD128" for the core's device description. */
export function backendLabel(device) {
  const m = /^gpu \(wgpu, (.*?), BrowserWebGpu/.exec(device);
  return device.startsWith('gpu') ? `WebGPU · ${m ? m[1] || 'adapter' : device}` : 'CPU · wasm SIMD128';
}

/**
 * The badge's tooltip: the device, and on `auto` why a software GPU adapter was passed over.
 */
export function backendTitle(device, backend, autoReason) {
  return backend === 'auto' && autoReason && !device.startsWith('gpu') ? `${device}. ${autoReason}` : device;
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
  /** A loader progress event `{loaded, total, rate, eta}` (total 0 when unknown). */
  function showProgress(p) {
    $(progress).hidden = false;
    const frac = p.total ? Math.min(1, p.loaded / p.total) : 0;
    $(`${progress}-fill`).style.width = `${(frac * 100).toFixed(1)}%`;
    const eta = p.eta ? `, ${Math.ceil(p.eta)} s left` : '';
    $(`${progress}-text`).textContent = `${fmtBytes(p.loaded)}${p.total ? ` of ${fmtBytes(p.total)}` : ''} · ${fmtBytes(p.rate)}/s${eta}`;
    setStatus(`Downloading weights… ${p.total ? `${(frac * 100).toFixed(0)}%` : fmtBytes(p.loaded)}`);
  }
  return { setStatus, showError, clearError, setBusy, task, progress: showProgress };
}
