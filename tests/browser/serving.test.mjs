// How the pages are served, and that every string they show exists in both languages.
// (No browser needed for these; they run with the others so one command checks everything.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { api } from './helpers.mjs';

const assets = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'assets');

test('pages and assets carry their content type, cache policy and security headers', async () => {
  for (const page of ['/', '/admin']) {
    const r = await api('GET', page);
    assert.equal(r.status, 200, page);
    assert.equal(r.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    assert.match(r.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const etag = r.headers.get('etag');
    assert.ok(etag, 'an ETag, so a reload costs a 304');
    const again = await api('GET', page, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    assert.ok(!/https?:\/\/(?!127\.0\.0\.1)/.test(r.data), `${page} names no outside address`);

    const refs = [...r.data.matchAll(/"\/assets\/([0-9a-f]+)\/([\w.]+)"/g)];
    assert.ok(refs.length >= 2, 'the page names its stylesheet and script');
    for (const [, version, name] of refs) {
      const a = await api('GET', `/assets/${version}/${name}`);
      assert.equal(a.status, 200, name);
      const type = { css: 'text/css; charset=utf-8', js: 'text/javascript; charset=utf-8', svg: 'image/svg+xml' }[name.split('.').pop()];
      assert.equal(a.headers.get('content-type'), type, name);
      assert.equal(a.headers.get('cache-control'), 'public, max-age=31536000, immutable', name);
    }
    // A page from an older build still gets today's file, but only until it is reloaded.
    const stale = await api('GET', `/assets/0000000000000000/${refs[0][2]}`);
    assert.equal(stale.status, 200);
    assert.equal(stale.headers.get('cache-control'), 'no-cache');
  }
  const missing = await api('GET', '/assets/0/nothing.js');
  assert.equal(missing.status, 404);
  assert.equal(missing.data.error, 'not_found');
});

test('every string the pages use exists in Korean and in English', async () => {
  const { dictionary } = await import(path.join(assets, 'i18n.js'));
  const ko = Object.keys(dictionary.ko).sort();
  assert.deepEqual(Object.keys(dictionary.en).sort(), ko, 'both languages have the same keys');
  const used = new Set();
  for (const file of fs.readdirSync(assets)) {
    const text = fs.readFileSync(path.join(assets, file), 'utf8');
    if (file.endsWith('.html')) {
      for (const m of text.matchAll(/data-i18n="(\w+)"/g)) used.add(m[1]);
      for (const m of text.matchAll(/data-i18n-attr="([^"]+)"/g)) {
        for (const pair of m[1].split(',')) used.add(pair.split(':')[1].trim());
      }
    } else if (file.endsWith('.js') && file !== 'i18n.js') {
      // Every t('word'), and every snake_case literal: in these scripts those are either keys
      // of the dictionary or words of the API contract (listed below).
      for (const m of text.matchAll(/\bt\('(\w+)'/g)) used.add(m[1]);
      for (const m of text.matchAll(/'([a-z0-9]+(?:_[a-z0-9]+)+)'/g)) used.add(m[1]);
    }
  }
  // Keys built from the API's own words.
  for (const s of ['scheduled', 'open', 'closed', 'sold_out']) used.add(`state_${s}`);
  for (const s of ['confirmed', 'cancelled', 'needs_rebooking']) used.add(`booking_${s}`);
  for (const s of ['loading', 'pre_queue', 'waiting', 'admitted', 'expired', 'sold_out', 'closed']) used.add(`q_${s}`);
  const apiWords = [
    'pre_queue', 'sold_out', 'cohort_closed', 'identity_busy', 'identity_rejected', 'not_eligible',
    'invalid_pass', 'invalid_session', 'rate_limited', 'slot_full', 'no_second_dose_slot', 'wrong_vaccine',
    'already_booked', 'not_found', 'bookings_created_total', 'identity_in_flight', 'identity_max_in_flight',
    'identity_waiting', 'challenge_used', 'invalid_entry', 'already_waiting', 'no_offer',
    'needs_rebooking', 'slot_cancelled',
  ];
  const missing = [...used].filter((k) => !(k in dictionary.ko) && !apiWords.includes(k));
  assert.deepEqual(missing, [], 'keys used by the pages but missing from the dictionary');
});
