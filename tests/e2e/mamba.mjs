// The Mamba tab: streaming generation on WebGPU, MRSS, bad input, the scaling benchmark,
// and switching tabs.
import fs from 'node:fs';
import path from 'node:path';
import { N, assert, check, model, nKeep, open, origin, page, requests, result, shots } from './harness.mjs';

// ---- the Mamba tab -------------------------------------------------------------------------
export const mambaSeen = new WeakMap();
/** Waits for the Mamba tab's next finished generation (counted in #mamba-view data-runs). */
export async function generation(timeout = 240_000) {
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

