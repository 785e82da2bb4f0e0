// Leftover doses today on the citizen's page: the list, signing up, the offer with its
// countdown, declining (the dose passes on) and accepting (a booking).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, adminApi, api, tag, until, BASE } from './helpers.mjs';

/** An instant later today in Seoul: an hour from now, or just before midnight. */
function laterToday() {
  const seoulMs = Date.now() + 9 * 3_600_000;
  const toMidnight = 86_400_000 - (seoulMs % 86_400_000);
  return new Date(Date.now() + Math.min(3_600_000, toMidnight - 2_000)).toISOString().replace(/\.\d+Z$/, 'Z');
}

const seoulToday = () => new Date(Date.now() + 9 * 3_600_000).toISOString().slice(0, 10);

/** Joins `cohort` from the list and verifies `identity`: the page then holds a session. */
async function verifyThroughPage(page, cohort, identity) {
  await page.goto(`${BASE}/`);
  await page.locator(`[data-cohort="${cohort.id}"] button`).click();
  await page.locator('#h-verify').waitFor();
  const form = page.locator('#verify-form');
  await form.getByLabel('이름').fill(identity.name);
  await form.getByLabel('생년월일').fill(identity.birth);
  await form.getByLabel('휴대전화 번호').fill(identity.phone);
  await page.getByRole('button', { name: '확인하기' }).click();
  await page.locator('#h-place').waitFor();
}

/** A citizen who signs up by the API alone, ahead of the one on the page. */
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

test('leftover doses today: a citizen signs up from the list, sees the offer count down, passes it on, signs up again and books it', async () => {
  const k = tag();
  const vaccine = `Moderna-${k}`;
  const { cohort, center } = await arrange({
    cohort: { name: `잔여백신 ${k}`, vaccine },
    center: { name: `잔여센터 ${k}`, region: '서울', address: '종로구 1' },
    // The cohort's own places, and second-dose places 28 to 30 days from today.
    slots: [[5, '10:00', 20], [33, '10:00', 20], [28, '10:00', 5], [29, '10:00', 5], [30, '10:00', 5]],
  });
  // Someone signed up before: of two doses, one is held for them.
  const ahead = await signUpByApi(cohort.id, { name: '이서준', birth_date: '1964-05-05', phone: '010-3456-1111' }, center.id);
  await adminApi('POST', `/centers/${center.id}/leftovers`, { vaccine, doses: 2, until: laterToday() });
  await until(async () => (await api('GET', '/api/v1/leftovers/waitlist', { token: ahead })).data.state === 'offered',
    { what: 'the first citizen to be offered a dose' });

  const b = await openBrowser();
  try {
    const { page } = b;
    await verifyThroughPage(page, cohort, { name: '김민영', birth: '19650301', phone: '010-2345-2222' });
    await page.getByRole('link', { name: '오늘의 잔여백신' }).click();
    await page.locator('#h-leftovers').waitFor();
    const item = page.locator(`[data-leftover="${center.id}"]`);
    await until(async () => {
      const n = await item.count();
      if (!n) await page.reload();
      return n === 1;
    }, { what: 'the center to be listed' });
    assert.match(await item.innerText(), /남은 1회분/);
    await shot(page, 'leftovers-01-list');

    await item.locator('label').click();
    await page.getByRole('button', { name: '잔여백신 신청' }).click();
    const state = page.getByTestId('leftover-state');
    await until(async () => (await state.innerText()).trim() === '예약 가능', { what: 'the offer on the page' });
    assert.match(await page.getByTestId('offer-countdown').innerText(), /남은 시간 \d+:\d\d/);
    assert.match(await page.locator('#l-offer-text').innerText(), new RegExp(`잔여센터 ${k}`));
    await shot(page, 'leftovers-02-offer');

    // Passing it on ends the sign-up at once; the dose is free again.
    await page.getByRole('button', { name: '양보하기' }).click();
    await until(async () => (await state.innerText()).trim() === '신청 취소됨', { what: 'the sign-up to end' });
    assert.equal(await page.locator('#l-offer').isVisible(), false);

    // Signing up again: the free dose is offered again, and booked.
    await page.getByRole('button', { name: '다시 신청하기' }).click();
    await until(async () => (await item.count()) === 1, { what: 'the dose to be listed again' });
    await item.locator('label').click();
    await page.getByRole('button', { name: '잔여백신 신청' }).click();
    await until(async () => (await state.innerText()).trim() === '예약 가능', { what: 'the second offer' });
    await page.getByRole('button', { name: '예약하기' }).click();
    await page.locator('#h-done').waitFor();
    const code = (await page.getByTestId('booking-code').innerText()).trim();
    const booked = await adminApi('GET', `/bookings/${code}`);
    assert.equal(booked.state, 'confirmed');
    assert.equal(booked.first_dose.date, seoulToday());
    assert.equal(booked.first_dose.center_id, center.id);
    await shot(page, 'leftovers-03-booked');
    // The first citizen's offer was never touched.
    assert.equal((await api('GET', '/api/v1/leftovers/waitlist', { token: ahead })).data.state, 'offered');
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});
