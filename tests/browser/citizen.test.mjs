// The citizen's page, end to end in Chromium on a phone-sized screen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, adminApi, bookByApi, koreanDay, tag, until, BASE } from './helpers.mjs';

/** Joins `cohort` from the list and gets through the identity check. */
async function joinAndVerify(page, cohort, identity) {
  await page.goto(`${BASE}/`);
  await page.locator(`[data-cohort="${cohort.id}"] button`).click();
  await page.locator('#h-verify').waitFor();
  const form = page.locator('#verify-form');
  await form.getByLabel('이름').fill(identity.name);
  await form.getByLabel('생년월일').fill(identity.birth);
  await form.getByLabel('휴대전화 번호').fill(identity.phone);
}

/** Picks region, center, day and time by clicking their labels, as a person would. */
async function pick(page, { region, center, date, slot }) {
  await page.locator('#p-region-list label', { hasText: region }).click();
  await page.locator(`label[for="center-${center.id}"]`).click();
  await page.locator(`label[for="date-${date}"]`).click();
  await page.locator(`label[for="slot-${slot.id}"]`).click();
}

test('a citizen books both doses through the page, then finds the booking and cancels it', async () => {
  const k = tag();
  const { cohort, center, slots } = await arrange({
    cohort: { name: `55-59세 ${k}`, vaccine: `Moderna-${k}` },
    center: { name: `종로구 예방접종센터 ${k}`, region: '서울', address: '종로구 삼봉로 43' },
    slots: [[5, '10:00', 20], [5, '11:00', 20], [33, '10:00', 20], [33, '11:00', 20]],
  });
  const b = await openBrowser();
  try {
    const { page } = b;
    await page.goto(`${BASE}/`);
    await page.locator(`[data-cohort="${cohort.id}"]`).waitFor();
    await shot(page, 'citizen-01-cohorts');

    await joinAndVerify(page, cohort, { name: '김민영', birth: '19650301', phone: '010-2345-6789' });
    await shot(page, 'citizen-02-verify');
    await page.getByRole('button', { name: '확인하기' }).click();

    await page.locator('#h-place').waitFor();
    const first = slots[0];
    await pick(page, { region: '서울', center, date: first.date, slot: first });
    assert.equal(await page.getByRole('radio', { name: /10:00–11:00/ }).isChecked(), true);
    await shot(page, 'citizen-03-place');
    await page.getByRole('button', { name: '다음' }).click();

    await page.locator('#h-confirm').waitFor();
    assert.match(await page.locator('#c-summary').innerText(), new RegExp(`${koreanDay(first.date)}.*10:00`));
    await shot(page, 'citizen-04-confirm');
    await page.getByRole('button', { name: '예약 확정' }).click();

    await page.locator('#h-done').waitFor();
    const code = (await page.getByTestId('booking-code').innerText()).trim();
    assert.match(code, /^[A-Z0-9]{12}$/);
    const booked = await adminApi('GET', `/bookings/${code}`);
    assert.equal(booked.state, 'confirmed');
    const firstDose = await page.locator('#d-summary .dose-first dd').innerText();
    const secondDose = await page.locator('#d-summary .dose-second dd').innerText();
    assert.match(firstDose, new RegExp(`${koreanDay(booked.first_dose.date)}.*${booked.first_dose.start_time}`));
    assert.match(secondDose, new RegExp(`${koreanDay(booked.second_dose.date)}.*${booked.second_dose.start_time}`));
    assert.equal(booked.second_dose.date, slots[2].date, 'the second dose is 28 days after the first');
    await shot(page, 'citizen-05-done');
    await page.emulateMedia({ media: 'print' });
    assert.equal(await page.locator('#d-print').isVisible(), false, 'the print button is not printed');
    await shot(page, 'citizen-06-done-print');
    await page.emulateMedia({ media: 'screen' });

    // Manage: the code (kept) and the birth date (from this visit) are filled in already.
    await page.locator('#view-done').getByRole('link', { name: '예약 조회·취소' }).click();
    await page.locator('#h-manage').waitFor();
    const manage = page.locator('#manage-form');
    assert.equal(await manage.getByLabel('예약 번호').inputValue(), code);
    assert.equal(await manage.getByLabel('생년월일').inputValue(), '1965-03-01');
    await page.getByRole('button', { name: '조회하기' }).click();
    await page.locator('#m-state', { hasText: '예약됨' }).waitFor();
    assert.match(await page.locator('#m-summary').innerText(), new RegExp(koreanDay(booked.second_dose.date)));
    await shot(page, 'citizen-07-manage');

    await page.getByRole('button', { name: '예약 취소' }).click();
    await page.getByRole('button', { name: '예, 취소합니다' }).click();
    await page.locator('#m-state', { hasText: '취소됨' }).waitFor();
    await page.locator('#m-status', { hasText: '취소되었습니다' }).waitFor();
    assert.equal((await adminApi('GET', `/bookings/${code}`)).state, 'cancelled');
    assert.equal(await page.getByRole('button', { name: '예약 취소' }).isVisible(), false);
    await shot(page, 'citizen-08-cancelled');

    assert.deepEqual(b.errors, [], 'no script error on the page');
    assert.deepEqual(b.foreign, [], 'nothing loaded from outside the server');
  } finally {
    await b.close();
  }
});

