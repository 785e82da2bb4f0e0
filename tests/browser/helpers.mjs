// Shared by the browser tests: a fresh Chromium per test, the server's API for arranging data,
// condition waits, and screenshots. `run.mjs` starts the server and sets BASE_URL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

export const BASE = process.env.BASE_URL;
if (!BASE) throw new Error('BASE_URL is not set: run the browser tests with `node run.mjs`');
export const ADMIN_TOKEN = process.env.ADMIN_TOKEN ?? 'browser-admin';
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 900 };
export const SHOTS = path.join(here, 'screenshots');

const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * A fresh Chromium with its own user-data-dir. A missing browser is an error, never a skip:
 * a test run that did not look at the pages must not pass.
 */
export async function openBrowser({ viewport = PHONE } = {}) {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}; install it (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reservation-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport,
      locale: 'ko-KR',
      timezoneId: 'Asia/Seoul',
    });
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // The pages must load nothing from anywhere but the server under test.
  const foreign = [];
  context.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(BASE) && !url.startsWith('data:')) foreign.push(url);
  });
  return {
    context,
    page,
    errors,
    foreign,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function shot(page, name, options = {}) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true, ...options });
}

export async function api(method, urlPath, { body, token, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(BASE + urlPath, init);
  const text = await res.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    // not JSON (the pages, /metrics)
  }
  return { status: res.status, data, headers: res.headers };
}

export async function adminApi(method, urlPath, body) {
  const r = await api(method, `/api/v1/admin${urlPath}`, { body, token: ADMIN_TOKEN });
  if (r.status >= 300) throw new Error(`${method} ${urlPath}: ${r.status} ${JSON.stringify(r.data)}`);
  return r.data;
}

/** Polls `probe` until it returns something truthy; fails with `what` after `timeout` ms. */
export async function until(probe, { timeout = 15_000, every = 200, what = 'the condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** A day `days` from today as YYYY-MM-DD (far enough ahead that no zone makes it today). */
export function day(days) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

export function instant(msFromNow) {
  return new Date(Date.now() + msFromNow).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Short and unique per run, so tests sharing one server never see each other's data. */
export const tag = () => Math.random().toString(36).slice(2, 7);

/**
 * A cohort with a center and slots, through the admin API. `slots` are [dayOffset, 'HH:MM',
 * capacity]; each gets an hour.
 */
export async function arrange({ cohort, center, slots = [] }) {
  const c = await adminApi('POST', '/cohorts', {
    birth_year_from: 1962,
    birth_year_to: 1966,
    opens_at: instant(-60_000),
    closes_at: instant(30 * 86_400_000),
    dose_interval_days: 28,
    ...cohort,
  });
  let ctr = null;
  let made = [];
  if (center) {
    ctr = await adminApi('POST', '/centers', center);
    if (slots.length) {
      const end = (t) => `${String(Number(t.slice(0, 2)) + 1).padStart(2, '0')}${t.slice(2)}`;
      const body = slots.map(([d, start, capacity]) => ({
        date: day(d), start_time: start, end_time: end(start), capacity, vaccine: c.vaccine,
      }));
      made = (await adminApi('POST', `/centers/${ctr.id}/slots`, { slots: body })).slots;
    }
  }
  return { cohort: c, center: ctr, slots: made };
}

/** A citizen who books through the API alone: join, wait for the pass, verify, book. */
export async function bookByApi(cohortId, identity, slotId) {
  const joined = await api('POST', `/api/v1/cohorts/${cohortId}/queue`);
  const ticket = joined.data.ticket;
  const pass = await until(async () => {
    const q = await api('GET', '/api/v1/queue', { token: ticket });
    return q.data.pass;
  }, { what: 'the API citizen to be admitted' });
  const v = await api('POST', '/api/v1/verifications', { token: pass, body: identity });
  if (v.status !== 201) throw new Error(`verification: ${v.status} ${JSON.stringify(v.data)}`);
  const b = await api('POST', '/api/v1/bookings', { token: v.data.session, body: { slot_id: slotId } });
  if (b.status !== 201) throw new Error(`booking: ${b.status} ${JSON.stringify(b.data)}`);
  return b.data;
}

/** How the citizen's page writes a day in Korean, e.g. 2031년 7월 1일. */
export function koreanDay(ymd) {
  const [y, m, d] = ymd.split('-').map(Number);
  return `${y}년 ${m}월 ${d}일`;
}
