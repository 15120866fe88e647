// End-to-end test of the built page (dist/) in headless Chromium on WebGPU (SwiftShader in
// CI), with the tiny fixture model served from localhost (no hub). Prints one
// "test result:" line that scripts/test.sh counts; screenshots go to target/e2e/.
//
//   node tests/e2e/page.mjs [dist-dir]
// The built page end to end in headless Chromium: the check files run in order on one
// browser (tests/e2e/harness.mjs), then the summary.
import { finish } from './harness.mjs';

await import('./clip.mjs');
await import('./mamba.mjs');
await import('./settings.mjs');
await finish();
