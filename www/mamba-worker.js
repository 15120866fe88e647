// The Mamba tab's worker: loads the wasm core and the checkpoint (whole, cached), generates
// with each token streamed back as it is sampled, and runs the scaling benchmark, so the
// page never blocks.
//
// Messages in:  {id, type: 'hello' | 'load' | 'loadFiles' | 'generate' | 'bench', ...}
// Messages out: {id, type: 'progress' | 'token' | 'done' | 'error', ...}
import { loadEngine } from './engine.js';
import { fetchWhole } from './loader.js';
import { serve } from './rpc.js';

// The wasm core: the threaded build when the page is cross-origin isolated (engine.js), with
// the thread count the page put in this worker's URL.
const ready = loadEngine({ threads: Number(new URL(self.location.href).searchParams.get('threads') || 0) });

let session = null;
let loadedKey = null;

function post(msg) {
  self.postMessage(msg);
}

async function create(config, weights, tokenizer, backend, precision, key) {
  if (session) {
    session.free();
    session = null;
  }
  if (!tokenizer) throw new Error('this model has no tokenizer.json: the page needs it to turn the prompt into tokens');
  const { engine } = await ready;
  session = await engine.MambaSession.create(config, weights, tokenizer, backend, precision);
  loadedKey = key;
}

const handlers = {
  async hello() {
    const { engine, threads } = await ready;
    const auto = await engine.autoChoice();
    return { defaultDevice: auto.device, autoReason: auto.reason ?? '', adapter: auto.adapter ?? null, threads, cpu: engine.cpuDevice() };
  },
  async load(id, { base, backend, precision = 'f32' }) {
    await ready;
    const key = `${base}|${backend}|${precision}`;
    if (session && loadedKey === key) return { device: session.device(), fromCache: true, choice: null };
    const files = await fetchWhole(base, [['config.json', true], ['tokenizer.json', false]], (p) => post({ id, type: 'progress', ...p }));
    await create(files.texts['config.json'], files.weights, files.texts['tokenizer.json'], backend, precision, key);
    return { device: session.device(), fromCache: files.fromCache, choice: session.choice() ?? null };
  },
  async loadFiles(_id, { files, backend, precision = 'f32' }) {
    await ready;
    if (!files.config || !files.weights) throw new Error('pick config.json, model.safetensors and tokenizer.json');
    const tokenizer = files.tokenizer ? await files.tokenizer.text() : null;
    const key = `local:${files.weights.name}:${files.weights.size}|${backend}|${precision}`;
    await create(await files.config.text(), new Uint8Array(await files.weights.arrayBuffer()), tokenizer, backend, precision, key);
    return { device: session.device(), fromCache: false, choice: session.choice() ?? null };
  },
  async generate(id, { prompt, options }) {
    if (!session) throw new Error('no model is loaded yet');
    return await session.generate(prompt, options, (token, text, merged) => post({ id, type: 'token', token, text, merged }));
  },
  async bench(_id, { options }) {
    const { engine } = await ready;
    return await engine.benchMamba(options);
  },
};

// One message at a time: generation and the benchmark share the core.
serve(handlers);
