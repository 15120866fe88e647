// End-to-end test of the built page (dist/) in headless Chromium on WebGPU (SwiftShader in
// CI), with the tiny fixture model served from localhost (no hub). Prints one
// "test result:" line that scripts/test.sh counts; screenshots go to target/e2e/.
//
//   node tests/e2e/page.mjs [dist-dir]
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const shots = path.join(root, 'target/e2e');
fs.mkdirSync(shots, { recursive: true });
const fixture = path.join(root, 'tests/fixtures/clip-tiny');
const pkg = path.join(root, 'pkg');
const example = path.join(root, 'tests/e2e/npm-example');

// ---- a static server with Range support (as the hub's CDN has) -------------------------
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json', '.jpg': 'image/jpeg', '.png': 'image/png' };
const virtual = new Map(); // url path → Buffer
const model = fs.readFileSync(path.join(fixture, 'model.safetensors'));
for (const f of ['config.json', 'model.safetensors', 'vocab.json', 'merges.txt']) virtual.set(`/fixtures/clip-tiny/${f}`, fs.readFileSync(path.join(fixture, f)));
const mambaFixture = path.join(root, 'tests/fixtures/mamba-tiny');
for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) virtual.set(`/fixtures/mamba-tiny/${f}`, fs.readFileSync(path.join(mambaFixture, f)));
virtual.set('/fixtures/clip-trunc/config.json', fs.readFileSync(path.join(fixture, 'config.json')));
virtual.set('/fixtures/clip-trunc/model.safetensors', model.subarray(0, Math.floor(model.length * 0.6)));
// The site itself is served without headers (as GitHub Pages does: its service worker isolates
// it); the npm example page and the package get COOP/COEP from the server, as a host that can
// set them would send.
const isolation = (p) => (p.startsWith('/npm-example/') || p.startsWith('/pkg/') ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' } : {});
let weightRequests = 0;
const requests = new Map(); // url path → count
const server = http.createServer((req, res) => {
  let p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  if (p.endsWith('/')) p += 'index.html';
  let body = virtual.get(p);
  if (!body) {
    // The npm package (pkg/) and the README's example page using it sit beside the site.
    const [dir, rel] = p.startsWith('/pkg/') ? [pkg, p.slice(5)] : p.startsWith('/npm-example/') ? [example, p.slice(13)] : [dist, p];
    const file = path.join(dir, rel);
    if (!file.startsWith(dir) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end('not found');
      return;
    }
    body = fs.readFileSync(file);
  }
  if (p.endsWith('.safetensors')) weightRequests++;
  requests.set(p, (requests.get(p) ?? 0) + 1);
  const type = TYPES[path.extname(p)] ?? 'application/octet-stream';
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (m) {
    const start = Number(m[1]);
    const end = Math.min(body.length - 1, m[2] ? Number(m[2]) : body.length - 1);
    if (start >= body.length) {
      res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
      return;
    }
    res.writeHead(206, { 'Content-Type': type, 'Content-Range': `bytes ${start}-${end}/${body.length}`, 'Content-Length': end - start + 1, ...isolation(p) });
    res.end(body.subarray(start, end + 1));
    return;
  }
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, ...isolation(p) });
  res.end(body);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

// ---- checks ------------------------------------------------------------------------------
let passed = 0, failed = 0;
async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`test ${name} ... ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    console.log(`test ${name} ... FAILED\n    ${String(e.stack || e).split('\n').slice(0, 4).join('\n    ')}`);
    await page?.screenshot({ path: path.join(shots, `failed-${name.replace(/\W+/g, '_')}.png`), fullPage: true }).catch(() => {});
    if (!passed) {
      // Nothing works when the first check fails: stop instead of timing out on each.
      console.log(`test result: FAILED. 0 passed; ${failed} failed`);
      process.exit(1);
    }
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const nKeep = (p, n) => Math.max(1, Math.min(n, Math.floor(p * n + 0.5)));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
const problems = [];
let page;
// Pages open on one CPU thread unless the URL asks for more (the threads check below): with
// more, a page on this header-less server registers the isolating service worker and reloads.
async function open(url) {
  const u = new URL(url);
  if (!u.searchParams.has('threads')) u.searchParams.set('threads', '1');
  url = u.href;
  page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  await page.goto(url);
  return page;
}
// The page counts finished runs in <body data-runs> (and data-outcome ok|error); each check
// waits for a run newer than the last one it saw, so a stale result is never read.
const seen = new WeakMap();
async function settle(timeout) {
  const before = seen.get(page) ?? 0;
  await page.waitForFunction((n) => Number(document.body.dataset.runs || 0) > n && !document.body.classList.contains('busy'), before, { timeout });
  const s = await page.evaluate(() => ({ runs: Number(document.body.dataset.runs), outcome: document.body.dataset.outcome, error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent }));
  seen.set(page, s.runs);
  return s;
}
/** Waits for the next finished run, which must succeed, and returns the overlay's counts. */
async function result(timeout = 240_000) {
  const s = await settle(timeout);
  assert(s.outcome === 'ok', `the run failed: ${s.error}`);
  return page.evaluate(() => {
    const c = document.getElementById('overlay');
    return { pruned: Number(c.dataset.pruned), kept: Number(c.dataset.kept), tokens: Number(c.dataset.tokens), caption: document.getElementById('pruned-count').textContent, status: document.getElementById('status').textContent };
  });
}
/** Waits for the next finished run, which must fail with an error matching `re`. */
async function waitError(re, timeout = 120_000) {
  const s = await settle(timeout);
  assert(s.outcome === 'error', 'the run succeeded; an error was expected');
  const msg = s.error;
  assert(re.test(msg), `error shown: "${msg}" does not match ${re}`);
  return msg;
}
async function setSlider(value) {
  await page.$eval('#keep', (el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('input'));
    el.dispatchEvent(new Event('change'));
  }, value);
}

const N = 196;
// WebGPU by choice: on SwiftShader "auto" takes the CPU (checked below).
const start = `${origin}/?model=./fixtures/clip-tiny&keep=0.5&layers=1&backend=webgpu`;

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

// ---- the Mamba tab -------------------------------------------------------------------------
const mambaSeen = new WeakMap();
/** Waits for the Mamba tab's next finished generation (counted in #mamba-view data-runs). */
async function generation(timeout = 240_000) {
  const before = mambaSeen.get(page) ?? 0;
  await page.waitForFunction((n) => Number(document.getElementById('mamba-view').dataset.runs || 0) > n && !document.body.classList.contains('lm-busy'), before, { timeout });
  const s = await page.evaluate(() => {
    const v = document.getElementById('mamba-view');
    const stat = (id) => document.querySelector(`#${id} .v`)?.textContent ?? '';
    return {
      runs: Number(v.dataset.runs),
      outcome: v.dataset.outcome,
      error: document.getElementById('lm-error').hidden ? '' : document.getElementById('lm-error').textContent,
      text: document.querySelector('#lm-output .gen').textContent,
      streamed: Number(document.getElementById('lm-output').dataset.streamed),
      tps: parseFloat(stat('lm-tps')),
      skip: parseFloat(stat('lm-skip')),
      badge: document.getElementById('lm-badge').dataset.backend,
      clipHidden: document.getElementById('clip-view').hidden,
    };
  });
  mambaSeen.set(page, s.runs);
  return s;
}
const weightsBeforeMamba = requests.get('/fixtures/clip-tiny/model.safetensors');
const mambaUrl = `${origin}/?tab=mamba&lm=./fixtures/mamba-tiny&prompt=Hello%20world&max=12&lmbackend=webgpu`;
let mambaText = '';
await check('the Mamba tab streams a generation on WebGPU, and its link reproduces the text', async () => {
  await open(mambaUrl);
  const g = await generation();
  assert(g.outcome === 'ok', `generation failed: ${g.error}`);
  assert(g.clipHidden && g.badge === 'webgpu', `tab / backend: ${JSON.stringify(g)}`);
  assert(g.streamed > 0 && g.streamed <= 12 && g.text.length > 0, `streamed ${g.streamed} tokens, text "${g.text}"`);
  assert(g.tps > 0, `tokens/s ${g.tps}`);
  assert(!requests.has('/fixtures/clip-tiny/model.safetensors') || requests.get('/fixtures/clip-tiny/model.safetensors') === weightsBeforeMamba, 'opening the Mamba tab downloaded the CLIP weights');
  mambaText = g.text;
  await page.screenshot({ path: path.join(shots, 'mamba.png'), fullPage: true });
  const before = requests.get('/fixtures/mamba-tiny/model.safetensors');
  await open(mambaUrl);
  const g2 = await generation();
  assert(g2.outcome === 'ok' && g2.text === mambaText, `the link gave "${g2.text}", the sender saw "${mambaText}"`);
  assert(requests.get('/fixtures/mamba-tiny/model.safetensors') === before, 'reopening fetched the Mamba weights again; the cache should serve them');
  console.log(`    generated: ${JSON.stringify(mambaText)}, ${g.tps} tokens/s`);
});

