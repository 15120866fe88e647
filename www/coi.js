// Cross-origin isolation on hosts that cannot send headers (GitHub Pages, a plain static
// server): when the page wants more than one CPU thread and is not isolated, our service
// worker (coi-sw.js) adds COOP/COEP to this site's own responses, and the page reloads once
// under it. Without a secure context or service workers, the page stays on one thread and
// the badge says why.
import { threadsWanted } from './page.js';

const KEY = 'effarch.coi.reloaded';
const want = threadsWanted() || navigator.hardwareConcurrency || 1;
if (self.crossOriginIsolated) {
  sessionStorage.removeItem(KEY);
} else if (want > 1 && window.isSecureContext && 'serviceWorker' in navigator && !sessionStorage.getItem(KEY)) {
  navigator.serviceWorker
    .register(new URL('./coi-sw.js', import.meta.url))
    .then(() => navigator.serviceWorker.ready)
    .then(() => {
      // Once per tab session: if the headers do not take (a browser without COEP), no loop.
      sessionStorage.setItem(KEY, '1');
      location.reload();
    })
    .catch((e) => console.warn(`effarch: no service worker for cross-origin isolation (${e.message}); one CPU thread`));
}
