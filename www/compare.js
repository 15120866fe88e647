// One card of the compare view: a method's overlay, its title (the core's short name, added by
// the worker), cos-sim, ms, tokens, FLOPs, and its zero-shot label bars beside the unpruned
// model's.
import { drawOverlay as draw } from './overlay.js';

/** The card of method `m` of compare report `r`, its overlay drawn over `image`. */
export function compareCard(m, r, image) {
  const fig = document.createElement('figure');
  fig.className = 'card';
  fig.dataset.scorer = m.scorer;
  const c = document.createElement('canvas');
  c.width = c.height = 224;
  c.setAttribute('aria-label', `${m.scorer}: kept and merged patches`);
  draw(c, image, { grid: r.grid, num_patches: r.num_patches, kept: m.kept, groups: m.groups }, m.kept.length - 1);
  const cap = document.createElement('figcaption');
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = m.title ?? m.scorer;
  const nums = document.createElement('div');
  nums.className = 'nums';
  for (const t of [`cos ${m.cos_to_unpruned.toFixed(4)}`, `${m.ms.toFixed(1)} ms`, `${m.tokens} tokens`, `FLOPs ${(100 * m.flops_ratio).toFixed(0)}%`]) {
    const sp = document.createElement('span');
    sp.textContent = t;
    nums.append(sp);
  }
  cap.append(name, nums);
  // Zero-shot label bars (the five most likely), this method's beside the unpruned model's.
  if (m.label_probs?.length) {
    const un = new Map((r.label_probs_unpruned ?? []).map((l) => [l.label, l.prob]));
    for (const lp of [...m.label_probs].sort((a, b) => b.prob - a.prob).slice(0, 5)) {
      const top = document.createElement('div');
      top.className = 'top';
      top.textContent = `${lp.label}: ${(100 * lp.prob).toFixed(1)}%`;
      for (const [cls, p] of [['lb', lp.prob], ['lb full', un.get(lp.label) ?? lp.prob]]) {
        const bar = document.createElement('div');
        bar.className = cls;
        bar.style.width = `${100 * p}%`;
        top.append(bar);
      }
      cap.append(top);
    }
  }
  fig.append(c, cap);
  return fig;
}