await check('MRSS on shows the live skip rate and goes into the URL', async () => {
  await page.check('#lm-mrss');
  await page.$eval('#lm-tau', (el) => {
    el.value = '0.5';
    el.dispatchEvent(new Event('input'));
  });
  await page.click('#lm-generate');
  const g = await generation();
  assert(g.outcome === 'ok', `generation failed: ${g.error}`);
  assert(g.skip > 0 && g.skip < 100, `skip rate shown: ${g.skip}`);
  assert(new URL(page.url()).searchParams.get('tau') === '0.5', `URL ${page.url()}`);
  const quality = await page.textContent('#lm-quality .v');
  assert(/top-1 \d+(\.\d)?%, KL/.test(quality), `quality against the full scan: ${quality}`);
  console.log(`    MRSS τ = 0.5 merged ${g.skip}% of state updates; vs the full scan: ${quality}`);
});

await check('an empty prompt shows an error, and generation works after it', async () => {
  await page.fill('#lm-prompt', '');
  await page.$eval('#lm-prompt', (el) => el.dispatchEvent(new Event('change')));
  await page.click('#lm-generate');
  let g = await generation();
  assert(g.outcome === 'error' && /empty/i.test(g.error), `error shown: ${JSON.stringify(g)}`);
  await page.fill('#lm-prompt', 'Once upon a time');
  await page.$eval('#lm-prompt', (el) => el.dispatchEvent(new Event('change')));
  await page.click('#lm-generate');
  g = await generation();
  assert(g.outcome === 'ok' && g.error === '', `after the error: ${JSON.stringify(g)}`);
});

