// Fetches a CLIP checkpoint in the hub layout, downloading only the tensors a run needs.
//
// The safetensors header is read with HTTP range requests (8 bytes, then the header), the
// needed tensors are grouped into a few byte ranges and fetched with progress, and each group
// (vision tower + projection; text tower + projection) is stored in the Cache API as a small
// safetensors file of its own, so a reload does not download again. Hosts that ignore Range
// (answer 200 with the whole file) still work: the body is read once and sliced.

const CACHE = 'effarch-weights-v1';
const MAX_HEADER = 64 << 20; // the core's limit as well
const GROUPS = {
  vision: (n) => n.startsWith('vision_model.') || n.startsWith('visual_projection.') || n === 'logit_scale',
  text: (n) => n.startsWith('text_model.') || n.startsWith('text_projection.'),
};

/** `openai/clip-vit-base-patch16` → its hub folder; anything with `/` + `:` or starting `.`/`/` is a URL. */
export function modelBase(model, pageUrl) {
  if (/^(https?:)?\/\//.test(model) || model.startsWith('.') || model.startsWith('/')) {
    return new URL(model.replace(/\/+$/, ''), pageUrl).href;
  }
  if (!/^[\w.-]+\/[\w.-]+$/.test(model)) throw new Error(`model "${model}" is neither a hub id (owner/name) nor a URL`);
  return `https://huggingface.co/${model}/resolve/main`;
}

async function openCache() {
  try {
    return self.caches ? await self.caches.open(CACHE) : null;
  } catch {
    return null; // e.g. an insecure context: work without a cache
  }
}

export async function clearCache() {
  return self.caches ? await self.caches.delete(CACHE) : false;
}

function netError(url, e) {
  const host = new URL(url).host;
  // Cross-origin isolated (for the threaded build), a host must answer with CORS or
  // Cross-Origin-Resource-Policy headers; the hub does, another host may not.
  const iso = self.crossOriginIsolated && host !== self.location.host
    ? ` The page is cross-origin isolated for CPU threads: if ${host} sends no CORS headers, open the page with threads=1 (CPU threads: 1).`
    : '';
  return new Error(`could not reach ${host} (${e.message || e}). Check the connection, or pick local files (config.json + model.safetensors).${iso}`);
}

async function get(url, headers) {
  let r;
  try {
    r = await fetch(url, { headers });
  } catch (e) {
    throw netError(url, e);
  }
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status} ${r.statusText}`);
  return r;
}

async function cachedText(cache, url) {
  const hit = cache && (await cache.match(url));
  if (hit) return { text: await hit.text(), hit: true };
  const r = await get(url);
  const text = await r.text();
  if (cache) await cache.put(url, new Response(text));
  return { text, hit: false };
}

/** Reads a body to the end, reporting bytes as they arrive. */
async function readBody(r, onBytes) {
  if (!r.body) return new Uint8Array(await r.arrayBuffer());
  const reader = r.body.getReader();
  const chunks = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
    onBytes(value.length);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

/** Byte ranges of one remote file; falls back to one whole-file read when Range is ignored. */
class RangeReader {
  constructor(url, onBytes) {
    this.url = url;
    this.onBytes = onBytes;
    this.whole = null;
  }
  async read(start, end) {
    if (!this.whole) {
      const r = await get(this.url, { Range: `bytes=${start}-${end - 1}` });
      if (r.status === 206) {
        const b = await readBody(r, this.onBytes);
        if (b.length < end - start) throw truncated(this.url, end, start + b.length);
        return b.subarray(0, end - start);
      }
      this.whole = await readBody(r, this.onBytes); // 200: the host sent everything
    }
    if (this.whole.length < end) throw truncated(this.url, end, this.whole.length);
    return this.whole.subarray(start, end);
  }
}

function truncated(url, want, got) {
  const name = url.split('/').pop();
  return new Error(`weights ${name}: truncated file: a tensor ends at byte ${want} but the file has ${got} bytes`);
}

function parseHeader(name, bytes) {
  let h;
  try {
    h = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`weights ${name}: header is not valid JSON (${e.message})`);
  }
  if (typeof h !== 'object' || h === null) throw new Error(`weights ${name}: header is not a JSON object`);
  delete h.__metadata__;
  return h;
}

function headerLength(name, b) {
  if (b.length < 8) throw new Error(`weights ${name}: file is ${b.length} bytes, too short for a safetensors header`);
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER) throw new Error(`weights ${name}: header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  return n;
}

