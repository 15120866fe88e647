//! The npm package's TypeScript types for the option and report objects (wasm-bindgen types
//! the exported functions; these are the plain JS objects they take and return).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of one run. Every field is optional. */
export interface PruningMethod {
  /** The name `scorer` takes, e.g. "kq-norm", "tome". */
  name: string;
  /** A menu's text. */
  label: string;
  /** A compare card's title. */
  short: string;
  /** Where it acts: a vision encoder, or a vision-language model's language model. */
  tower: 'vision' | 'language';
  /** In the default set of `compare` and `evalBatch`. */
  compared: boolean;
}

export interface RunOptions {
  /** Fraction of patch tokens kept at each pruning layer, in (0, 1]. Default 1. */
  keep?: number;
  /** "kq-norm" (= "kq-norm:key"), "kq-norm:query", "kq-norm:both", "cls-attn", "random",
   *  "divprune" (DivPrune: the most diverse tokens), "visionzip" (VisionZip: dominant tokens
   *  plus merged contextual ones; one layer), or "tome" (Token Merging: merges as many tokens
   *  in all as `keep` prunes, in every layer). */
  scorer?: string;
  /** 0-based encoder layers to prune in (several = progressive). Default [1]. */
  layers?: number[];
  /** Seed of the "random" scorer. */
  seed?: number;
  /** Zero-shot labels (needs the text tower and a tokenizer). */
  labels?: string[];
  /** Also run unpruned for cos-sim and label comparison. Default true. */
  compareUnpruned?: boolean;
}

/** Options of a comparison (`compare`). Every field is optional. */
export interface CompareOptions {
  /** Fraction of patch tokens kept, as in RunOptions. Default 0.5. */
  keep?: number;
  /** Pruning layers, as in RunOptions (VisionZip compresses once, at the first, to about
   *  the same final count). Default [1]. */
  layers?: number[];
  /** Methods by RunOptions' scorer names. Default: kq-norm, cls-attn, random, tome,
   *  divprune, visionzip. */
  scorers?: string[];
  seed?: number;
  labels?: string[];
}

/** One method of a comparison. */
export interface MethodReport {
  scorer: string;
  keep: number;
  kept: { layer: number; indices: number[] }[];
  /** ToMe and VisionZip: each patch's final token, as in RunReport; else null. */
  groups: number[] | null;
  /** Tokens (CLS included) after the last layer. */
  tokens: number;
  cos_to_unpruned: number;
  flops_ratio: number;
  label_probs: { label: string; prob: number }[] | null;
  /** This method alone: the shared path up to its pruning layer plus its own layers (ms). */
  ms: number;
}

/** Every method on one image at one keep. */
export interface CompareReport {
  grid: number;
  num_patches: number;
  methods: MethodReport[];
  label_probs_unpruned: { label: string; prob: number }[] | null;
  /** The unpruned pass alone, the unpruned path shared by the methods (each layer once),
   *  the whole comparison (decode and text tower included), its vision passes (the shared
   *  path once), and the same passes one after another from scratch (ms). */
  unpruned_ms: number;
  shared_ms: number;
  total_ms: number;
  passes_ms: number;
  sequential_ms: number;
  device: string;
  fallback: string | null;
}

/** One backend's figure in a measured `auto` choice. */
export interface AutoFigure {
  /** "webgpu" or "cpu". */
  backend: string;
  /** e.g. "WebGPU (NVIDIA GeForce RTX 4070)" or "CPU (wasm simd128, 1 thread)". */
  label: string;
  /** One layer of the loaded model on this backend (ms), or null when the probe failed. */
  ms_per_layer: number | null;
  /** A software adapter (SwiftShader, a fallback adapter): measured, never picked. */
  software: boolean;
  error: string | null;
}

/** What backend "auto" took and why. */
export interface AutoChoice {
  /** "webgpu" or "cpu". */
  backend: string;
  /** One line: "WebGPU (…): 14.0 ms/layer, CPU (…): 41.0 ms/layer → WebGPU". */
  reason: string;
  figures: AutoFigure[];
}

/** What one run reports (the same fields as `effarch clip --json`). */
export interface RunReport {
  /** Projected image embedding (not normalised). */
  image_embeds: number[];
  embed_norm: number;
  cos_to_unpruned: number | null;
  /** Patch grid side (14 for ViT-B/16 at 224 px) and patch count. */
  grid: number;
  num_patches: number;
  /** Kept patch indices (row-major over the grid) after each pruning step. */
  kept: { layer: number; indices: number[] }[];
  /** ToMe and VisionZip: for each patch, the token (1.., CLS is 0) it ended in; else null. */
  groups: number[] | null;
  /** Tokens (CLS included) entering each layer. */
  tokens_per_layer: number[];
  flops: number;
  flops_unpruned: number;
  /** decode, text, preprocess, patch_embed, block_0 …, sync, head, readback, total (the one
   *  pass reported), compare (the unpruned comparison pass after it; 0 when none) (ms). */
  timings_ms: Record<string, number>;
  label_probs: { label: string; prob: number }[] | null;
  label_probs_unpruned: { label: string; prob: number }[] | null;
  /** e.g. "gpu (wgpu, google swiftshader, BrowserWebGpu, software adapter)". */
  device: string;
  /** Why the run left the GPU for the CPU, if it did. */
  fallback: string | null;
}
"#;
