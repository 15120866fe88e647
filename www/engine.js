// Loads the wasm core. Three builds sit side by side: `threads/` (shared memory and atomics,
// rayon's pool on Web Workers; scripts/build_threads.sh), its relaxed-SIMD variant
// `threads-relaxed/` (the f32 micro-kernel's multiply-adds as `f32x4.relaxed_madd`, an FMA
// where the CPU has one; int8 on relaxed SIMD's dot products with 7-bit activations, 1.3-2.4x
// the SIMD128 int8 kernel), and the single-threaded one. The threaded builds need a
// cross-origin-isolated page or worker (SharedArrayBuffer); the relaxed one a browser whose
// `WebAssembly.validate` accepts relaxed SIMD, and it runs even one thread where it can (a
// pool of one), for its kernels. The page's workers use this file; the npm package (pkg/)
// ships it as its entry point, index.js.
//
//   const { engine, threads, build, note } = await loadEngine({ threads: 4 });
//   const session = await engine.ClipSession.fromUrl(url, true, 'auto');
//
// `threads`: the CPU pool's size (0 or absent: every core); `relaxed`: false keeps the plain
// SIMD128 threaded build; `build`: 'threads-relaxed', 'threads' or 'single'; `note`: why the
// single-threaded build runs when more threads were asked for, else null.

/** Whether this browser's WebAssembly has relaxed SIMD: a module with one
 *  `i8x16.relaxed_swizzle` (`() -> v128 { relaxed_swizzle(splat 1, splat 2) }`) validates. */
export function hasRelaxedSimd() {
  const module = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1, 253, 15, 65, 2, 253, 15, 253, 128, 2, 11];
  try {
    return WebAssembly.validate(new Uint8Array(module));
  } catch {
    return false;
  }
}

export async function loadEngine({ threads = 0, relaxed = true } = {}) {
  const cores = Math.max(1, globalThis.navigator?.hardwareConcurrency || 1);
  const want = Math.max(1, Math.min(threads > 0 ? Math.floor(threads) : cores, 64));
  let note = null;
  const isolated = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function';
  const rel = relaxed && hasRelaxedSimd();
  if (want > 1 || (isolated && rel)) {
    if (isolated) {
      try {
        const build = rel ? 'threads-relaxed' : 'threads';
        const engine = await import(`./${build}/effarch.js`);
        await engine.default({ module_or_path: new URL(`./${build}/effarch_bg.wasm`, import.meta.url) });
        await engine.initThreadPool(want);
        return { engine, threads: engine.cpuThreads(), build, note };
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
