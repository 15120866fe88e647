// The CLIP tab's overlay: the image as the processor sees it (shortest side scaled, centre
// crop), the patch grid, and the pruned patches hatched for one pruning step — or, for ToMe,
// the patches merged into one token tinted with one colour and outlined.

/** Colour of merged token `g`: golden-angle hues, alternating lightness (as src/overlay.rs). */
export function groupColour(g) {
  return `hsl(${(g * 137.508) % 360}, 75%, ${g % 2 === 0 ? 55 : 42}%)`;
}

/** The ToMe overlay: `r.groups[p]` is the token patch p ended in. Returns `{tokens, merged}`. */
function drawGroups(ctx, r, S) {
  const g = r.grid;
  const cell = S / g;
  const count = new Map();
  for (const t of r.groups) count.set(t, (count.get(t) || 0) + 1);
  ctx.save();
  ctx.globalAlpha = 0.55;
  for (let i = 0; i < r.num_patches; i++) {
    const t = r.groups[i];
    if (count.get(t) < 2) continue;
    ctx.fillStyle = groupColour(t);
    ctx.fillRect((i % g) * cell, Math.floor(i / g) * cell, cell, cell);
  }
  ctx.globalAlpha = 1;
  ctx.strokeStyle = 'rgba(12, 12, 20, 0.9)';
  ctx.lineWidth = 2;
  ctx.beginPath();
  for (let i = 0; i < r.num_patches; i++) {
    const col = i % g, row = Math.floor(i / g);
    const x = col * cell, y = row * cell;
    if (col + 1 < g && r.groups[i + 1] !== r.groups[i]) {
      ctx.moveTo(x + cell, y);
      ctx.lineTo(x + cell, y + cell);
    }
    if (row + 1 < g && r.groups[i + g] !== r.groups[i]) {
      ctx.moveTo(x, y + cell);
      ctx.lineTo(x + cell, y + cell);
    }
  }
  ctx.stroke();
  ctx.restore();
  const merged = [...count.values()].filter((n) => n > 1).reduce((a, n) => a + n, 0);
  return { tokens: count.size, merged };
}

/**
 * Draws on `canvas`; `report` may be null (the image alone). `step` indexes `report.kept`.
 * Returns `{pruned, kept, step}` for the captions (undefined without a report).
 */
export function drawOverlay(canvas, bitmap, report, step) {
  const ctx = canvas.getContext('2d');
  const S = canvas.width;
  ctx.fillStyle = '#111';
  ctx.fillRect(0, 0, S, S);
  if (bitmap) {
    const side = Math.min(bitmap.width, bitmap.height);
    const sx = (bitmap.width - side) / 2, sy = (bitmap.height - side) / 2;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, sx, sy, side, side, 0, 0, S, S);
  }
  const r = report;
  if (!r) return undefined;
  if (r.groups) return drawGroups(ctx, r, S);
  const g = r.grid;
  const cell = S / g;
  const st = r.kept[step];
  const kept = new Set(st ? st.indices : [...Array(r.num_patches).keys()]);
  ctx.save();
  for (let i = 0; i < r.num_patches; i++) {
    if (kept.has(i)) continue;
    const x = (i % g) * cell, y = Math.floor(i / g) * cell;
    ctx.fillStyle = 'rgba(8, 10, 20, 0.72)';
    ctx.fillRect(x, y, cell, cell);
    ctx.strokeStyle = 'rgba(255, 120, 90, 0.55)';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    for (let d = -cell; d < cell; d += cell / 3) {
      ctx.moveTo(x + Math.max(0, d), y + Math.max(0, -d));
      ctx.lineTo(x + Math.min(cell, cell + d), y + Math.min(cell, cell - d));
    }
    ctx.stroke();
  }
  ctx.strokeStyle = 'rgba(255, 255, 255, 0.18)';
  ctx.lineWidth = 1;
  for (let i = 1; i < g; i++) {
    ctx.beginPath();
    ctx.moveTo(i * cell, 0);
    ctx.lineTo(i * cell, S);
    ctx.moveTo(0, i * cell);
    ctx.lineTo(S, i * cell);
    ctx.stroke();
  }
  ctx.restore();
  return { pruned: r.num_patches - kept.size, kept: kept.size, step: st };
}

/** The Animate button: steps `slider` through its range every 0.9 s, calling `redraw`; a second
 *  click stops. */
export function animateSteps(button, slider, redraw) {
  let anim = null;
  button.onclick = () => {
    if (anim) {
      clearInterval(anim);
      anim = null;
      return;
    }
    slider.value = '0';
    redraw();
    anim = setInterval(() => {
      slider.value = String((Number(slider.value) + 1) % (Number(slider.max) + 1));
      redraw();
    }, 900);
  };
}