/** A safetensors file holding `entries` ([name, {dtype, shape}, bytes]). */
function buildSafetensors(entries) {
  const header = {};
  let off = 0;
  for (const [name, info, bytes] of entries) {
    header[name] = { dtype: info.dtype, shape: info.shape, data_offsets: [off, off + bytes.length] };
    off += bytes.length;
  }
  // The header is padded with spaces to a multiple of 8 bytes, as safetensors writers do.
  const text = JSON.stringify(header);
  const len = new TextEncoder().encode(text).length;
  const json = new TextEncoder().encode(text + ' '.repeat((8 - (len % 8)) % 8));
  const out = new Uint8Array(8 + json.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let o = 8 + json.length;
  for (const [, , bytes] of entries) {
    out.set(bytes, o);
    o += bytes.length;
  }
  return out;
}

/** [name, info, bytes] of every tensor of a safetensors file in memory. */
function splitSafetensors(name, file) {
  const n = headerLength(name, file);
  const h = parseHeader(name, file.subarray(8, 8 + n));
  const base = 8 + n;
  return Object.entries(h).map(([k, v]) => [k, v, file.subarray(base + v.data_offsets[0], base + v.data_offsets[1])]);
}

/** Contiguous byte ranges covering `tensors` (sorted by offset; gaps under 1 MiB are read through). */
function ranges(tensors, base) {
  const sorted = [...tensors].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const out = [];
  for (const t of sorted) {
    const [s, e] = [base + t[1].data_offsets[0], base + t[1].data_offsets[1]];
    const last = out[out.length - 1];
    if (last && s - last.end < 1 << 20) {
      last.end = Math.max(last.end, e);
      last.tensors.push(t);
    } else out.push({ start: s, end: e, tensors: [t] });
  }
  return out;
}

/** Bytes `tensors` ([name, {dtype, shape, data_offsets}]) take once their linear weights are
 *  int8 (`isLinearWeight`: the core's rule) with one f32 scale per row. */
function int8Bytes(tensors, isLinearWeight) {
  let n = 0;
  for (const [name, info] of tensors) {
    const bytes = info.data_offsets[1] - info.data_offsets[0];
    const linear = info.dtype !== 'I8' && isLinearWeight(name, info.shape);
    n += linear ? info.shape[0] * info.shape[1] + 4 * info.shape[0] : bytes;
  }
  return n;
}

/**
 * The files a session needs from `base` (a hub folder or any URL folder):
 * `{config, weights, vocab, merges, fromCache, sizes}`. `progress({what, loaded, total, rate,
 * eta, int8})`. With `int8 = {quantize, isLinearWeight}` (the engine's `quantizeCheckpoint`,
 * `isLinearWeight`) the weights come back with their linear layers in int8: an f32
 * checkpoint's tensors are quantised once downloaded, and only the int8 copy is cached, so a
 * later visit reads a quarter of the bytes; an int8 checkpoint (`effarch quantize`) is taken
 * as it is. `sizes`: `{f32, int8}` bytes of the tensors needed, where known.
 */
export async function fetchModel(base, withText, progress, int8 = null) {
  const cache = await openCache();
  const cfg = await cachedText(cache, `${base}/config.json`);
  let vocab = null, merges = null;
  if (withText) {
    vocab = (await cachedText(cache, `${base}/vocab.json`)).text;
    merges = (await cachedText(cache, `${base}/merges.txt`)).text;
  }
  const url = `${base}/model.safetensors`;
  const keyOf = (g) => `${url}?effarch-group=${g}${int8 ? '&precision=int8' : ''}`;
  const want = withText ? ['vision', 'text'] : ['vision'];
  const parts = [];
  const missing = [];
  const sizes = { f32: 0, int8: 0 };
  for (const g of want) {
    const hit = cache && (await cache.match(keyOf(g)));
    if (hit) {
      const bytes = new Uint8Array(await hit.arrayBuffer());
      sizes[int8 ? 'int8' : 'f32'] += bytes.length;
      parts.push(...splitSafetensors('model.safetensors', bytes));
    } else missing.push(g);
  }
  if (missing.length) {
    let total = 0;
    const tick = ticker(progress, () => total, () => sizes.int8);
    const rr = new RangeReader(url, tick);
    const n = headerLength('model.safetensors', await rr.read(0, 8));
    const header = parseHeader('model.safetensors', await rr.read(8, 8 + n));
    const groupTensors = new Map(missing.map((g) => [g, Object.entries(header).filter(([k]) => GROUPS[g](k))]));
    for (const [g, tensors] of groupTensors) {
      if (!tensors.length) throw new Error(`weights model.safetensors: no ${g} tensors (is this a CLIPModel checkpoint?)`);
      const rs = ranges(tensors, 8 + n);
      total += rs.reduce((s, r) => s + r.end - r.start, 0);
      const bytes = tensors.reduce((s, [, v]) => s + v.data_offsets[1] - v.data_offsets[0], 0);
      // A checkpoint already int8 (`effarch quantize`) is its own int8 size; its f32 size is not known here.
      if (tensors.some(([, v]) => v.dtype === 'I8')) sizes.int8 += bytes;
      else {
        sizes.f32 += bytes;
        if (int8) sizes.int8 += int8Bytes(tensors, int8.isLinearWeight);
      }
    }
    for (const [g, tensors] of groupTensors) {
      const got = [];
      for (const r of ranges(tensors, 8 + n)) {
        const bytes = await rr.read(r.start, r.end);
        for (const t of r.tensors) {
          const s = 8 + n + t[1].data_offsets[0] - r.start;
          got.push([t[0], t[1], bytes.subarray(s, s + t[1].data_offsets[1] - t[1].data_offsets[0])]);
        }
      }
      let file = buildSafetensors(got);
      if (int8 && !got.some(([, info]) => info.dtype === 'I8')) {
        progress({ what: 'quantizing', group: g });
        file = int8.quantize(file);
      }
      parts.push(...splitSafetensors('model.safetensors', file));
      if (cache) {
        try {
          await cache.put(keyOf(g), new Response(file));
        } catch {
          // Quota exceeded: run without caching this group.
        }
      }
    }
  }
  return { config: cfg.text, weights: buildSafetensors(parts), vocab, merges, fromCache: missing.length === 0, sizes };
}

/** A byte counter that reports `{what, loaded, total, rate, eta, int8}` to `progress`
 *  (`int8`: the bytes kept once quantised, when the caller asked for int8). */
function ticker(progress, total, int8 = () => 0) {
  const t0 = performance.now();
  let loaded = 0;
  return (n) => {
    loaded += n;
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0 ? loaded / secs : 0;
    const all = total();
    progress({ what: 'weights', loaded, total: all, rate, eta: rate > 0 && all > loaded ? (all - loaded) / rate : 0, int8: int8() });
  };
}

/**
 * A checkpoint read whole (the Mamba LM needs every tensor): `texts` ([[name, required]])
 * and `model.safetensors`, the weights cached as one entry. `{texts: {name: text | null},
 * weights, fromCache}`.
 */
export async function fetchWhole(base, texts, progress) {
  const cache = await openCache();
  const out = {};
  for (const [name, required] of texts) {
    try {
      out[name] = (await cachedText(cache, `${base}/${name}`)).text;
    } catch (e) {
      if (required || /could not reach/.test(e.message)) throw e;
      out[name] = null;
    }
  }
  const url = `${base}/model.safetensors`;
  const key = `${url}?effarch-group=all`;
  const hit = cache && (await cache.match(key));
  if (hit) return { texts: out, weights: new Uint8Array(await hit.arrayBuffer()), fromCache: true };
  const r = await get(url);
  const total = Number(r.headers.get('content-length')) || 0;
  const weights = await readBody(r, ticker(progress, () => total));
  if (total && weights.length < total) throw truncated(url, total, weights.length);
  headerLength('model.safetensors', weights);
  if (cache) {
    try {
      await cache.put(key, new Response(weights));
    } catch {
      // Quota exceeded: run without caching.
    }
  }
  return { texts: out, weights, fromCache: false };
}

/** Local files picked by the user: `{config, weights, vocab?, merges?}` as File objects. */
export async function readLocalFiles(files) {
  if (!files.config || !files.weights) throw new Error('pick at least config.json and model.safetensors');
  const withText = !!(files.vocab && files.merges);
  return {
    config: await files.config.text(),
    weights: new Uint8Array(await files.weights.arrayBuffer()),
    vocab: withText ? await files.vocab.text() : null,
    merges: withText ? await files.merges.text() : null,
    withText,
  };
}
