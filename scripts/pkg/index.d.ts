// The npm package's entry point (index.js, the page's www/engine.js): one API over the three
// builds. `loadEngine` loads a multi-threaded build when the page or worker is cross-origin
// isolated (SharedArrayBuffer) and more than one thread is wanted — its relaxed-SIMD variant
// where `hasRelaxedSimd()`, which runs a single thread too (a pool of one, for its int8 and
// FMA kernels) — else the single-threaded one; all export the same classes and functions
// (effarch.d.ts).
import type * as Effarch from './effarch.js';

export interface LoadOptions {
  /** CPU threads for the pool (0 or absent: every core, `navigator.hardwareConcurrency`). */
  threads?: number;
  /** Take the relaxed-SIMD threaded build where the browser has relaxed SIMD (default true). */
  relaxed?: boolean;
}

export interface Loaded {
  /** The build's exports: `ClipSession`, `MambaSession`, `benchClip`, `cpuThreads`, … */
  engine: typeof Effarch;
  /** Threads the CPU path runs on (1 for the single-threaded build). */
  threads: number;
  build: 'threads-relaxed' | 'threads' | 'single';
  /** Why the single-threaded build runs although more threads were asked for, else null. */
  note: string | null;
}

export function loadEngine(options?: LoadOptions): Promise<Loaded>;
/** Whether this browser's WebAssembly validates relaxed SIMD. */
export function hasRelaxedSimd(): boolean;
export default loadEngine;
