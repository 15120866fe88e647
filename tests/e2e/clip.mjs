// The CLIP tab: runs on WebGPU and the CPU, the URL, bad input, local files, labels, ToMe,
// cold start, evaluation, comparison, the sweep, the npm package.
import fs from 'node:fs';
import path from 'node:path';
import { N, assert, check, context, example, fixture, model, nKeep, open, origin, page, pkg, problems, requests, result, root, setSlider, settle, shots, start, waitError, weightRequests } from './harness.mjs';

await check('page loads, runs on WebGPU and shows the pruned patches', async () => {
  await open(start);
  const r = await result();
  assert(r.pruned === N - nKeep(0.5, N), `pruned ${r.pruned}, expected ${N - nKeep(0.5, N)}`);
  const badge = await page.$eval('#backend-badge', (b) => ({ backend: b.dataset.backend, text: b.textContent, title: b.title }));
  assert(badge.backend === 'webgpu' && /WebGPU/.test(badge.text), `backend shown: ${JSON.stringify(badge)}`);
  // The Scorer menu comes from the core's list of methods (the vision ones), not the HTML.
  const menu = await page.$$eval('#scorer option', (os) => os.map((o) => `${o.value}=${o.textContent}`));
  const want = ['kq-norm=kq-norm (‖key‖)', 'kq-norm:query=kq-norm (‖query‖)', 'kq-norm:both=kq-norm (‖key‖ + ‖query‖)', 'cls-attn=cls-attn (EViT)', 'random=random (control)', 'tome=tome (Token Merging: merges in every layer)', 'divprune=divprune (DivPrune: most diverse tokens)', 'visionzip=visionzip (VisionZip: dominant + contextual)'];
  assert(JSON.stringify(menu) === JSON.stringify(want), `scorer menu: ${menu}`);
  console.log(`    backend: ${badge.title}`);
});

await check('uploading an image runs it; keep 0.3 prunes the expected patches', async () => {
  await page.setInputFiles('#image-file', path.join(root, 'www/samples/coffee.jpg'));
  let r = await result();
  assert(/coffee\.jpg/.test(r.status), `status after upload: ${r.status}`);
  assert(r.pruned === N - nKeep(0.5, N), `pruned ${r.pruned}`);
  await setSlider(0.3);
  r = await result();
  assert(r.pruned === N - nKeep(0.3, N), `pruned ${r.pruned} at p = 0.3, expected ${N - nKeep(0.3, N)}`);
  await page.screenshot({ path: path.join(shots, 'result.png'), fullPage: true });
});

await check('timings are present and positive', async () => {
  const t = await page.$$eval('#timings tr', (rows) => rows.map((r) => [r.dataset.stage, parseFloat(r.cells[r.cells.length - 1].textContent)]));
  const stages = Object.fromEntries(t);
  assert(t.length >= 5, `timing rows: ${JSON.stringify(t)}`);
  assert(stages.total > 0, `total ${stages.total}`);
  for (const [k, v] of t) assert(Number.isFinite(v) && v >= 0, `stage ${k}: ${v}`);
  const blocks = t.find(([k]) => k.startsWith('blocks'));
  assert(blocks && blocks[1] > 0, `blocks: ${JSON.stringify(blocks)}`);
  // The pruned run is followed by the unpruned comparison pass: shown apart from the total.
  assert(stages.compare > 0, `the comparison pass's row: ${JSON.stringify(t)}`);
  const cos = await page.textContent('#cos .v');
  assert(parseFloat(cos) > 0 && parseFloat(cos) <= 1.0001, `cos-sim ${cos}`);
});