test('identity_busy: the page counts down from Retry-After and retries by itself', async () => {
  const k = tag();
  const { cohort } = await arrange({
    cohort: { name: `busy ${k}`, vaccine: `Moderna-${k}` },
    center: { name: `busy center ${k}`, region: `R-${k}`, address: '1' },
    slots: [[6, '09:00', 5], [34, '09:00', 5]],
  });
  const b = await openBrowser();
  try {
    const { page } = b;
    // The pool is never full in a test server, so the first answer is made busy here; the
    // retry goes through to the real server.
    let calls = 0;
    await page.route('**/api/v1/verifications', async (route) => {
      calls += 1;
      if (calls > 1) return route.continue();
      return route.fulfill({
        status: 503,
        headers: { 'Retry-After': '2', 'Content-Type': 'application/json' },
        body: JSON.stringify({ error: 'identity_busy', message: 'identity checks are busy' }),
      });
    });
    await joinAndVerify(page, cohort, { name: '이서준', birth: '1963-07-15', phone: '010-3456-7890' });
    const clicked = Date.now();
    await page.getByRole('button', { name: '확인하기' }).click();
    await page.locator('#v-status', { hasText: '자동으로 다시 시도' }).waitFor();
    await page.locator('#v-countdown', { hasText: /\d초 뒤 자동으로 다시 시도합니다/ }).waitFor();
    assert.equal(await page.getByRole('button', { name: '확인하기' }).isDisabled(), true);
    await shot(page, 'citizen-busy');
    await page.locator('#h-place').waitFor();
    assert.equal(calls, 2, 'one automatic retry');
    assert.ok(Date.now() - clicked >= 1500, 'the retry waited for Retry-After');
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('slot_full: a time taken by someone else meanwhile sends the citizen back to pick another', async () => {
  const k = tag();
  const { cohort, center, slots } = await arrange({
    cohort: { name: `slot full ${k}`, vaccine: `Pfizer-${k}`, dose_interval_days: 21 },
    center: { name: `해운대구 보건소 ${k}`, region: '부산', address: '해운대구 중동 1' },
    slots: [[7, '09:00', 1], [7, '10:00', 5], [28, '09:00', 5], [28, '10:00', 5]],
  });
  const [last, other] = slots;
  const b = await openBrowser();
  try {
    const { page } = b;
    await joinAndVerify(page, cohort, { name: '박지우', birth: '1964-11-02', phone: '010-4567-8901' });
    await page.getByRole('button', { name: '확인하기' }).click();
    await page.locator('#h-place').waitFor();
    await pick(page, { region: '부산', center, date: last.date, slot: last });
    await page.getByRole('button', { name: '다음' }).click();
    await page.locator('#h-confirm').waitFor();

    // Someone else takes the last place while this citizen reads the summary.
    await bookByApi(cohort.id, { name: '최유나', birth_date: '1962-01-20', phone: '010-5678-9012' }, last.id);
    await page.getByRole('button', { name: '예약 확정' }).click();

    await page.locator('#notice', { hasText: '다른 시간을 골라' }).waitFor();
    await page.locator('#h-place').waitFor();
    // The list is fetched again: the full time is shown full and cannot be chosen.
    await page.locator(`#slot-${last.id}:disabled`).waitFor({ state: 'attached' });
    await shot(page, 'citizen-slot-full');
    await page.locator(`label[for="slot-${other.id}"]`).click();
    await page.getByRole('button', { name: '다음' }).click();
    await page.getByRole('button', { name: '예약 확정' }).click();
    await page.locator('#h-done').waitFor();
    assert.match(await page.locator('#d-summary .dose-first dd').innerText(), /10:00/);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('keyboard only: from the cohort list to a booking without a mouse, with a visible focus ring', async () => {
  const k = tag();
  const region = `광주-${k}`;
  const { cohort, center, slots } = await arrange({
    cohort: { name: `keyboard ${k}`, vaccine: `Moderna-${k}` },
    center: { name: `광주 서구 보건소 ${k}`, region, address: '서구 1' },
    slots: [[9, '14:00', 3], [37, '14:00', 3]],
  });
  const [slot] = slots;
  const b = await openBrowser();
  try {
    const { page } = b;
    const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent);
    await page.goto(`${BASE}/`);
    await page.locator(`[data-cohort="${cohort.id}"] button`).focus();
    await page.keyboard.press('Enter');

    // The heading of each new step takes focus; the fields follow in order.
    await page.locator('#h-verify').waitFor();
    assert.equal(await focused(), 'h-verify');
    await page.keyboard.press('Tab');
    await page.keyboard.type('정하늘');
    await page.keyboard.press('Tab');
    await page.keyboard.type('19660909');
    await page.keyboard.press('Tab');
    await page.keyboard.type('01067890123');
    await page.keyboard.press('Enter');

    await page.locator('#h-place').waitFor();
    await until(async () => (await focused()) === 'h-place', { what: 'the place step to take focus' });
    await page.locator('#p-region-list input').first().waitFor({ state: 'attached' });
    await page.keyboard.press('Tab');
    // Arrow keys move through the regions, as in any radio group.
    await until(async () => {
      if (await page.locator(`[id="region-${region}"]`).isChecked()) return true;
      await page.keyboard.press('ArrowDown');
      return false;
    }, { what: `the region ${region} to be chosen with the arrow keys`, every: 50 });
    for (const id of [`center-${center.id}`, `date-${slot.date}`, `slot-${slot.id}`]) {
      await page.locator(`[id="${id}"]`).waitFor({ state: 'attached' });
      await page.keyboard.press('Tab');
      assert.equal(await focused(), id);
      await page.keyboard.press('Space');
      assert.equal(await page.locator(`[id="${id}"]`).isChecked(), true, `${id} chosen with the space bar`);
    }
    const ring = await page.evaluate(() => getComputedStyle(document.activeElement.nextElementSibling).outlineStyle);
    assert.equal(ring, 'solid', 'the focused choice shows a focus ring');
    await shot(page, 'citizen-keyboard-focus');
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'p-next');
    await page.keyboard.press('Enter');

    await page.locator('#h-confirm').waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await focused(), 'c-book');
    await page.keyboard.press('Enter');
    await page.locator('#h-done').waitFor();
    assert.match(await page.locator('#d-summary .dose-first dd').innerText(), /14:00/);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('each cohort card states its birth years once, and the footer says exactly what is kept', async () => {
  const k = tag();
  // Named by its years, as the demo data and Korea's 2021 cohorts are; and a name without them.
  const { cohort: named } = await arrange({
    cohort: { name: `55-59세 (1962-1966년생) ${k}`, vaccine: `Moderna-${k}` },
  });
  const { cohort: plain } = await arrange({
    cohort: { name: `plain ${k}`, vaccine: `Moderna-${k}`, birth_year_from: 1967, birth_year_to: 1971 },
  });
  const b = await openBrowser();
  try {
    const { page } = b;
    await page.goto(`${BASE}/`);
    const count = async (cohort, year) => {
      const text = await page.locator(`[data-cohort="${cohort.id}"]`).innerText();
      return text.split(String(year)).length - 1;
    };
    await page.locator(`[data-cohort="${named.id}"]`).waitFor();
    await shot(page, 'citizen-00-cohorts');
    for (const [cohort, from, to] of [[named, 1962, 1966], [plain, 1967, 1971]]) {
      assert.equal(await count(cohort, from), 1, `${cohort.name}: ${from} once`);
      assert.equal(await count(cohort, to), 1, `${cohort.name}: ${to} once`);
    }

    const footer = page.locator('footer');
    const ko = await footer.innerText();
    for (const kept of ['키 해시', '김*영', '생년월일', '예약']) assert.ok(ko.includes(kept), `footer names ${kept}: ${ko}`);
    assert.match(ko, /전화번호는 알림.*암호화해서만 보관/);
    await page.getByRole('button', { name: 'English' }).click();
    await until(async () => (await footer.innerText()).includes('keyed hash'), { what: 'the English footer' });
    const en = await footer.innerText();
    for (const kept of ['keyed hash', 'masked', '김*영', 'date of birth', 'booking']) assert.ok(en.includes(kept), `footer names ${kept}: ${en}`);
    assert.match(en, /phone number is kept only encrypted/);
    assert.equal(await count(named, 1962), 1, 'once in English too');
    assert.equal(await count(plain, 1967), 1, 'once in English too');
  } finally {
    await b.close();
  }
});
