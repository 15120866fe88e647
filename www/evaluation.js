// The folder evaluation's page side: an ImageFolder from a directory pick, and the results
// (chart, table, CSV and SVG downloads). The evaluation itself runs in the worker.
const $ = (id) => document.getElementById(id);
const IMAGE_FILE = /\.(png|jpe?g|gif|webp|bmp)$/i;

/** ImageFolder from a directory pick: `{classes, items: [{file, path, label}]}` (sub-folders are classes). */
export function folderSet(files) {
  const byClass = new Map();
  for (const f of files) {
    const parts = (f.webkitRelativePath || f.name).split('/');
    if (parts.length < 3 || !IMAGE_FILE.test(f.name)) continue; // root/class/file
    const cls = parts[parts.length - 2];
    if (!byClass.has(cls)) byClass.set(cls, []);
    byClass.get(cls).push(f);
  }
  const classes = [...byClass.keys()].sort();
  const items = classes.flatMap((c, label) => byClass.get(c).sort((a, b) => a.name.localeCompare(b.name)).map((file) => ({ file, path: file.webkitRelativePath || file.name, label })));
  return { classes, items, root: files[0]?.webkitRelativePath?.split('/')[0] ?? 'folder' };
}

let evalUrls = [];

/** Shows an evaluation's chart and table and links its CSV and SVG. */
export function renderEval(res) {
  globalThis.effarchLastEval = res; // for tests and automation
  $('eval-out').hidden = false;
  const svg = new DOMParser().parseFromString(res.svg, 'image/svg+xml').documentElement;
  svg.setAttribute('viewBox', `0 0 ${svg.getAttribute('width')} ${svg.getAttribute('height')}`);
  svg.removeAttribute('width');
  svg.removeAttribute('height');
  $('eval-chart').replaceChildren(document.importNode(svg, true));
  $('eval-table').tBodies[0].replaceChildren(
    ...res.rows.map((r) => {
      const tr = document.createElement('tr');
      for (const v of [r.scorer, r.keep.toFixed(2), r.top1.toFixed(3), r.top5.toFixed(3), r.agree_top1.toFixed(3), r.cos_to_unpruned.toFixed(4), r.ms_per_img.toFixed(1), r.flops_ratio.toFixed(3)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
  for (const u of evalUrls) URL.revokeObjectURL(u);
  evalUrls = [URL.createObjectURL(new Blob([res.csv], { type: 'text/csv' })), URL.createObjectURL(new Blob([res.svg], { type: 'image/svg+xml' }))];
  $('eval-csv').href = evalUrls[0];
  $('eval-svg').href = evalUrls[1];
}