await check('the scaling benchmark charts the Mamba block against attention', async () => {
  await page.fill('#lm-bench-ns', '16,32,64');
  await page.$eval('#lm-bench-ns', (el) => el.dispatchEvent(new Event('change')));
  await page.fill('#lm-bench-width', '32');
  await page.$eval('#lm-bench-width', (el) => el.dispatchEvent(new Event('change')));
  await page.click('#lm-bench');
  await page.waitForFunction(() => document.getElementById('mamba-view').dataset.benchOutcome && !document.body.classList.contains('lm-busy'), null, { timeout: 300_000 });
  const out = await page.evaluate(() => ({
    outcome: document.getElementById('mamba-view').dataset.benchOutcome,
    error: document.getElementById('lm-error').textContent,
    dots: document.querySelectorAll('#lm-chart circle').length,
    rows: document.querySelectorAll('#lm-bench-table tr').length,
    note: document.getElementById('lm-bench-note').textContent,
  }));
  assert(out.outcome === 'ok', `bench failed: ${out.error}`);
  assert(out.dots === 12 && out.rows === 4 && /exponents/.test(out.note), JSON.stringify(out));
  await page.screenshot({ path: path.join(shots, 'mamba-bench.png'), fullPage: true });
  console.log(`    ${out.note}`);
});

await check('switching to the CLIP tab from a Mamba link loads and runs CLIP', async () => {
  await open(`${origin}/?tab=mamba&lm=./fixtures/mamba-tiny&max=2&model=./fixtures/clip-tiny`);
  await generation();
  await page.click('#tab-clip');
  const r = await result();
  assert(r.pruned === N - nKeep(0.5, N), `pruned ${r.pruned}`);
  assert(new URL(page.url()).searchParams.get('lm') === './fixtures/mamba-tiny', `the Mamba settings left the URL: ${page.url()}`);
});

