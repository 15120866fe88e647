// Settings that span the tabs: auto's measured choice, threads through the service worker,
// precision (int8 by default, the cache), and no page errors or CSP violations overall.
import fs from 'node:fs';
import path from 'node:path';
import { generation, mambaSeen } from './mamba.mjs';
import { N, assert, browser, check, model, nKeep, open, origin, page, problems, requests, result, seen, server, shots, start, weightRequests } from './harness.mjs';

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
  // In f32: the relaxed-SIMD build's int8 has its own activation scheme (7 bits), so its
  // int8 numbers are not the single-threaded build's; its f32 ones are, to rounding.
  const q = 'model=./fixtures/clip-tiny&keep=0.5&layers=1&backend=cpu&precision=f32';
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
  assert(badge.text === 'CPU · wasm SIMD128 · 2 threads', `badge: ${badge.text}`);
  const sel = await page.$eval('#threads', (s) => s.value);
  assert(sel === '2', `thread control shows ${sel}`);
  const diff = Math.max(...one.embeds.map((v, i) => Math.abs(v - two.embeds[i])));
  assert(one.embeds.length === two.embeds.length && one.embeds.length > 0 && diff <= 1e-5, `embedding 2 threads vs 1: max |diff| ${diff} over ${two.embeds.length}`);
  console.log(`    ${badge.text}: embedding max |diff| to 1 thread ${diff.toExponential(2)}`);
  // int8, the default precision, on the relaxed build: its kernel, named in the badge's title.
  await open(`${origin}/?${q.replace('&precision=f32', '')}&threads=2`);
  seen.set(page, 0);
  await result();
  const b8 = await badgeOf('#backend-badge');
  assert(b8.text === 'CPU · int8 · wasm SIMD128 · 2 threads' && /relaxed dot_i8x16_i7x16/.test(b8.title), `badge (int8 is the default precision): ${b8.text} / ${b8.title}`);
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
