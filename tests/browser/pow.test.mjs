// Proof of work on join: the page fetches the challenge of a cohort with join_difficulty 8,
// solves it in its worker (the CSP must allow it), and gets a ticket with the solution.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, shot, arrange, adminApi, api, tag, BASE } from './helpers.mjs';

test('the page solves a difficulty-8 challenge in its worker and gets a ticket', async () => {
  const k = tag();
  const { cohort } = await arrange({
    cohort: { name: `pow ${k}`, vaccine: `Moderna-${k}`, join_difficulty: 8 },
  });
  assert.equal(cohort.join_difficulty, 8);
  // Without a solution the server refuses the join: the ticket below came through the worker.
  const bare = await api('POST', `/api/v1/cohorts/${cohort.id}/queue`);
  assert.equal(bare.status, 400);
  const b = await openBrowser();
  try {
    const { page } = b;
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    const joins = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith(`/api/v1/cohorts/${cohort.id}/queue`)) joins.push(r.postData());
    });
    await page.goto(`${BASE}/`);
    await page.locator(`[data-cohort="${cohort.id}"] button`).click();
    await page.locator('#h-verify:visible, #h-queue:visible').first().waitFor({ timeout: 30_000 });
    await shot(page, 'pow-01-joined');
    assert.equal(joins.length, 1, `one join: ${joins}`);
    const body = JSON.parse(joins[0]);
    assert.match(body.nonce, /^[0-9]+$/);
    assert.ok(body.challenge.length > 20);
    const stats = await adminApi('GET', '/stats');
    const mine = stats.cohorts.find((c) => c.id === cohort.id);
    assert.equal(mine.waiting + mine.admitted, 1, JSON.stringify(mine));
    assert.deepEqual(errors, []);
  } finally {
    await b.close();
  }
});