// `auto` times one layer of the model on each backend once per browser, adapter and model,
// keeps the choice in localStorage, and reuses it on later loads without measuring again.
const AUTO_STORE = 'effarch.auto.v1';
async function reload() {
  await page.reload();
  seen.set(page, 0); // the page's run counters start again
  mambaSeen.set(page, 0);
}
const badgeOf = (id) => page.$eval(id, (b) => ({ backend: b.dataset.backend, auto: b.dataset.auto, text: b.textContent, title: b.title }));
await check('auto measures a layer on each backend, passes over the software WebGPU adapter, says why, and reuses the choice on reload', async () => {
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&layers=1`);
  await result();
  await page.evaluate((k) => localStorage.removeItem(k), AUTO_STORE);
  await reload();
  const r = await result();
  assert(r.pruned === N - nKeep(0.5, N), `pruned ${r.pruned}`);
  const first = await badgeOf('#backend-badge');
  assert(first.backend === 'cpu' && first.auto === 'measured' && /CPU/.test(first.text), `auto on SwiftShader: ${JSON.stringify(first)}`);
  assert(/WebGPU \(.*software\): [\d.]+ ms\/layer, CPU \(int8 wasm simd128, 1 thread\): [\d.]+ ms\/layer → CPU \(a software adapter is never picked\)/.test(first.title), `tooltip: ${first.title}`);
  console.log(`    measured: ${first.text} — ${first.title}`);
  const stored = await page.evaluate((k) => JSON.parse(localStorage.getItem(k) || '{}'), AUTO_STORE);
  // Keyed by adapter, threads, model and precision (int8, the default).
  const entry = Object.entries(stored).find(([k]) => k.endsWith('|1 thread|./fixtures/clip-tiny|int8'));
  assert(entry && entry[1].backend === 'cpu' && entry[1].figures.length === 2 && entry[1].figures.every((f) => f.ms_per_layer > 0), `cached: ${JSON.stringify(stored)}`);
  console.log(`    cached as ${entry[0]}: ${entry[1].figures.map((f) => `${f.label} ${f.ms_per_layer.toFixed(2)} ms/layer`).join(', ')}`);
  await reload();
  await result();
  const again = await badgeOf('#backend-badge');
  // "cached" means the worker was told the backend and measured nothing (a measuring load reports its figures).
  assert(again.backend === 'cpu' && again.auto === 'cached' && again.title.includes(entry[1].reason), `after reload: ${JSON.stringify(again)}`);
  console.log(`    reload: ${again.title}`);
  // A cache entry that is not a choice (edited, another version's) is ignored: measured again.
  await page.evaluate(([s, k]) => {
    const all = JSON.parse(localStorage.getItem(s));
    all[k].backend = 'bogus';
    localStorage.setItem(s, JSON.stringify(all));
  }, [AUTO_STORE, entry[0]]);
  await reload();
  await result();
  const remeasured = await badgeOf('#backend-badge');
  assert(remeasured.auto === 'measured' && remeasured.backend === 'cpu', `after a bad cache entry: ${JSON.stringify(remeasured)}`);

  await open(`${origin}/?tab=mamba&lm=./fixtures/mamba-tiny&prompt=Hello&max=2`);
  const g = await generation();
  const lm = await badgeOf('#lm-badge');
  assert(g.outcome === 'ok' && lm.backend === 'cpu' && ['measured', 'cached'].includes(lm.auto) && /ms\/layer.*→ CPU/.test(lm.title), `Mamba tab on auto: ${JSON.stringify({ g, lm })}`);
  await reload();
  const g2 = await generation();
  const lm2 = await badgeOf('#lm-badge');
  assert(g2.outcome === 'ok' && lm2.auto === 'cached' && lm2.backend === 'cpu', `Mamba tab after reload: ${JSON.stringify({ g2, lm2 })}`);
  console.log(`    Mamba tab: ${lm2.title}`);
});

await check('threads: on a header-less static server the service worker isolates the page, the threaded build runs on 2 threads and gives the single-threaded embedding', async () => {
  const q = 'model=./fixtures/clip-tiny&keep=0.5&layers=1&backend=cpu';
  const state = () => page.evaluate(() => ({ embeds: Array.from(globalThis.effarchLastReport.image_embeds), isolated: self.crossOriginIsolated, threads: document.body.dataset.threads, build: document.body.dataset.build }));
  await open(`${origin}/?${q}&threads=1`);
  let r = await result();
  const one = await state();
  assert(!one.isolated && one.threads === '1' && one.build === 'single', `threads=1: ${JSON.stringify({ ...one, embeds: undefined })}`);
  await open(`${origin}/?${q}&threads=2`);
  await page.waitForFunction(() => self.crossOriginIsolated === true, null, { timeout: 60_000 });
  seen.set(page, 0); // the service worker reloaded the page: its run counter starts again
  r = await result();
  assert(r.pruned === N - nKeep(0.5, N), `pruned ${r.pruned}`);
  const two = await state();
  const badge = await badgeOf('#backend-badge');
  // Chromium has relaxed SIMD: the isolated page loads the relaxed-SIMD threaded build.
  assert(two.isolated && two.threads === '2' && two.build === 'threads-relaxed', `threads=2: ${JSON.stringify({ ...two, embeds: undefined })}`);
  assert(badge.text === 'CPU · int8 · wasm SIMD128 · 2 threads', `badge (int8 is the default precision): ${badge.text}`);
  const sel = await page.$eval('#threads', (s) => s.value);
  assert(sel === '2', `thread control shows ${sel}`);
  const diff = Math.max(...one.embeds.map((v, i) => Math.abs(v - two.embeds[i])));
  assert(one.embeds.length === two.embeds.length && one.embeds.length > 0 && diff <= 1e-5, `embedding 2 threads vs 1: max |diff| ${diff} over ${two.embeds.length}`);
  console.log(`    ${badge.text}: embedding max |diff| to 1 thread ${diff.toExponential(2)}`);
  // The Mamba tab's worker on the threaded build: the same greedy text as on one thread.
  const lmUrl = (t) => `${origin}/?tab=mamba&lm=./fixtures/mamba-tiny&prompt=Hello%20world&max=12&lmbackend=cpu&threads=${t}`;
  await open(lmUrl(1));
  const g1 = await generation();
  await open(lmUrl(2));
  await page.waitForFunction(() => self.crossOriginIsolated === true, null, { timeout: 60_000 });
  mambaSeen.set(page, 0);
  const g2 = await generation();
  const lm = await badgeOf('#lm-badge');
  assert(g1.outcome === 'ok' && g2.outcome === 'ok' && g2.text === g1.text && g1.text.length > 0, `Mamba on 2 threads "${g2.text}" vs 1 thread "${g1.text}" (${g2.error || g1.error})`);
  assert(lm.text === 'CPU · wasm SIMD128 · 2 threads', `Mamba badge: ${lm.text}`);
});

await check("precision: the site's published int8 model is the default; f32 and int8 in the URL; int8 kept in the cache; cos int8 to f32; int8 on WebGPU", async () => {
  // No model in the URL: the copy scripts/publish_models.sh put beside the site (models.json).
  const published = '/models/clip-tiny-int8/model.safetensors';
  const before = requests.get(published) ?? 0;
  await open(`${origin}/?keep=0.5&backend=cpu`);
  let r = await result();
  const ui = () => page.evaluate(() => ({ model: document.getElementById('model').value, precision: document.getElementById('precision').value, size: document.getElementById('precision-size').textContent, badge: document.getElementById('backend-badge').textContent, cosF32: document.querySelector('#cos-f32 .v')?.textContent ?? null, url: location.href }));
  let u = await ui();
  assert(u.model === './models/clip-tiny-int8' && u.precision === 'int8' && (requests.get(published) ?? 0) > before, `default model: ${JSON.stringify(u)}`);
  assert(/^CPU · int8 ·/.test(u.badge) && /^int8: .* kept in this browser's cache$/.test(u.size) && r.pruned === N - nKeep(0.5, N), `int8 default: ${JSON.stringify(u)} ${JSON.stringify(r)}`);
  // f32 by link, then int8 one click away: a fresh download quantised in the worker; its cos to the f32 embedding shown.
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&backend=cpu&precision=f32`);
  r = await result();
  u = await ui();
  assert(u.precision === 'f32' && !/int8/.test(u.badge) && /^f32: /.test(u.size) && u.cosF32 === null, `f32 by link: ${JSON.stringify(u)}`);
  const f32Embeds = await page.evaluate(() => Array.from(globalThis.effarchLastReport.image_embeds));
  // Earlier checks cached this model's int8 tensors (int8 is the default): start from an empty cache.
  await page.evaluate(() => caches.delete('effarch-weights-v1'));
  const w0 = weightRequests;
  await page.selectOption('#precision', 'int8');
  r = await result();
  u = await ui();
  const int8Embeds = await page.evaluate(() => Array.from(globalThis.effarchLastReport.image_embeds));
  const diff = Math.max(...f32Embeds.map((v, i) => Math.abs(v - int8Embeds[i])));
  assert(u.precision === 'int8' && !/precision=/.test(u.url) && weightRequests > w0 && /^CPU · int8 ·/.test(u.badge) && /^int8: .* kept in this browser's cache \(f32: /.test(u.size), `int8 after f32: ${JSON.stringify(u)}`);
  assert(u.cosF32 !== null && Number(u.cosF32) > 0.99 && Number(u.cosF32) <= 1 && diff > 0, `cos int8 to f32 ${u.cosF32} (max |diff| ${diff})`);
  console.log(`    ${u.size}; cos int8 to f32 on the tiny model ${u.cosF32}`);
  // A later visit reads the cached int8 tensors: no weight request.
  const w1 = weightRequests;
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&backend=cpu`);
  r = await result();
  u = await ui();
  assert(weightRequests === w1 && /read from this browser's cache/.test(u.size), `int8 reload: ${weightRequests - w1} weight requests; ${JSON.stringify(u)} ${r.status}`);
  const cached = await page.evaluate(async () => (await (await caches.open('effarch-weights-v1')).keys()).map((q) => q.url).filter((x) => /clip-tiny\//.test(x) && /effarch-group=vision/.test(x)));
  // Only the int8 copy was kept (the cache was emptied before the int8 load).
  assert(cached.length > 0 && cached.every((x) => /precision=int8/.test(x)), `cache entries: ${cached}`);
  // int8 weights on WebGPU: the badge says so and the run's embedding is int8's, not f32's.
  await open(`${origin}/?model=./fixtures/clip-tiny&keep=0.5&backend=webgpu`);
  r = await result();
  u = await ui();
  const gpu8 = await page.evaluate(() => Array.from(globalThis.effarchLastReport.image_embeds));
  const dg = Math.max(...f32Embeds.map((v, i) => Math.abs(v - gpu8[i])));
  assert(/^WebGPU · int8 ·/.test(u.badge) && r.pruned === N - nKeep(0.5, N) && dg > 0, `WebGPU int8: ${JSON.stringify(u)} (max |diff| to f32 ${dg})`);
  await page.screenshot({ path: path.join(shots, 'precision.png'), fullPage: false });
  // The Mamba tab: f32 by default, int8 by link (the badge says so; the greedy text generates).
  await open(`${origin}/?tab=mamba&lm=./fixtures/mamba-tiny&prompt=Hello%20world&max=6&lmbackend=cpu&lmprecision=int8`);
  const g = await generation();
  const lm = await badgeOf('#lm-badge');
  const sel = await page.$eval('#lm-precision', (e) => e.value);
  assert(g.outcome === 'ok' && g.text.length > 0 && /^CPU · int8 ·/.test(lm.text) && sel === 'int8', `Mamba int8: ${JSON.stringify({ g, lm, sel })}`);
});

await check('no page errors and no CSP violations', async () => {
  assert(problems.length === 0, problems.join('\n'));
});

await browser.close();
server.close();
console.log(`screenshots: ${shots}`);
console.log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed`);
process.exit(failed ? 1 : 0);
