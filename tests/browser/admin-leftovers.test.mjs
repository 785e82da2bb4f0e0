// The operators' dashboard posts a center's leftover doses of the day and lists what is left
// today, center by center: what the page says is checked against what the API holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, api, tag, until, ADMIN_TOKEN, BASE, DESKTOP } from './helpers.mjs';

const SEOUL_MS = 9 * 3_600_000;
const secondOfSeoulDay = () => Math.floor(((Date.now() + SEOUL_MS) % 86_400_000) / 1000);
const minuteOfSeoulDay = () => Math.floor(secondOfSeoulDay() / 60);
/** `HH:MM` in Seoul (the browser's zone in these tests) `minutes` from now. */
function seoulClock(minutes) {
  const m = (minuteOfSeoulDay() + minutes + 1440) % 1440;
  return `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

/** The listing's entries of one center, as citizens and this page read it. */
async function listed(centerId) {
  const r = await api('GET', '/api/v1/leftovers');
  assert.equal(r.status, 200);
  return r.data.filter((l) => l.center_id === centerId);
}

/** A citizen signed up by the API alone for the center's leftovers: their entry token. */
async function signUpByApi(cohortId, identity, centerId) {
  const ticket = (await api('POST', `/api/v1/cohorts/${cohortId}/queue`)).data.ticket;
  const pass = await until(async () => (await api('GET', '/api/v1/queue', { token: ticket })).data.pass,
    { what: 'the API citizen to be admitted' });
  const v = await api('POST', '/api/v1/verifications', { token: pass, body: identity });
  assert.equal(v.status, 201, JSON.stringify(v.data));
  const s = await api('POST', '/api/v1/leftovers/waitlist', { token: v.data.session, body: { center_ids: [centerId] } });
  assert.equal(s.status, 201, JSON.stringify(s.data));
  return s.data.entry;
}

// Raised from the run's 90 s: in the last two minutes of Seoul's day it first waits for midnight.
test('an operator posts today\'s leftover doses for a center, sees them listed as the API lists them, and is told when the time has passed', { timeout: 150_000 }, async () => {
  // The form takes whole minutes: "later today", a minute or more ahead, exists until 23:58;
  // in the last two minutes of the day, wait for the next.
  await until(() => secondOfSeoulDay() < 86_400 - 120,
    { timeout: 130_000, every: 1_000, what: 'Seoul\'s day to have two minutes left' });
  const k = tag();
  const vaccine = `Pfizer-${k}`;
  const centerName = `잔여 보건소 ${k}`;
  const { cohort, center } = await arrange({
    cohort: { name: `잔여 운영 ${k}`, vaccine },
    center: { name: centerName, region: '부산', address: '중구 1' },
    slots: [[5, '10:00', 20], [33, '10:00', 20]],
  });
  const untilAt = seoulClock(Math.min(60, 1439 - minuteOfSeoulDay()));
  const b = await openBrowser({ viewport: DESKTOP });
  try {
    const { page } = b;
    await page.goto(`${BASE}/admin`);
    await page.getByLabel('관리자 토큰').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: '로그인' }).click();
    await page.locator('#h-dash').waitFor();
    // Nothing posted at this center yet: not in the list.
    assert.deepEqual(await listed(center.id), []);
    // Once the dashboard shows the center, the leftover list it drew at the same time has no row for it.
    await page.locator(`#center-table tr[data-id="${center.id}"]`).waitFor();
    assert.equal(await page.locator(`#leftover-table tr[data-center="${center.id}"]`).count(), 0);

    const form = page.locator('#leftover-form');
    await form.locator(`#lf-center option[value="${center.id}"]`).waitFor({ state: 'attached' });
    await form.getByLabel('접종 기관').selectOption(String(center.id));
    await form.getByLabel('백신').fill(vaccine);
    await form.getByLabel('회분').fill('3');
    await form.getByLabel('오늘 몇 시까지').fill(untilAt);
    await form.getByRole('button', { name: '잔여백신 등록' }).click();
    const status = page.locator('#lf-status');
    await status.filter({ hasText: '등록했습니다' }).waitFor();

    // The API holds what the page said: three doses of this vaccine until that time, all left.
    const [posted] = await listed(center.id);
    assert.ok(posted, 'the posting is listed');
    assert.equal(posted.vaccine, vaccine);
    assert.equal(posted.remaining, 3);
    assert.equal(posted.until.slice(11, 16), untilAt);
    const said = await status.textContent();
    for (const part of [centerName, vaccine, '3회분', `${untilAt}까지`, '남은 3회분']) {
      assert.ok(said.includes(part), `"${said}" mentions ${part}`);
    }
    const row = page.locator(`#leftover-table tr[data-center="${center.id}"]`);
    await row.waitFor();
    const cells = async () => row.locator('td').allTextContents();
    assert.deepEqual(await cells(), [centerName, '부산', vaccine, '3', untilAt]);
    await shot(page, 'admin-05-leftovers-posted');

    // A citizen signs up and is offered a dose: the list follows the API, one dose fewer.
    const entry = await signUpByApi(cohort.id, { name: '박지훈', birth_date: '1963-02-02', phone: '010-4567-3333' }, center.id);
    await until(async () => (await api('GET', '/api/v1/leftovers/waitlist', { token: entry })).data.state === 'offered',
      { what: 'the citizen to be offered a dose' });
    assert.equal((await listed(center.id))[0].remaining, 2);
    await until(async () => (await cells())[3] === '2', { what: 'the page to show two doses left' });

    // A time already past: the server's 422 is shown, at the field too, and nothing is posted.
    // The minute now running has begun: its start is past.
    await form.getByLabel('오늘 몇 시까지').fill(seoulClock(0));
    await form.getByRole('button', { name: '잔여백신 등록' }).click();
    await status.filter({ hasText: '등록하지 못했습니다' }).waitFor();
    assert.equal(await status.getAttribute('class'), 'msg error');
    assert.match(await status.textContent(), /until must be later than now/);
    assert.equal(await form.getByLabel('오늘 몇 시까지').getAttribute('aria-invalid'), 'true');
    const after = await listed(center.id);
    assert.equal(after.length, 1, JSON.stringify(after));
    assert.equal(after[0].remaining, 2);
    // A form the page can check for itself never reaches the server.
    await form.getByLabel('회분').fill('0');
    await form.getByRole('button', { name: '잔여백신 등록' }).click();
    await page.locator('#lf-doses-err', { hasText: '1에서 10,000 사이' }).waitFor();
    assert.equal((await listed(center.id)).length, 1);
    await shot(page, 'admin-06-leftovers-past');

    await page.getByRole('button', { name: 'English' }).click();
    await page.locator('#h-leftovers', { hasText: 'Leftover doses today' }).waitFor();
    await page.locator('#h-new-leftovers', { hasText: 'Post today\'s leftover doses' }).waitFor();
    await form.getByLabel('Doses').fill('1');
    await form.getByLabel('Usable until (today)').fill(untilAt);
    await form.getByRole('button', { name: 'Post leftover doses' }).click();
    await status.filter({ hasText: 'Posted 1 doses' }).waitFor();
    assert.equal((await listed(center.id)).reduce((n, l) => n + l.remaining, 0), 3);
    await until(async () => {
      const shown = await page.locator(`#leftover-table tr[data-center="${center.id}"] td.num`).allTextContents();
      return shown.map(Number).reduce((n, x) => n + x, 0) === 3;
    }, { what: 'the page to list both postings' });
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});
