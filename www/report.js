// The CLIP tab's report: headline stats, the timings table (blocks as one row with a
// per-block bar chart) and the zero-shot label bars (pruned against unpruned).
import { renderStats } from './page.js';

const $ = (id) => document.getElementById(id);

/** Fills the stats, timings and labels from a run's report (`clip --json`'s fields). */
export function renderReport(r) {
  const cos = r.cos_to_unpruned;
  renderStats($('stats'), [
    ['cos-sim to unpruned', cos == null ? '—' : cos.toFixed(4), 'cos'],
    ['FLOPs', `${(r.flops / 1e9).toFixed(2)} G (${((100 * r.flops) / r.flops_unpruned).toFixed(0)}%)`],
    ['tokens per layer', r.tokens_per_layer.join(' → ')],
    ['throughput', `${(1000 / r.timings_ms.total).toFixed(1)} img/s`],
    // int8 runs: cos to the f32 embedding of the same image and settings, once f32 has run.
    ...(r.cos_to_f32 != null ? [['cos-sim int8 to f32', r.cos_to_f32.toFixed(5), 'cos-f32']] : []),
  ]);
  renderTimings(r.timings_ms);
  $('timing-note').hidden = !r.device.startsWith('gpu');
  renderLabels(r);
}

const FIRST = ['decode', 'text', 'preprocess', 'patch_embed'];

/** A row's first cell as its header (`<th scope="row">`), so each figure has one. */
function rowHeader(tr, text) {
  const th = document.createElement('th');
  th.scope = 'row';
  th.textContent = text;
  tr.append(th);
}

function renderTimings(t) {
  const body = $('timings').tBodies[0];
  body.innerHTML = '';
  const total = t.total || 1;
  const entries = Object.entries(t).filter(([k]) => k !== 'total' && k !== 'compare');
  const blocks = entries.filter(([k]) => k.startsWith('block_'));
  const rows = entries.filter(([k]) => !k.startsWith('block_'));
  const blockSum = blocks.reduce((s, [, v]) => s + v, 0);
  const add = (name, ms, extra) => {
    const tr = body.insertRow();
    tr.dataset.stage = name;
    rowHeader(tr, name);
    const bar = tr.insertCell();
    bar.className = 'barcell';
    const b = document.createElement('div');
    b.className = 'tbar';
    b.style.width = `${Math.max(0.5, (100 * ms) / total)}%`;
    bar.append(b);
    if (extra) bar.append(extra);
    tr.insertCell().textContent = `${ms.toFixed(2)} ms`;
  };
  for (const [k, v] of rows.filter(([k]) => FIRST.includes(k))) add(k, v);
  if (blocks.length) {
    const spark = document.createElement('div');
    spark.className = 'spark';
    const max = Math.max(...blocks.map(([, v]) => v)) || 1;
    for (const [k, v] of blocks) {
      const s = document.createElement('span');
      s.style.height = `${(100 * v) / max}%`;
      s.title = `${k}: ${v.toFixed(2)} ms`;
      spark.append(s);
    }
    add(`blocks ×${blocks.length}`, blockSum, spark);
  }
  for (const [k, v] of rows.filter(([k]) => !FIRST.includes(k))) add(k, v);
  const tr = body.insertRow();
  tr.className = 'total';
  tr.dataset.stage = 'total';
  rowHeader(tr, 'total');
  tr.insertCell();
  tr.insertCell().textContent = `${total.toFixed(2)} ms`;
  // The unpruned pass run after it for the cos-sim and the label comparison: the user waits
  // for it too, so it is shown, outside the total of the pass above.
  if (t.compare > 0) {
    const c = body.insertRow();
    c.dataset.stage = 'compare';
    rowHeader(c, '+ unpruned comparison pass');
    c.insertCell();
    c.insertCell().textContent = `${t.compare.toFixed(2)} ms`;
  }
}

function renderLabels(r) {
  const box = $('labels-out');
  if (!r.label_probs) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const bars = $('label-bars');
  bars.innerHTML = '';
  r.label_probs.forEach((lp, i) => {
    const un = r.label_probs_unpruned?.[i]?.prob ?? lp.prob;
    const row = document.createElement('div');
    row.className = 'label-row';
    row.innerHTML = '<span class="name"></span><div class="pair"><div class="lb pruned"></div><div class="lb full"></div></div><span class="pct"></span>';
    row.querySelector('.name').textContent = lp.label;
    row.querySelector('.pruned').style.width = `${lp.prob * 100}%`;
    row.querySelector('.full').style.width = `${un * 100}%`;
    row.querySelector('.pct').textContent = `${(lp.prob * 100).toFixed(1)}% / ${(un * 100).toFixed(1)}%`;
    bars.append(row);
  });
}
