// Page plumbing both tabs share: settings in the URL (each tab owns its keys and leaves the
// other's alone), the copy-link button, a list of stats, and picking model files from a
// local file chooser.

const $ = (id) => document.getElementById(id);

/** Sets `state[k]` from the URL for every key of `defaults`; returns the query. */
export function readUrl(state, defaults) {
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(defaults)) if (q.has(k)) state[k] = q.get(k);
  return q;
}

/**
 * Writes this tab's keys into the URL: those of `state` that differ from `defaults` and are
 * not empty, except `skip`, then `extra`. Other keys in the URL stay as they are.
 */
export function writeUrl(state, defaults, { skip = [], extra = {} } = {}) {
  const q = new URLSearchParams(location.search);
  for (const k of Object.keys(defaults)) q.delete(k);
  for (const [k, v] of Object.entries(state)) if (!skip.includes(k) && v !== '' && v !== defaults[k]) q.set(k, v);
  for (const [k, v] of Object.entries(extra)) q.set(k, v);
  const s = q.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

/** A button that writes the URL (`update`) and copies it, saying what the link reproduces. */
export function copyLinkButton(id, update, setStatus, what) {
  $(id).onclick = async () => {
    update();
    try {
      await navigator.clipboard.writeText(location.href);
      setStatus(`Link copied: it reproduces ${what}.`);
    } catch {
      setStatus(`Copy this link: ${location.href}`);
    }
  };
}

/** Fills `box` with `.stat` cells from `[label, value, id?]` items. */
export function renderStats(box, items) {
  box.replaceChildren(
    ...items.map(([k, v, id]) => {
      const d = document.createElement('div');
      d.className = 'stat';
      d.innerHTML = '<span class="k"></span><span class="v"></span>';
      d.querySelector('.k').textContent = k;
      d.querySelector('.v').textContent = v;
      if (id) d.id = id;
      return d;
    }),
  );
}

/** The chosen files by role: `{role: /name pattern/}` → `{role: File | undefined}`. */
export function pickFiles(fileList, roles) {
  const fs = [...fileList];
  return Object.fromEntries(Object.entries(roles).map(([role, re]) => [role, fs.find((f) => re.test(f.name))]));
}

/**
 * CPU threads the page asks its workers for: the `threads` URL key (a number ≥ 1), or 0 for
 * every core. Both tabs share it; the wasm pool cannot change size, so changing it reloads.
 */
export function threadsWanted() {
  const n = Number(new URLSearchParams(location.search).get('threads') || 0);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 64) : 0;
}

/** A worker script's URL carrying the thread count (engine.js reads it there). */
export function workerUrl(script) {
  const u = new URL(script, import.meta.url);
  const n = threadsWanted();
  if (n) u.searchParams.set('threads', String(n));
  return u;
}

/** Fills the thread-count control (auto, 1, 2, 4, … up to the cores) and reloads on change. */
export function threadsControl(id) {
  const sel = document.getElementById(id);
  if (!sel) return;
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  const counts = [...new Set([1, 2, 4, 8, 16, 32, cores, threadsWanted()].filter((n) => n >= 1 && (n <= cores || n === threadsWanted())))].sort((a, b) => a - b);
  sel.replaceChildren(new Option(`auto (${cores} core${cores === 1 ? '' : 's'})`, ''), ...counts.map((n) => new Option(String(n), String(n))));
  sel.value = threadsWanted() ? String(threadsWanted()) : '';
  sel.onchange = () => {
    const q = new URLSearchParams(location.search);
    if (sel.value) q.set('threads', sel.value);
    else q.delete('threads');
    location.search = q.toString();
  };
}

/** An image from the file input, a drop on `drop`, or a paste anywhere goes to `onFile(file)`. */
export function imageInputs(input, drop, onFile) {
  input.onchange = (ev) => onFile(ev.target.files[0]);
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    onFile(e.dataTransfer.files[0]);
  });
  document.addEventListener('paste', (e) => {
    const f = [...(e.clipboardData?.files ?? [])].find((f) => f.type.startsWith('image/'));
    if (f) onFile(f);
  });
}

/** The site's own default model, when its host published one (scripts/publish_models.sh writes
 *  models.json; the file shipped in www/ names none, and the hub's f32 ViT-B/16 stays the
 *  default): its path, or null. */
export async function siteDefaultModel() {
  try {
    const r = await fetch('./models.json');
    const m = r.ok ? await r.json() : null;
    if (typeof m?.default === 'string' && m.default) return m.default;
  } catch {
    // no models.json (another host's copy of the page): the hub's model
  }
  return null;
}
