// The sweep chart: latency (left axis) and cos-sim to the unpruned embedding (right axis)
// against the keep ratio, as inline SVG (no library, no CDN).

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text != null) e.textContent = text;
  return e;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Draws `points` ([{keep, ms, cos, flopRatio}]) over the x range of `keeps` into `box`. */
export function drawSweep(box, points, keeps) {
  const W = 640, H = 320, L = 56, R = 58, T = 38, B = 44;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'latency and cos-sim versus keep ratio' });
  const xmin = Math.min(...keeps), xmax = Math.max(...keeps);
  const x = (k) => L + ((xmax - k) / (xmax - xmin || 1)) * (W - L - R);
  const msMax = niceMax(Math.max(1, ...points.map((p) => p.ms)) * 1.1);
  const cosMin = Math.min(0.9, ...points.map((p) => p.cos));
  const cosLo = Math.floor(cosMin * 20) / 20;
  const yl = (ms) => T + (1 - ms / msMax) * (H - T - B);
  const yr = (c) => T + (1 - (c - cosLo) / (1 - cosLo || 1)) * (H - T - B);

  // grid and axes
  for (let i = 0; i <= 4; i++) {
    const ms = (msMax * i) / 4;
    svg.append(el('line', { x1: L, x2: W - R, y1: yl(ms), y2: yl(ms), class: 'grid' }));
    svg.append(el('text', { x: L - 8, y: yl(ms) + 4, class: 'tick left' }, ms.toFixed(ms < 10 ? 1 : 0)));
    const c = cosLo + ((1 - cosLo) * i) / 4;
    svg.append(el('text', { x: W - R + 8, y: yr(c) + 4, class: 'tick right' }, c.toFixed(3)));
  }
  for (const k of keeps) svg.append(el('text', { x: x(k), y: H - B + 18, class: 'tick mid' }, k.toFixed(1)));
  svg.append(el('text', { x: (L + W - R) / 2, y: H - 6, class: 'axis-label' }, 'keep ratio p'));
  svg.append(el('text', { x: 14, y: T + (H - T - B) / 2, class: 'axis-label ms', transform: `rotate(-90 14 ${T + (H - T - B) / 2})` }, 'latency (ms)'));
  svg.append(el('text', { x: W - 10, y: T + (H - T - B) / 2, class: 'axis-label cos', transform: `rotate(90 ${W - 10} ${T + (H - T - B) / 2})` }, 'cos-sim to unpruned'));

  // FLOP bound: unpruned latency × FLOP ratio
  const base = points.find((p) => p.keep >= 1);
  if (base && points.length > 1) {
    const d = points.map((p, i) => `${i ? 'L' : 'M'}${x(p.keep)},${yl(base.ms * p.flopRatio)}`).join(' ');
    svg.append(el('path', { d, class: 'series bound' }));
  }
  const line = (cls, y) => {
    if (!points.length) return;
    svg.append(el('path', { d: points.map((p, i) => `${i ? 'L' : 'M'}${x(p.keep)},${y(p)}`).join(' '), class: `series ${cls}` }));
    for (const p of points) {
      const c = el('circle', { cx: x(p.keep), cy: y(p), r: 4, class: `dot ${cls}` });
      c.append(el('title', {}, `p = ${p.keep}: ${p.ms.toFixed(1)} ms, cos ${p.cos.toFixed(4)}`));
      svg.append(c);
    }
  };
  line('ms', (p) => yl(p.ms));
  line('cos', (p) => yr(p.cos));

  const legend = el('g', { class: 'legend', transform: `translate(${L}, 6)` });
  [['ms', 'latency'], ['bound', 'FLOP bound'], ['cos', 'cos-sim']].forEach(([cls, name], i) => {
    legend.append(el('line', { x1: i * 120, x2: i * 120 + 22, y1: 6, y2: 6, class: `series ${cls}` }));
    legend.append(el('text', { x: i * 120 + 28, y: 10, class: 'tick' }, name));
  });
  svg.append(legend);
  box.replaceChildren(svg);
  box.dataset.points = String(points.length);
}

