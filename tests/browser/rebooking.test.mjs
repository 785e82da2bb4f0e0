// The operators' dashboard changes a slot, cancels one, and shifts every second dose of a
// vaccine, then follows each rebooking job to its end: what the page says (the answer, the job's
// row, the slot list) is checked against what the API holds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, api, adminApi, bookByApi, tag, until, ADMIN_TOKEN, BASE, DESKTOP, PHONE } from './helpers.mjs';

const phone = () => `010-${1000 + Math.floor(Math.random() * 9000)}-${1000 + Math.floor(Math.random() * 9000)}`;

async function signIn(page) {
  await page.goto(`${BASE}/admin`);
  await page.getByLabel('관리자 토큰').fill(ADMIN_TOKEN);
  await page.getByRole('button', { name: '로그인' }).click();
  await page.locator('#h-dash').waitFor();
}

/** Requests the page sent, by method and path (query left off), counted as they go. */
function recordRequests(page) {
  const seen = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    seen.push(`${r.method()} ${u.pathname}`);
  });
  return {
    count: (re) => seen.filter((s) => re.test(s)).length,
  };
}

/** The job's row once it says done, and the job as the API holds it. */
async function finishedRow(page, id) {
  const row = page.locator(`#job-table tr[data-id="${id}"]`);
  await row.and(page.locator('[data-state="done"]')).waitFor();
  const job = await adminApi('GET', `/rebookings/${id}`);
  assert.equal(job.state, 'done');
  return { cells: await row.locator('td').allTextContents(), job };
}

/** The row's figures, as the API's: id, vaccine, state, total, moved, unmovable, progress. */
function sameAsApi(cells, job) {
  assert.equal(cells[0], String(job.id));
  assert.equal(cells[2], job.vaccine);
  assert.equal(cells[3], '완료');
  assert.deepEqual(cells.slice(4, 7), [job.total, job.moved, job.unmovable].map(String));
  assert.equal(cells[7], '100%');
}

