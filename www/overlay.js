// The CLIP tab's overlay: the image as the processor sees it (shortest side scaled, centre
// crop), the patch grid, and the pruned patches hatched for one pruning step.

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
