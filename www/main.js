// Loads the wasm core and reports which backend it runs on.
import init, { defaultDevice } from './effarch.js';

const status = document.getElementById('status');
try {
  await init({ module_or_path: new URL('./effarch_bg.wasm', import.meta.url) });
  status.textContent = `Core loaded: ${defaultDevice()}.`;
} catch (e) {
  status.textContent = `Could not load the WebAssembly core: ${e}`;
  status.classList.add('error');
}