test('an operator lowers a slot\'s capacity and cancels another from the page; each job\'s row counts what the API counts and the bookings are where it says', async () => {
  const k = tag();
  const vaccine = `AZ-${k}`;
  const centerName = `슬롯 변경 보건소 ${k}`;
  const { cohort, center, slots } = await arrange({
    cohort: { name: `슬롯 변경 ${k}`, vaccine },
    center: { name: centerName, region: `R-${k}`, address: '중구 2' },
    slots: [[5, '10:00', 2], [5, '11:00', 1], [33, '10:00', 5]],
  });
  const [ten, eleven, second] = slots;
  const first = await bookByApi(cohort.id, { name: '한가람', birth_date: '1962-04-04', phone: phone() }, ten.id);
  const later = await bookByApi(cohort.id, { name: '윤보라', birth_date: '1963-05-05', phone: phone() }, ten.id);
  const b = await openBrowser({ viewport: DESKTOP });
  try {
    const { page } = b;
    const sent = recordRequests(page);
    await signIn(page);
    const form = page.locator('#slot-change-form');
    await form.locator(`#sc-center option[value="${center.id}"]`).waitFor({ state: 'attached' });
    await form.getByLabel('접종 기관').selectOption(String(center.id));
    // The slot list is the center's slots as citizens see them.
    await form.locator(`#sc-slot option[value="${ten.id}"]`).waitFor({ state: 'attached' });
    const listed = (await api('GET', `/api/v1/centers/${center.id}/slots`)).data.map((s) => String(s.id));
    assert.deepEqual(await form.locator('#sc-slot option').evaluateAll((os) => os.map((o) => o.value)), listed);
    await form.getByLabel('슬롯', { exact: true }).selectOption(String(ten.id));

    // What the form can check for itself never reaches the server.
    await form.getByLabel('새 정원').fill('-1');
    await form.getByRole('button', { name: '정원 변경' }).click();
    await page.locator('#sc-capacity-err', { hasText: '0에서 100,000 사이' }).waitFor();
    assert.equal(sent.count(/^PATCH /), 0);

    // Capacity 1 under 2 booked: the latest booking moves, by a job the answer names.
    await form.getByLabel('새 정원').fill('1');
    await form.getByRole('button', { name: '정원 변경' }).click();
    const status = page.locator('#sc-status');
    await status.filter({ hasText: '작업 #' }).waitFor();
    assert.equal(await status.getAttribute('class'), 'msg ok');
    const jobId = Number(/작업 #(\d+)/.exec(await status.textContent())[1]);
    assert.match(await status.textContent(), new RegExp(`슬롯 #${ten.id} .*정원 1`));
    const one = await finishedRow(page, jobId);
    sameAsApi(one.cells, one.job);
    assert.deepEqual([one.job.kind, one.job.slot_id, one.job.total, one.job.moved, one.job.unmovable], ['slot', ten.id, 1, 1, 0]);
    assert.equal(one.cells[1], `슬롯 #${ten.id} 변경`);
    const moved = await adminApi('GET', `/bookings/${later.code}`);
    assert.equal(moved.state, 'confirmed');
    assert.equal(moved.first_dose.slot_id, eleven.id, 'the latest booking went to the same day\'s next time');
    assert.deepEqual(moved.moved.map((m) => [m.dose, m.from.slot_id, m.to.slot_id]), [[1, ten.id, eleven.id]]);
    assert.equal((await adminApi('GET', `/bookings/${first.code}`)).first_dose.slot_id, ten.id, 'the earlier booking stays');
    await shot(page, 'admin-07-slot-capacity');

    // Cancelling asks first; "no" changes nothing.
    await form.getByLabel('슬롯', { exact: true }).selectOption(String(eleven.id));
    await form.getByRole('button', { name: '슬롯 취소' }).click();
    const confirm = page.locator('#sc-confirm');
    await confirm.waitFor();
    assert.match(await confirm.textContent(), new RegExp(`#${eleven.id}.*영구히 취소`));
    await shot(page, 'admin-08-slot-cancel-confirm');
    await confirm.getByRole('button', { name: '아니요' }).click();
    await confirm.waitFor({ state: 'hidden' });
    assert.equal(sent.count(/^PATCH /), 1);
    await form.getByRole('button', { name: '슬롯 취소' }).click();
    await confirm.getByRole('button', { name: '예, 슬롯을 취소합니다' }).click();
    await status.filter({ hasText: '취소했습니다' }).waitFor();
    const cancelJob = Number(/작업 #(\d+)/.exec(await status.textContent())[1]);
    const two = await finishedRow(page, cancelJob);
    sameAsApi(two.cells, two.job);
    // Nowhere left to go (10:00 is full, no other day or center): it needs rebooking.
    assert.deepEqual([two.job.total, two.job.moved, two.job.unmovable], [1, 0, 1]);
    assert.equal((await adminApi('GET', `/bookings/${later.code}`)).state, 'needs_rebooking');
    // The cancelled slot is gone from the list, as from the citizens' listing.
    await form.locator(`#sc-slot option[value="${eleven.id}"]`).waitFor({ state: 'detached' });
    assert.ok(!(await api('GET', `/api/v1/centers/${center.id}/slots`)).data.some((s) => s.id === eleven.id));
    // Both jobs are in the table, the newest first.
    assert.deepEqual(await page.locator('#job-table tbody tr').evaluateAll((rs) => rs.slice(0, 2).map((r) => r.dataset.id)),
      [String(cancelJob), String(jobId)]);
    await shot(page, 'admin-09-jobs');

    // The slot cancelled behind the page's back: the server's 409 and its code are shown, and
    // the list drops it.
    await adminApi('PATCH', `/slots/${ten.id}`, { cancelled: true });
    await form.getByLabel('슬롯', { exact: true }).selectOption(String(ten.id));
    await form.getByLabel('새 정원').fill('3');
    await form.getByRole('button', { name: '정원 변경' }).click();
    await status.filter({ hasText: 'slot_cancelled' }).waitFor();
    assert.equal(await status.getAttribute('class'), 'msg error');
    assert.match(await status.textContent(), /409 slot_cancelled/);
    await form.locator(`#sc-slot option[value="${ten.id}"]`).waitFor({ state: 'detached' });
    assert.equal(second.capacity, 5);

    // A job number nobody has: the 404 is said with its code.
    await page.getByLabel('작업 번호로 불러오기').fill('2147483000');
    await page.getByRole('button', { name: '불러오기' }).click();
    await page.locator('#jf-status', { hasText: '404 not_found' }).waitFor();

    // Nothing running any more: the jobs are no longer asked for, while the figures still refresh.
    await until(async () => (await page.locator('#job-table tbody tr:not([data-state="done"])').count()) === 0,
      { what: 'every job row to be done' });
    const asked = sent.count(/^GET \/api\/v1\/admin\/rebookings\/\d+$/);
    const stats = sent.count(/^GET \/api\/v1\/admin\/stats$/);
    await until(() => sent.count(/^GET \/api\/v1\/admin\/stats$/) >= stats + 2, { what: 'two more refreshes of the figures' });
    // Only the one the form asked for (the 404) may have been counted since.
    assert.ok(sent.count(/^GET \/api\/v1\/admin\/rebookings\/\d+$/) <= asked + 1, 'no job polled once all are done');
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});

test('an operator shifts a vaccine\'s second doses from the page: checked as the server checks, confirmed, followed to done, and the booking\'s new day is the API\'s', async () => {
  const k = tag();
  const vaccine = `Pfizer-${k}`;
  const { cohort, slots } = await arrange({
    cohort: { name: `2차 미루기 ${k}`, vaccine },
    center: { name: `미루기 보건소 ${k}`, region: `R-${k}`, address: '동구 3' },
    slots: [[5, '10:00', 5], [33, '10:00', 5], [47, '10:00', 5]],
  });
  const birth = '1964-06-06';
  const booked = await bookByApi(cohort.id, { name: '서하준', birth_date: birth, phone: phone() }, slots[0].id);
  assert.equal(booked.second_dose.date, slots[1].date);
  const b = await openBrowser({ viewport: PHONE });
  try {
    const { page } = b;
    const sent = recordRequests(page);
    await signIn(page);
    const form = page.locator('#shift-form');
    const days = form.getByLabel('미룰 날수');
    const submit = form.getByRole('button', { name: '일정 미루기' });
    await form.getByLabel('백신').fill(vaccine);
    for (const wrong of ['91', '0', '1.5']) {
      await days.fill(wrong);
      await submit.click();
      await page.locator('#sh-days-err', { hasText: '1에서 90 사이' }).waitFor();
      assert.equal(await days.getAttribute('aria-invalid'), 'true');
      assert.equal(await page.locator('#sh-confirm').isVisible(), false);
    }
    await days.fill('14');
    await form.getByLabel('백신').fill('Pfizer!');
    await submit.click();
    await page.locator('#sh-vaccine-err', { hasText: '40자까지' }).waitFor();
    assert.equal(sent.count(/^POST \/api\/v1\/admin\/rebookings$/), 0, 'nothing the server would refuse was sent');

    await form.getByLabel('백신').fill(vaccine);
    await submit.click();
    const confirm = page.locator('#sh-confirm');
    await confirm.waitFor();
    assert.match(await confirm.textContent(), new RegExp(`${vaccine} 백신.*14일 뒤로`));
    assert.equal(await days.getAttribute('aria-invalid'), null);
    await confirm.scrollIntoViewIfNeeded();
    await shot(page, 'admin-10-shift-confirm-phone', { fullPage: false });
    await confirm.getByRole('button', { name: '예, 시작합니다' }).click();
    const status = page.locator('#sh-status');
    await status.filter({ hasText: '시작했습니다' }).waitFor();
    const jobId = Number(/작업 #(\d+)/.exec(await status.textContent())[1]);
    const { cells, job } = await finishedRow(page, jobId);
    sameAsApi(cells, job);
    assert.deepEqual([job.kind, job.vaccine, job.second_dose_shift_days, job.total, job.moved, job.unmovable],
      ['shift', vaccine, 14, 1, 1, 0]);
    assert.equal(cells[1], '2차 접종 14일 미루기');

    // The citizen's lookup holds the day the shift gave: 14 days after the old second dose.
    const lookup = await api('POST', '/api/v1/bookings/lookup', { body: { code: booked.code, birth_date: birth } });
    assert.equal(lookup.status, 200);
    assert.equal(lookup.data.second_dose.date, slots[2].date);
    assert.deepEqual(lookup.data.moved.map((m) => [m.dose, m.from.date, m.to.date]), [[2, slots[1].date, slots[2].date]]);
    await page.locator('#h-jobs').scrollIntoViewIfNeeded();
    await shot(page, 'admin-11-shift-done-phone', { fullPage: false });

    // In English, and after a reload (the server lists its jobs).
    await page.getByRole('button', { name: 'English' }).click();
    await page.locator('#h-jobs', { hasText: 'Rebooking jobs' }).waitFor();
    await page.locator(`#job-table tr[data-id="${jobId}"] td`, { hasText: 'done' }).first().waitFor();
    await page.reload();
    await page.locator(`#job-table tr[data-id="${jobId}"][data-state="done"]`).waitFor();
    // A job started elsewhere (by the API, as by another operator) shows up by itself, done,
    // above this one, with the counts the API gives.
    const other = await api('POST', '/api/v1/admin/rebookings', { token: ADMIN_TOKEN, body: { vaccine: `${vaccine}-elsewhere`, second_dose_shift_days: 7 } });
    assert.equal(other.status, 202, JSON.stringify(other.data));
    await page.locator(`#job-table tr[data-id="${other.data.id}"][data-state="done"]`).waitFor();
    const order = await page.locator('#job-table tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.dataset.id)));
    assert.ok(order.indexOf(other.data.id) < order.indexOf(jobId), `newest first: ${order}`);
    const otherJob = await api('GET', `/api/v1/admin/rebookings/${other.data.id}`, { token: ADMIN_TOKEN });
    assert.deepEqual([otherJob.data.total, otherJob.data.moved, otherJob.data.unmovable], [0, 0, 0]);
    assert.equal(await page.locator(`#job-table tr[data-id="${jobId}"] .job-kind`).textContent(), 'Second doses +14 days');
    await page.locator('#shift-form').getByLabel('Days later').fill('100');
    await page.locator('#shift-form').getByRole('button', { name: 'Shift second doses' }).click();
    await page.locator('#sh-days-err', { hasText: 'from 1 to 90' }).waitFor();
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});
