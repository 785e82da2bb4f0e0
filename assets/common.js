// Small helpers both pages share: building elements without innerHTML (names typed by
// operators are shown as text, never parsed as markup), one way to call the API and read its
// errors, and storage that never throws (private browsing can refuse it).

/** Builds an element: h('p', {class: 'x', onclick: f}, 'text', child). */
export function h(tag, attrs = {}, ...children) {
  const svg = ['svg', 'g', 'path', 'polyline', 'line', 'rect', 'text', 'title', 'circle'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k in el && !svg && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * Calls the API. Never throws: a network failure is `{ok: false, status: 0, error: 'network'}`,
 * so callers handle every outcome in one place. `retryAfter` is in seconds (503 and 429).
 */
export async function call(method, path, { token, body, headers = {} } = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers }, cache: 'no-store' };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    return { ok: false, status: 0, error: 'network', message: String(e) };
  }
  const text = await res.text().catch(() => '');
  let data = text;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // /metrics answers plain text; keep it as is.
  }
  const retry = Number.parseInt(res.headers.get('Retry-After') ?? '', 10);
  const out = { ok: res.ok, status: res.status, data, retryAfter: Number.isFinite(retry) ? retry : null };
  if (!res.ok) {
    out.error = (data && data.error) || (res.status >= 500 ? 'unavailable' : 'http_' + res.status);
    out.message = (data && data.message) || '';
  }
  return out;
}

/** JSON in localStorage or sessionStorage; a refusal or a corrupt value reads as null. */
export function stored(area, key, value) {
  const s = area === 'session' ? globalThis.sessionStorage : globalThis.localStorage;
  try {
    if (value === undefined) return JSON.parse(s.getItem(key) ?? 'null');
    if (value === null) s.removeItem(key);
    else s.setItem(key, JSON.stringify(value));
  } catch {
    // Storage refused or full: the page still works, it just forgets on reload.
  }
  return null;
}

/** Random hex, from the platform's generator (works outside secure contexts, unlike randomUUID). */
export function randomKey(bytes = 16) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Today in the browser's zone as YYYY-MM-DD, optionally moved by `days`. */
export function isoDay(days = 0, from = new Date()) {
  const d = new Date(from.getFullYear(), from.getMonth(), from.getDate() + days);
  return [d.getFullYear(), d.getMonth() + 1, d.getDate()].map((n, i) => String(n).padStart(i ? 2 : 4, '0')).join('-');
}

/** Accepts 19650301, 1965.3.1, 1965/03/01 and 1965-03-01; returns YYYY-MM-DD or null. */
export function normalizeDate(text) {
  const s = String(text).trim();
  let m = /^(\d{4})(\d{2})(\d{2})$/.exec(s) || /^(\d{4})[-./ ]\s*(\d{1,2})[-./ ]\s*(\d{1,2})\.?$/.exec(s);
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(y, mo - 1, d));
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return null;
  return `${m[1]}-${String(mo).padStart(2, '0')}-${String(d).padStart(2, '0')}`;
}

/** Marks a field invalid (or clears it) and says why, next to it and to screen readers. */
export function fieldError(input, message) {
  const out = document.getElementById(input.id + '-err');
  if (out) out.textContent = message || '';
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  return !message;
}
