// The e2e harness: a static server for dist/ (plus the fixtures and pkg/), headless Chromium,
// and the helpers every check file uses (open, settle, result, check, assert). page.mjs runs
// the check files in order; `page` is the page the last open() made (a live binding).
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

/** Closes the browser and the server, prints the summary and exits with the outcome. */
export async function finish() {
  await browser.close();
  server.close();
  console.log(`screenshots: ${shots}`);
  console.log(`test result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

export { N, assert, browser, check, context, example, fixture, model, nKeep, open, origin, page, pkg, problems, requests, result, root, seen, server, setSlider, settle, shots, start, waitError, weightRequests };
