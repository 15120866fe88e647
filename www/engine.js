// Loads the wasm core. Two builds sit side by side: `threads/` (shared memory and atomics,
// rayon's pool on Web Workers; scripts/build_threads.sh) and the single-threaded one. The
// threaded build needs a cross-origin-isolated page or worker (SharedArrayBuffer). The page's
// workers use this file; the npm package (pkg/) ships it as its entry point, index.js.
//
//   const { engine, threads, build, note } = await loadEngine({ threads: 4 });
//   const session = await engine.ClipSession.fromUrl(url, true, 'auto');
//
// `threads`: the CPU pool's size (0 or absent: every core); `build`: 'threads' or 'single';
// `note`: why the single-threaded build runs when more threads were asked for, else null.
export async function loadEngine({ threads = 0 } = {}) {
  const cores = Math.max(1, globalThis.navigator?.hardwareConcurrency || 1);
  const want = Math.max(1, Math.min(threads > 0 ? Math.floor(threads) : cores, 64));
  let note = null;
  if (want > 1) {
    if (globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function') {
      try {
        const engine = await import('./threads/effarch.js');
        await engine.default({ module_or_path: new URL('./threads/effarch_bg.wasm', import.meta.url) });
        await engine.initThreadPool(want);
        return { engine, threads: engine.cpuThreads(), build: 'threads', note };
      } catch (e) {
        note = `the multi-threaded build did not start (${e.message}): one thread`;
      }
    } else {
      note = 'not cross-origin isolated (no SharedArrayBuffer), so the CPU path runs on one thread';
    }
  }
  const engine = await import('./effarch.js');
  await engine.default({ module_or_path: new URL('./effarch_bg.wasm', import.meta.url) });
  return { engine, threads: 1, build: 'single', note };
}

export default loadEngine;