let sharedUrl = '';
let sharedKept = 0;
await check('the URL holds the settings and a copied link reproduces the run', async () => {
  await page.click('.samples button[data-sample="rocket"]');
  await result();
  await page.selectOption('#scorer', 'cls-attn');
  let r = await result();
  await page.fill('#layers', '0,2');
  await page.$eval('#layers', (el) => el.dispatchEvent(new Event('change')));
  r = await result();
  sharedUrl = page.url();
  sharedKept = r.kept;
  const q = new URL(sharedUrl).searchParams;
  assert(q.get('keep') === '0.3' && q.get('scorer') === 'cls-attn' && q.get('layers') === '0,2' && q.get('sample') === 'rocket' && q.get('model') === './fixtures/clip-tiny', `URL ${sharedUrl}`);
  assert(r.kept === nKeep(0.3, nKeep(0.3, N)), `kept ${r.kept} after two steps`);
  const before = weightRequests;
  const p2 = await open(sharedUrl);
  const r2 = await result();
  const ctl = await p2.evaluate(() => ({ keep: document.getElementById('keep').value, scorer: document.getElementById('scorer').value, layers: document.getElementById('layers').value }));
  assert(ctl.keep === '0.3' && ctl.scorer === 'cls-attn' && ctl.layers === '0,2', `controls after opening the link: ${JSON.stringify(ctl)}`);
  assert(r2.kept === sharedKept && r2.pruned === N - sharedKept, `the link gave kept ${r2.kept}, the sender saw ${sharedKept}`);
  assert(weightRequests === before, `reload fetched the weights again (${weightRequests - before} requests); the cache should serve them`);
  const steps = await p2.$eval('#steps', (s) => !s.hidden);
  assert(steps, 'progressive pruning (two layers) shows the step control');
});

await check('a corrupt image shows an error, and a good run works after it', async () => {
  await page.setInputFiles('#image-file', { name: 'broken.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('this is not a jpeg at all') });
  const msg = await waitError(/image/i);
  console.log(`    error shown: ${msg}`);
  await page.screenshot({ path: path.join(shots, 'error-image.png'), fullPage: true });
  await page.click('.samples button[data-sample="chelsea-cat"]');
  const r = await result();
  assert(await page.$eval('#error', (e) => e.hidden), 'the error stays after a good run');
  assert(r.pruned + r.kept === N, `after the error: ${JSON.stringify(r)}`);
});

await check('a truncated weights file shows an error, and a good model works after it', async () => {
  await page.fill('#model', './fixtures/clip-trunc');
  await page.click('#load');
  const msg = await waitError(/truncated|ends at byte|outside/i);
  console.log(`    error shown: ${msg}`);
  await page.screenshot({ path: path.join(shots, 'error-weights.png'), fullPage: true });
  await page.fill('#model', './fixtures/clip-tiny');
  await page.click('#load');
  const r = await result();
  assert(r.pruned + r.kept === N && r.kept > 0, `after the error: ${JSON.stringify(r)}`);
});

await check('20 bad inputs in a row (images, weights), each an error, then a good run', async () => {
  const cat = fs.readFileSync(path.join(fixture, 'cat_300x257.png'));
  const cfg = fs.readFileSync(path.join(fixture, 'config.json'));
  const model = fs.readFileSync(path.join(fixture, 'model.safetensors'));
  const le64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; };
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const flip = (buf, n) => { const b = Buffer.from(buf); for (let i = 0; i < n; i++) b[Math.floor(rand() * b.length)] ^= 0xff; return b; };
  const pngHeader = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  const images = [
    Buffer.alloc(0),
    Buffer.from('GIF89a'),
    cat.subarray(0, 40),
    cat.subarray(0, cat.length / 3),
    Buffer.concat([pngHeader, Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 8, 2, 0, 0, 0])]), // 65536 x 65536
    Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0]),
    Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256))),
    Buffer.concat([Buffer.from('RIFF'), le64(1 << 30).subarray(0, 4), Buffer.from('WEBPVP8 ')]),
    Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'),
    Buffer.concat([pngHeader, Buffer.alloc(64, 0xff)]),
    Buffer.from('BM' + 'x'.repeat(60)),
    Buffer.from('%PDF-1.4 not an image'),
  ];
  let n = 0;
  for (const buf of images) {
    await page.setInputFiles('#image-file', { name: `bad${n}.png`, mimeType: 'image/png', buffer: buf });
    await waitError(/./);
    n++;
  }
  const weights = [
    [Buffer.from('{ not json'), model],
    [cfg, Buffer.alloc(0)],
    [cfg, model.subarray(0, 7)],
    [cfg, Buffer.concat([le64(1e12), model.subarray(8)])],
    [cfg, Buffer.concat([le64(16), Buffer.from('{"a":{"dtype":"F32","shape":[9999999,9999999],"data_offsets":[0,4]}}').subarray(0, 16)])],
    [Buffer.from(cfg.toString().replace(/"hidden_size": *\d+/g, '"hidden_size": 7')), model],
    [cfg, model.subarray(0, model.length - 1000)],
    [Buffer.from('{"vision_config": {"image_size": -3}}'), model],
  ];
  await page.click('#local-files summary');
  for (const [c, m] of weights) {
    await page.setInputFiles('#files', [
      { name: 'config.json', mimeType: 'application/json', buffer: c },
      { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: m },
    ]);
    await waitError(/./);
    n++;
  }
  assert(n === 20, `${n} bad inputs`);
  await page.click('#local-files summary');
  // A good model (the run it starts still has the last bad image), then a good image.
  await page.fill('#model', './fixtures/clip-tiny');
  await page.click('#load');
  await settle(240_000);
  await page.click('.samples button[data-sample="chelsea-cat"]');
  const r = await result();
  assert(r.pruned + r.kept === N && r.kept > 0, `after 20 bad inputs: ${JSON.stringify(r)}`);
  assert(await page.$eval('#error', (e) => e.hidden), 'the error stays after a good run');
});

