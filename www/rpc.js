// Message RPC between the page and its module workers. Every request carries an id; the
// worker answers it with `done` or `error` (and any events in between, e.g. progress or
// streamed tokens), handling one request at a time, so the page shows every failure and
// stays usable.

/** Starts the worker at `url`; returns `call(type, payload, onEvent, transfer) → Promise`. */
export function connect(url, onFailure) {
  const worker = new Worker(url, { type: 'module' });
  let nextId = 1;
  const pending = new Map();
  worker.onmessage = (ev) => {
    const m = ev.data;
    const p = pending.get(m.id);
    if (!p) return;
    if (m.type === 'done') {
      pending.delete(m.id);
      p.resolve(m.result);
    } else if (m.type === 'error') {
      pending.delete(m.id);
      p.reject(new Error(m.message));
    } else p.onEvent?.(m);
  };
  worker.onerror = (e) => onFailure(e.message || 'see the console');
  return (type, payload = {}, onEvent, transfer = []) => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, onEvent });
      worker.postMessage({ id, type, ...payload }, transfer);
    });
  };
}

/** In a worker: answers requests with `handlers[type](id, message)`, one at a time. */
export function serve(handlers) {
  let queue = Promise.resolve();
  self.onmessage = (ev) => {
    const { id, type } = ev.data;
    queue = queue.then(async () => {
      try {
        const h = handlers[type];
        if (!h) throw new Error(`unknown request ${type}`);
        self.postMessage({ id, type: 'done', result: await h(id, ev.data) });
      } catch (e) {
        self.postMessage({ id, type: 'error', message: String(e?.message ?? e) });
      }
    });
  };
}