/**
 * The Mamba scaling chart: prefill time and per-token decode time against N on log-log axes,
 * Mamba block against attention block, with the fitted exponents in the legend.
 * `bench`: `{rows: [{n, mamba_prefill_ms, attn_prefill_ms, mamba_decode_ms, attn_decode_ms}], exponents}`.
 */
export function drawScaling(box, bench) {
  const W = 640, H = 340, L = 62, R = 20, T = 58, B = 44;
  const rows = bench.rows;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'time versus sequence length, log-log' });
  const series = [
    ['mamba_prefill_ms', 'mamba', false, `Mamba prefill (N^${bench.exponents.mamba_prefill.toFixed(2)})`],
    ['attn_prefill_ms', 'attn', false, `attention prefill (N^${bench.exponents.attn_prefill.toFixed(2)})`],
    ['mamba_decode_ms', 'mamba', true, `Mamba decode/token (N^${bench.exponents.mamba_decode.toFixed(2)})`],
    ['attn_decode_ms', 'attn', true, `attention decode/token (N^${bench.exponents.attn_decode.toFixed(2)})`],
  ];
  const vals = rows.flatMap((r) => series.map(([k]) => r[k])).filter((v) => v > 0);
  const lo = Math.log10(Math.min(...vals)), hi = Math.log10(Math.max(...vals));
  const ylo = Math.floor(lo), yhi = Math.max(ylo + 1, Math.ceil(hi));
  const nlo = Math.log2(rows[0].n), nhi = Math.log2(rows[rows.length - 1].n);
  const x = (n) => L + ((Math.log2(n) - nlo) / (nhi - nlo || 1)) * (W - L - R);
  const y = (ms) => T + (1 - (Math.log10(Math.max(ms, 10 ** ylo)) - ylo) / (yhi - ylo)) * (H - T - B);
  for (let e = ylo; e <= yhi; e++) {
    svg.append(el('line', { x1: L, x2: W - R, y1: y(10 ** e), y2: y(10 ** e), class: 'grid' }));
    svg.append(el('text', { x: L - 8, y: y(10 ** e) + 4, class: 'tick left' }, 10 ** e >= 1 ? String(10 ** e) : (10 ** e).toPrecision(1)));
  }
  for (const r of rows) svg.append(el('text', { x: x(r.n), y: H - B + 18, class: 'tick mid' }, String(r.n)));
  svg.append(el('text', { x: (L + W - R) / 2, y: H - 6, class: 'axis-label' }, 'sequence length N (log scale)'));
  svg.append(el('text', { x: 14, y: T + (H - T - B) / 2, class: 'axis-label', transform: `rotate(-90 14 ${T + (H - T - B) / 2})` }, 'ms (log scale)'));
  const legend = el('g', { class: 'legend', transform: `translate(${L}, 6)` });
  series.forEach(([k, cls, dashed, name], i) => {
    const kind = `series ${cls}${dashed ? ' dashed' : ''}`;
    svg.append(el('path', { d: rows.map((r, j) => `${j ? 'L' : 'M'}${x(r.n)},${y(r[k])}`).join(' '), class: kind }));
    for (const r of rows) {
      const c = el('circle', { cx: x(r.n), cy: y(r[k]), r: 3.5, class: `dot ${cls}` });
      c.append(el('title', {}, `${name}: N = ${r.n}, ${r[k].toFixed(3)} ms`));
      svg.append(c);
    }
    const [lx, ly] = [(i % 2) * 290, Math.floor(i / 2) * 18];
    legend.append(el('line', { x1: lx, x2: lx + 22, y1: ly + 6, y2: ly + 6, class: kind }));
    legend.append(el('text', { x: lx + 28, y: ly + 10, class: 'tick' }, name));
  });
  svg.append(legend);
  box.replaceChildren(svg);
  box.dataset.points = String(rows.length);
}