await check('local files (config.json + model.safetensors) load and run', async () => {
  await page.click('#local-files summary');
  await page.setInputFiles('#files', [path.join(fixture, 'config.json'), path.join(fixture, 'model.safetensors')]);
  const r = await result();
  assert(r.pruned + r.kept === N && r.kept === nKeep(0.3, nKeep(0.3, N)), `local files: ${JSON.stringify(r)}`);
  // Back to the served model for the checks below.
  await page.fill('#model', './fixtures/clip-tiny');
  await page.click('#load');
  await result();
});

await check('zero-shot labels show pruned and unpruned bars', async () => {
  await page.fill('#labels', 'a cat, a dog, a rocket');
  await page.$eval('#labels', (el) => el.dispatchEvent(new Event('change')));
  await result();
  const rows = await page.$$eval('#label-bars .label-row', (r) => r.map((x) => x.querySelector('.pct').textContent));
  assert(rows.length === 3, `label rows: ${JSON.stringify(rows)}`);
  assert(new URL(page.url()).searchParams.get('labels') === 'a cat, a dog, a rocket', `URL ${page.url()}`);
});

await check('ToMe merges in every layer: the overlay colours the merged groups, as many tokens as keep 0.5 leaves, on WebGPU and the CPU alike', async () => {
  // In f32, where the two backends agree to rounding (int8 is weight-only on WebGPU, weights and
  // activations on the CPU: different numbers by design).
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&scorer=tome&backend=webgpu&precision=f32`);
  const r = await result();
  assert(r.tokens === nKeep(0.5, N), `tokens after merging: ${r.tokens}, expected ${nKeep(0.5, N)}; caption ${r.caption}`);
  assert(/196 patches merged into 98 tokens/.test(r.caption), `caption: ${r.caption}`);
  assert(await page.$eval('#layers', (el) => el.disabled), 'the pruning layers are disabled for ToMe (it merges in every layer)');
  const tpl = await page.evaluate(() => globalThis.effarchLastReport?.tokens_per_layer?.join(','));
  assert(tpl === '197,172,147,123', `tokens per layer ${tpl} (the torch reference's, tests/fixtures/clip-tiny/tome.json)`);
  await page.screenshot({ path: path.join(shots, 'tome.png'), fullPage: true });
  const gpu = await page.evaluate(() => globalThis.effarchLastReport.groups.join(','));
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&scorer=tome&backend=cpu&precision=f32`);
  await result();
  const cpu = await page.evaluate(() => globalThis.effarchLastReport.groups.join(','));
  assert(gpu === cpu, 'the merge map on WebGPU equals the CPU one');
});

await check('cold start: the first WebGPU run after loading is within 1.5× a warm run (the kernels run once at load)', async () => {
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&backend=webgpu`);
  await result();
  const total = () => page.evaluate(() => globalThis.effarchLastReport.timings_ms.total);
  const first = await total();
  const warm = [];
  for (let i = 0; i < 2; i++) {
    await page.click('#run');
    await result();
    warm.push(await total());
  }
  const ratio = first / Math.min(...warm);
  console.log(`    first ${first.toFixed(0)} ms, warm ${warm.map((w) => w.toFixed(0)).join(', ')} ms: first/warm ${ratio.toFixed(2)}`);
  assert(ratio <= 1.5, `first run ${first} ms vs warm ${warm}: ${ratio.toFixed(2)}×`);
});

