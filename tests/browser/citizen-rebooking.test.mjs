// A citizen whose booking a supply change touched looks it up: a moved dose is shown with
// where it was and where it is now, as the API holds it; a booking that could not be moved
// says so, offers no cancel, and leads back into the usual journey.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, api, adminApi, bookByApi, koreanDay, tag, until, BASE } from './helpers.mjs';

const phone = () => `010-${1000 + Math.floor(Math.random() * 9000)}-${1000 + Math.floor(Math.random() * 9000)}`;

async function jobDone(id) {
  return until(async () => {
    const j = await adminApi('GET', `/rebookings/${id}`);
    return j.state === 'done' && j;
  }, { what: `rebooking job ${id} to finish` });
}

async function lookUp(page, code, birth) {
  await page.goto(`${BASE}/#manage`);
  await page.locator('#h-manage').waitFor();
  const form = page.locator('#manage-form');
  await form.getByLabel('예약 번호').fill(code);
  await form.getByLabel('생년월일').fill(birth);
  await page.getByRole('button', { name: '조회하기' }).click();
  await page.locator('#m-result').waitFor();
}

test('a booking whose second dose a shift moved shows the new day, and the move from the old one, as the API holds them', async () => {
  const k = tag();
  const centerName = `이동 보건소 ${k}`;
  const { cohort, slots } = await arrange({
    cohort: { name: `옮긴 예약 ${k}`, vaccine: `Moderna-${k}` },
    center: { name: centerName, region: `R-${k}`, address: '서구 4' },
    slots: [[5, '10:00', 5], [33, '10:00', 5], [54, '10:00', 5]],
  });
  const birth = '1965-07-07';
  const booked = await bookByApi(cohort.id, { name: '조은별', birth_date: birth, phone: phone() }, slots[0].id);
  const { id } = await adminApi('POST', '/rebookings', { vaccine: cohort.vaccine, second_dose_shift_days: 21 });
  assert.equal((await jobDone(id)).moved, 1);
  const held = (await api('POST', '/api/v1/bookings/lookup', { body: { code: booked.code, birth_date: birth } })).data;
  assert.equal(held.second_dose.date, slots[2].date);
  const [move] = held.moved;

  const b = await openBrowser();
  try {
    const { page } = b;
    await lookUp(page, booked.code, birth);
    await page.locator('#m-state', { hasText: '예약됨' }).waitFor();
    // The summary holds the places now in force: the second dose on its new day.
    const second = await page.locator('#m-summary .dose-second dd').innerText();
    assert.match(second, new RegExp(`${koreanDay(held.second_dose.date)}.*${held.second_dose.start_time}`));
    assert.match(await page.locator('#m-summary .dose-first dd').innerText(), new RegExp(koreanDay(held.first_dose.date)));
    // The move, from the day booked to the day now.
    const moves = page.locator('#m-move-list li');
    assert.equal(await moves.count(), held.moved.length);
    const item = moves.first();
    assert.equal(await item.getAttribute('data-dose'), String(move.dose));
    assert.match(await item.locator('.move-dose').innerText(), /^2차 접종/);
    await until(async () => (await item.locator('.move-to dd').innerText()).includes(centerName),
      { what: 'the center\'s name in the move' });
    assert.match(await item.locator('.move-from dd').innerText(), new RegExp(`${koreanDay(move.from.date)}.*${move.from.start_time}.*${centerName}`));
    assert.match(await item.locator('.move-to dd').innerText(), new RegExp(`${koreanDay(move.to.date)}.*${move.to.start_time}.*${centerName}`));
    assert.match(await item.locator('.move-at').innerText(), new RegExp(`${koreanDay(move.at.slice(0, 10))}.*${move.at.slice(11, 16)} 변경`));
    assert.equal(await page.locator('#m-moves-note').isVisible(), true);
    assert.equal(await page.locator('#m-rebook').isVisible(), false);
    assert.equal(await page.getByRole('button', { name: '예약 취소' }).isVisible(), true, 'a moved booking can still be cancelled');
    await shot(page, 'citizen-09-moved');

    await page.getByRole('button', { name: 'English' }).click();
    await page.locator('#h-moves', { hasText: 'Changes to your appointments' }).waitFor();
    assert.match(await item.locator('.move-dose').innerText(), /^Second dose/);
    assert.equal(await item.locator('.move-to dt').innerText(), 'Now');
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});

test('a booking that could not be moved says it must be booked again, offers no cancel, and leads to the cohort list', async () => {
  const k = tag();
  const { cohort, slots } = await arrange({
    cohort: { name: `다시 예약 ${k}`, vaccine: `Novavax-${k}` },
    center: { name: `취소 보건소 ${k}`, region: `R-${k}`, address: '남구 5' },
    slots: [[6, '09:00', 3], [34, '09:00', 3]],
  });
  const birth = '1966-08-08';
  const booked = await bookByApi(cohort.id, { name: '문다온', birth_date: birth, phone: phone() }, slots[0].id);
  // Its first dose's slot cancelled, with no other place of that vaccine in the region.
  const patched = await adminApi('PATCH', `/slots/${slots[0].id}`, { cancelled: true });
  assert.equal((await jobDone(patched.rebooking.id)).unmovable, 1);
  const held = (await api('POST', '/api/v1/bookings/lookup', { body: { code: booked.code, birth_date: birth } })).data;
  assert.equal(held.state, 'needs_rebooking');

  const b = await openBrowser();
  try {
    const { page } = b;
    await lookUp(page, booked.code, birth);
    await page.locator('#m-state', { hasText: '다시 예약 필요' }).waitFor();
    const why = page.locator('#m-rebook');
    await why.waitFor();
    assert.match(await why.innerText(), /옮기지 못했습니다[\s\S]*반환되었고[\s\S]*다시 예약해 주세요/);
    assert.equal(await page.getByRole('button', { name: '예약 취소' }).isVisible(), false, 'nothing is left to cancel');
    // The places it had are shown as given back, not as appointments.
    assert.match(await page.locator('#m-summary .dose-first').innerText(), new RegExp(`반환됨[\\s\\S]*${koreanDay(held.first_dose.date)}`));
    assert.equal(await page.locator('#m-moves').isVisible(), false, 'nothing was moved');
    await shot(page, 'citizen-10-needs-rebooking');

    await page.getByRole('button', { name: 'English' }).click();
    await page.locator('#m-state', { hasText: 'Book again' }).waitFor();
    assert.match(await why.innerText(), /could not be moved/);
    await page.getByRole('button', { name: 'Book again' }).click();
    await page.locator('#h-cohorts').waitFor();
    await page.locator(`[data-cohort="${cohort.id}"]`).waitFor();
    assert.equal(new URL(page.url()).hash, '');
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});
