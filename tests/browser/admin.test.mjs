// The operators' dashboard in Chromium: sign in, create a cohort, a center and its slots
// through the forms, see them on the live dashboard, and steer the cohort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, adminApi, api, until, day, tag, ADMIN_TOKEN, BASE, DESKTOP, PHONE } from './helpers.mjs';

test('an operator signs in, creates a cohort, a center and its slots, and sees them on the dashboard', async () => {
  const k = tag();
  const name = `40-49세 ${k}`;
  const vaccine = `Novavax-${k}`;
  const centerName = `제주시 보건소 ${k}`;
  const b = await openBrowser({ viewport: DESKTOP });
  try {
    const { page } = b;
    await page.goto(`${BASE}/admin`);
    await page.getByLabel('관리자 토큰').fill('not-the-token');
    await page.getByRole('button', { name: '로그인' }).click();
    await page.locator('#token-err', { hasText: '토큰이 맞지 않습니다' }).waitFor();
    await shot(page, 'admin-01-signin');
    await page.getByLabel('관리자 토큰').fill(ADMIN_TOKEN);
    await page.getByRole('button', { name: '로그인' }).click();
    await page.locator('#h-dash').waitFor();
    assert.equal(await page.evaluate(() => JSON.parse(sessionStorage.getItem('rsv.admin'))), ADMIN_TOKEN);

    // A cohort, open from now (the form's default) for 30 days.
    const cohortForm = page.locator('#cohort-form');
    await cohortForm.getByLabel('이름').fill(name);
    await cohortForm.getByLabel('출생연도 부터').fill('1972');
    await cohortForm.getByLabel('출생연도 까지').fill('1981');
    await cohortForm.getByLabel('백신').fill(vaccine);
    await cohortForm.getByLabel('접종 간격(일)').fill('21');
    await cohortForm.getByLabel('입장률 (명/초)').fill('50');
    await cohortForm.getByRole('button', { name: '대상군 만들기' }).click();
    await page.locator('#cf-status', { hasText: '만들었습니다' }).waitFor();
    const cohort = (await adminApi('GET', '/cohorts')).find((c) => c.name === name);
    assert.ok(cohort, 'the cohort exists');
    assert.equal(cohort.vaccine, vaccine);
    assert.equal(cohort.dose_interval_days, 21);
    // Open from now; with no slot yet for its vaccine it may already read sold out.
    assert.ok(['open', 'sold_out'].includes(cohort.state), cohort.state);

    const centerForm = page.locator('#center-form');
    await centerForm.getByLabel('이름').fill(centerName);
    await centerForm.getByLabel('지역').fill('제주');
    await centerForm.getByLabel('주소').fill('제주시 연삼로 264');
    await centerForm.getByRole('button', { name: '기관 만들기' }).click();
    await page.locator('#ce-status', { hasText: '만들었습니다' }).waitFor();
    const center = (await adminApi('GET', '/centers')).find((c) => c.name === centerName);
    assert.ok(center, 'the center exists');

    // 28 days × three one-hour slots × 10 places (enough days for second doses 21 days on);
    // the new center and the cohort's vaccine are offered already.
    const slotsForm = page.locator('#slots-form');
    assert.equal(await slotsForm.getByLabel('접종 기관').inputValue(), String(center.id));
    assert.equal(await slotsForm.getByLabel('백신').inputValue(), vaccine);
    await slotsForm.getByLabel('시작일').fill(day(3));
    await slotsForm.getByLabel('종료일').fill(day(30));
    await slotsForm.getByLabel('첫 시작 시각').fill('09:00');
    await slotsForm.getByLabel('마지막 종료 시각').fill('12:00');
    await slotsForm.getByLabel('슬롯 길이(분)').fill('60');
    await slotsForm.getByLabel('슬롯당 인원').fill('10');
    await page.locator('#sf-preview', { hasText: '28일 × 3개 시간 = 슬롯 84개, 총 840명' }).waitFor();
    await slotsForm.getByRole('button', { name: '슬롯 만들기' }).click();
    await page.locator('#sf-status', { hasText: '슬롯 84개를 만들었습니다' }).waitFor();
    const slots = (await api('GET', `/api/v1/centers/${center.id}/slots`)).data;
    assert.equal(slots.length, 84);
    assert.ok(slots.every((s) => s.capacity === 10 && s.vaccine === vaccine));

    // The dashboard shows them.
    const row = page.locator(`#cohort-table tr[data-id="${cohort.id}"]`);
    await row.filter({ hasText: name }).waitFor();
    await page.locator(`#center-table tr[data-id="${center.id}"]`).filter({ hasText: '840' }).waitFor();
    // With places for second doses, the cohort is open for booking.
    await row.locator('.badge', { hasText: '접수 중' }).waitFor();
    await page.locator('#chart-regions text', { hasText: '제주' }).waitFor({ state: 'attached' });
    await until(async () => (await page.locator('#chart-waiting polyline').count()) > 0, { what: 'the waiting chart to draw a line' });
    await page.locator('#tile-identity .tile-value', { hasText: /\d+ \/ \d+/ }).waitFor();

    // Pause, resume, and a new admission rate.
    await row.getByRole('button', { name: /일시정지/ }).click();
    await row.locator('.badge', { hasText: '일시정지됨' }).waitFor();
    assert.equal((await adminApi('GET', '/cohorts')).find((c) => c.id === cohort.id).paused, true);
    await shot(page, 'admin-02-dashboard');
    await row.getByRole('button', { name: /재개/ }).click();
    await row.locator('.badge', { hasText: '일시정지됨' }).waitFor({ state: 'detached' });
    await row.getByLabel(/입장률/).fill('7.5');
    await row.getByRole('button', { name: '적용' }).click();
    await row.locator('td', { hasText: /\/ 7\.5/ }).waitFor();
    const patched = (await adminApi('GET', '/cohorts')).find((c) => c.id === cohort.id);
    assert.equal(patched.paused, false);
    assert.equal(patched.admission_rate_per_s, 7.5);

    await page.setViewportSize(PHONE);
    await shot(page, 'admin-03-dashboard-phone');
    await page.setViewportSize(DESKTOP);
    await page.getByRole('button', { name: 'English' }).click();
    await page.locator('#h-dash', { hasText: 'Live figures' }).waitFor();
    await shot(page, 'admin-04-dashboard-en', { fullPage: false });

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#h-signin').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('rsv.admin')), null);
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});

test('the sign-in field shows a focus ring that is neither the error nor the warning colour', async () => {
  const b = await openBrowser({ viewport: DESKTOP });
  try {
    const { page } = b;
    await page.goto(`${BASE}/admin`);
    const token = page.getByLabel('관리자 토큰');
    await token.focus();
    // The colours that mean "wrong" or "careful" on these pages, read from the style sheet.
    const alarm = await page.evaluate(() => {
      const probe = (html) => {
        const box = document.createElement('div');
        box.innerHTML = html;
        document.body.append(box);
        const el = box.firstElementChild;
        const s = getComputedStyle(el);
        const colours = [s.borderLeftColor, s.borderTopColor, s.color];
        box.remove();
        return colours;
      };
      return [
        ...probe('<p class="msg error">x</p>'),
        ...probe('<p class="msg warn">x</p>'),
        ...probe('<input aria-invalid="true">'),
        ...probe('<p class="field-error">x</p>'),
      ];
    });
    const ring = () => page.locator('#token').evaluate((el) => {
      const s = getComputedStyle(el);
      return { focused: el.matches(':focus-visible'), style: s.outlineStyle, width: parseFloat(s.outlineWidth), colour: s.outlineColor, border: s.borderTopColor };
    });
    const focused = await ring();
    assert.ok(focused.focused, 'the field has the focus');
    assert.equal(focused.style, 'solid');
    assert.ok(focused.width >= 2, `a ring one can see: ${focused.width}px`);
    assert.ok(!alarm.includes(focused.colour), `ring ${focused.colour} is not one of ${alarm.join(', ')}`);
    await shot(page, 'admin-00-signin-focus');

    // A wrong token: the field turns to the error style, and the ring stays the focus ring.
    await token.fill('not-the-token');
    await page.getByRole('button', { name: '로그인' }).click();
    await page.locator('#token-err', { hasText: '토큰이 맞지 않습니다' }).waitFor();
    await token.focus();
    const wrong = await ring();
    assert.equal(wrong.colour, focused.colour, 'the same focus ring on a wrong field');
    assert.ok(alarm.includes(wrong.border), `the wrong field's border ${wrong.border} is the error colour`);
    assert.notEqual(wrong.border, focused.border, 'a wrong field looks different from a field in focus');
  } finally {
    await b.close();
  }
});