await check('evaluating a folder (ImageFolder) draws accuracy against latency, with a row per scorer and keep, and exports CSV and SVG', async () => {
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&layers=1&backend=cpu`);
  await result();
  await page.setInputFiles('#eval-folder', path.join(root, 'tests/fixtures/eval-tiny'));
  await page.click('#eval-run');
  await page.waitForFunction(() => Number(document.body.dataset.evaluations || 0) > 0 || !document.getElementById('error').hidden, null, { timeout: 240_000 });
  const ev = await page.evaluate(() => ({
    error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
    rows: [...document.querySelectorAll('#eval-table tbody tr')].map((tr) => [...tr.cells].map((c) => c.textContent)),
    lines: document.querySelectorAll('#eval-chart svg polyline').length,
    csv: document.getElementById('eval-csv').href,
    status: document.getElementById('status').textContent,
  }));
  assert(!ev.error, `evaluation failed: ${ev.error}`);
  assert(ev.rows.length === 1 + 6 * 4, `rows: ${JSON.stringify(ev.rows)}`);
  for (const m of ['divprune', 'visionzip']) assert(ev.rows.filter((r) => r[0] === m).length === 4, `${m} rows: ${JSON.stringify(ev.rows)}`);
  assert(ev.rows.filter((r) => r[0] === 'tome').length === 4, `ToMe rows: ${JSON.stringify(ev.rows)}`);
  assert(ev.rows[0][0] === 'unpruned' && ev.rows[0][4] === '1.000', `unpruned row: ${ev.rows[0]}`);
  for (const r of ev.rows) for (const i of [2, 3, 4]) assert(Number(r[i]) >= 0 && Number(r[i]) <= 1, `row ${r}`);
  assert(ev.lines === 12, `chart lines: ${ev.lines} (6 methods × 2 panels)`);
  assert(ev.csv.startsWith('blob:') && /20 images in 4 classes/.test(ev.status), `${ev.csv} / ${ev.status}`);
  const csv = await page.evaluate(() => globalThis.effarchLastEval.csv);
  assert(csv.split('\n').filter(Boolean).length === 26 && csv.startsWith('scorer,keep,images,top1'), csv);
  await page.screenshot({ path: path.join(shots, 'evaluate.png'), fullPage: true });
  console.log(`    ${ev.status}; unpruned top-1 ${ev.rows[0][2]}`);
});

await check('compare methods: one card per method with its overlay, cos-sim, ms and labels; sortable; in the URL', async () => {
  await page.fill('#labels', 'a cat, a dog, a rocket');
  await page.$eval('#labels', (el) => el.dispatchEvent(new Event('change')));
  await result();
  await page.click('#compare');
  const s = await settle(240_000);
  assert(s.outcome === 'ok' && (await page.evaluate(() => Number(document.body.dataset.compares || 0))) === 1, `the comparison failed: ${s.error}`);
  const v = await page.evaluate(() => ({
    cards: [...document.querySelectorAll('#compare-grid .card')].map((c) => ({ scorer: c.dataset.scorer, canvas: !!c.querySelector('canvas'), text: c.textContent })),
    single: document.querySelector('.result-grid').hidden,
    url: location.search,
    report: globalThis.effarchLastCompare,
  }));
  const names = v.cards.map((c) => c.scorer);
  assert(JSON.stringify(names) === JSON.stringify(['kq-norm:key', 'cls-attn', 'random', 'tome', 'divprune', 'visionzip']), `cards: ${names}`);
  assert(v.cards.every((c) => c.canvas && /cos 0\.\d{4}|cos 1\.0000/.test(c.text) && /ms/.test(c.text) && /%/.test(c.text)), `card texts: ${v.cards.map((c) => c.text)}`);
  const titles = ['kq-norm (‖key‖)', 'cls-attn (EViT)', 'random', 'ToMe', 'DivPrune', 'VisionZip'];
  assert(v.cards.every((c, i) => c.text.startsWith(titles[i])), `card titles (the core's short names): ${v.cards.map((c) => c.text.slice(0, 20))}`);
  assert(v.single && /view=compare/.test(v.url), `compare view shown ${v.single}, url ${v.url}`);
  const r = v.report;
  for (const m of r.methods) {
    assert(m.cos_to_unpruned > 0 && m.cos_to_unpruned <= 1.0001 && m.ms > 0 && m.label_probs.length === 3, `method ${JSON.stringify(m).slice(0, 300)}`);
    assert(m.tokens === nKeep(0.5, N) + 1 || m.scorer === 'tome', `${m.scorer}: ${m.tokens} tokens`);
  }
  assert(r.methods.find((m) => m.scorer === 'visionzip').groups.length === N, 'VisionZip merge map');
  await page.selectOption('#compare-sort', 'cos');
  const sorted = await page.$$eval('#compare-grid .card', (cs) => cs.map((c) => c.dataset.scorer));
  const byCos = [...r.methods].sort((a, b) => b.cos_to_unpruned - a.cos_to_unpruned).map((m) => m.scorer);
  assert(JSON.stringify(sorted) === JSON.stringify(byCos) && /sort=cos/.test(page.url()), `sorted ${sorted} vs ${byCos}; ${page.url()}`);
  await page.screenshot({ path: path.join(shots, 'compare.png'), fullPage: true });
  console.log(`    ${await page.textContent('#status')}`);
  // A shared link opens the compare view as it was.
  const p2 = await context.newPage();
  await p2.goto(page.url());
  await p2.waitForFunction(() => Number(document.body.dataset.compares || 0) > 0 && !document.body.classList.contains('busy'), null, { timeout: 240_000 });
  const order2 = await p2.$$eval('#compare-grid .card', (cs) => cs.map((c) => c.dataset.scorer));
  assert(JSON.stringify(order2) === JSON.stringify(byCos), `the link's compare view: ${order2}`);
  await p2.close();
  await page.click('#compare-close');
  await result();
  assert(await page.evaluate(() => document.getElementById('compare-out').hidden && !/view=compare/.test(location.search)), 'back to one method');
  await page.fill('#labels', '');
  await page.$eval('#labels', (el) => el.dispatchEvent(new Event('change')));
  await result();
});

await check('the sweep draws latency and cos-sim for p = 1.0 … 0.3', async () => {
  await page.click('#sweep');
  await page.waitForFunction(() => document.getElementById('chart').dataset.points === '8' && !document.body.classList.contains('busy'), null, { timeout: 300_000 });
  const dots = await page.$$eval('#chart circle', (c) => c.length);
  assert(dots === 16, `chart dots: ${dots}`);
  await page.screenshot({ path: path.join(shots, 'sweep.png'), fullPage: true });
});

await check('the npm package (pkg/) works from another page', async () => {
  assert(fs.existsSync(path.join(pkg, 'effarch.d.ts')) && fs.existsSync(path.join(pkg, 'threads/effarch.js')), 'pkg/ is missing or lacks threads/: run scripts/build_pkg.sh');
  const index = fs.readFileSync(path.join(pkg, 'index.d.ts'), 'utf8');
  assert(index.includes('export function loadEngine(options?: LoadOptions): Promise<Loaded>') && index.includes("build: 'threads-relaxed' | 'threads' | 'single'"), 'index.d.ts lacks the loader types');
  const dts = fs.readFileSync(path.join(pkg, 'effarch.d.ts'), 'utf8');
  for (const t of ['interface RunReport', 'interface RunOptions', 'interface AutoChoice', 'choice(): AutoChoice | undefined', 'static fromUrl(', 'run(image: Uint8Array | number[], options: RunOptions | undefined): Promise<RunReport>']) {
    assert(dts.includes(t), `effarch.d.ts lacks \`${t}\``);
  }
  const p = await context.newPage();
  p.on('pageerror', (e) => problems.push(`npm example: ${e.message}`));
  await p.goto(`${origin}/npm-example/`);
  await p.waitForFunction(() => !/^running/.test(document.getElementById('out').textContent), null, { timeout: 120_000 });
  const text = await p.textContent('#out');
  assert(!text.startsWith('error'), text);
  const r = JSON.parse(text);
  assert(r.kept === nKeep(0.5, N) && r.dim > 0 && r.total_ms > 0 && r.labels === 2, text);
  assert(r.figures === 2 && /ms\/layer.*→ CPU/.test(r.auto) && r.device.startsWith('cpu'), `backend 'auto' in the package: ${text}`);
  assert(r.build === 'threads' && r.threads === 2 && /2 threads/.test(r.device), `an isolated page gets the threaded build: ${text}`);
  console.log(`    npm example: ${text}`);
});

