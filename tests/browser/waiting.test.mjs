// The waiting room in Chromium: a reload or a dropped connection keeps the place, and the
// states nobody can act on (before opening, sold out, closed) are said plainly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, api, until, instant, tag, BASE } from './helpers.mjs';

const positionOf = async (page) => Number((await page.getByTestId('position').innerText()).replace(/\D/g, ''));
const storedTicket = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('rsv.ticket'))?.token);

test('a reload and a dropped connection keep the ticket and never move it back', async () => {
  const k = tag();
  // One admission every five seconds, and others ahead: the browser's ticket has to wait.
  const { cohort } = await arrange({
    cohort: { name: `slow ${k}`, vaccine: `AstraZeneca-${k}`, admission_rate_per_s: 0.2 },
    center: { name: `수성구 보건소 ${k}`, region: '대구', address: '수성구 1' },
    slots: [[8, '09:00', 100], [36, '09:00', 100]],
  });
  for (let i = 0; i < 8; i += 1) {
    const r = await api('POST', `/api/v1/cohorts/${cohort.id}/queue`);
    assert.equal(r.status, 201);
  }
  const b = await openBrowser();
  try {
    const { page, context } = b;
    await page.goto(`${BASE}/`);
    await page.locator(`[data-cohort="${cohort.id}"] button`).click();
    await page.locator('#q-message', { hasText: '차례대로' }).or(page.locator('#q-message', { hasText: '순서는 유지' })).waitFor();
    await page.getByTestId('position').filter({ hasText: /\d+번째/ }).waitFor();
    const before = await positionOf(page);
    const ticket = await storedTicket(page);
    assert.ok(ticket, 'the ticket is kept in localStorage');
    assert.ok(before >= 2, `others are ahead (position ${before})`);
    assert.match(await page.locator('#q-ahead').innerText(), new RegExp(`${before - 1}명`));
    await shot(page, 'waiting-01-queue');

    await page.reload();
    await page.getByTestId('position').filter({ hasText: /\d+번째/ }).waitFor();
    const after = await positionOf(page);
    assert.equal(await storedTicket(page), ticket, 'the same ticket after a reload');
    assert.ok(after >= 1 && after <= before, `position ${after} after the reload, ${before} before`);
    const server = await api('GET', '/api/v1/queue', { token: ticket });
    assert.ok(server.data.position <= after, 'the page shows what the server says, or an earlier figure');
    await shot(page, 'waiting-02-after-reload');

    // A blip: the next poll fails, the page says so calmly and keeps the figures.
    await context.setOffline(true);
    await page.locator('#q-message', { hasText: '연결이 잠시 끊겼습니다' }).waitFor({ timeout: 20_000 });
    assert.ok((await positionOf(page)) <= after);
    await shot(page, 'waiting-03-offline');
    await context.setOffline(false);
    await until(async () => !(await page.locator('#q-message').innerText()).includes('연결이 잠시 끊겼습니다'),
      { what: 'the page to recover once back online' });
    assert.equal(await storedTicket(page), ticket, 'the same ticket after the blip');
    assert.ok((await positionOf(page)) <= after);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
  }
});

test('before opening, sold out and closed are each said plainly, in Korean or English', async () => {
  const k = tag();
  // No slot for this vaccine: the cohort is sold out from the start.
  const { cohort: soldOut } = await arrange({ cohort: { name: `sold out ${k}`, vaccine: `Janssen-${k}` } });
  const { cohort: early } = await arrange({
    cohort: { name: `opens later ${k}`, vaccine: `Moderna-${k}`, opens_at: instant(2 * 3600_000) },
  });
  const { cohort: closed } = await arrange({
    cohort: { name: `closed ${k}`, vaccine: `Moderna-${k}`, opens_at: instant(-2 * 86_400_000), closes_at: instant(-86_400_000) },
  });
  await until(async () => {
    const list = await api('GET', '/api/v1/cohorts');
    return list.data.find((c) => c.id === soldOut.id)?.state === 'sold_out';
  }, { what: 'the cohort without slots to read sold_out' });

  const b = await openBrowser();
  try {
    const { page } = b;
    await page.goto(`${BASE}/`);
    assert.equal(await page.locator(`[data-cohort="${closed.id}"] button`).isDisabled(), true, 'a closed cohort cannot be joined');
    assert.match(await page.locator(`[data-cohort="${closed.id}"] .badge`).innerText(), /마감/);
    assert.match(await page.locator(`[data-cohort="${early.id}"] button`).innerText(), /미리 대기하기/);

    await page.locator(`[data-cohort="${soldOut.id}"] button`).click();
    await page.locator('#q-message', { hasText: '남은 자리가 없습니다' }).waitFor();
    await page.getByTestId('position').filter({ hasText: /\d+번째/ }).waitFor();
    await shot(page, 'waiting-sold-out');

    await page.getByRole('button', { name: '대기 취소하고 처음으로' }).click();
    await page.locator(`[data-cohort="${early.id}"] button`).click();
    await page.locator('#q-message', { hasText: '접수 시작 전' }).waitFor();
    await page.locator('#q-countdown', { hasText: /접수 시작까지 [12]:\d\d:\d\d/ }).waitFor();
    assert.equal(await page.locator('#q-figures').isVisible(), false, 'no position before opening');
    await shot(page, 'waiting-pre-queue');

    await page.getByRole('button', { name: 'English' }).click();
    await page.locator('#h-queue', { hasText: 'In the queue' }).waitFor();
    await page.locator('#q-countdown', { hasText: /Opens in [12]:\d\d:\d\d/ }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
    await shot(page, 'waiting-pre-queue-en');
    // The choice of language and the place in line both survive a reload.
    await page.reload();
    await page.locator('#q-message', { hasText: 'Bookings have not opened yet' }).waitFor();
    await page.getByRole('button', { name: '한국어' }).click();
    await page.locator('#h-queue', { hasText: '대기 중' }).waitFor();
    assert.deepEqual(b.errors, []);
    assert.deepEqual(b.foreign, []);
  } finally {
    await b.close();
  }
});
