// The operators' dashboard: sign in with the admin token, watch the rush (refreshed every few
// seconds), steer each cohort's waiting room, add cohorts, centers and slots, post a
// center's leftover doses of the day, change or cancel a slot, shift every second dose of a
// vaccine, and follow the rebooking jobs those start.
//
// The token stays in sessionStorage: it survives a reload but not closing the tab, and it is
// sent only to this server's admin API.
import { t, applyStatic, initLangSwitch, fmtNum, fmtDuration, fmtWhen, fmtDate } from './i18n.js';
import { h, $, call, stored, isoDay, fieldError } from './common.js';
import { lineChart, barChart, legend } from './charts.js';

const KEY_TOKEN = 'rsv.admin';
const REFRESH_MS = 3000;
const JOB_POLL_MS = 1000; // while a rebooking job runs
const MAX_SHIFT_DAYS = 90; // as the server checks (MAX_SHIFT_DAYS in src/domain/rebooking.rs)
const VACCINE = /^[A-Za-z0-9 .-]{1,40}$/; // the server's rule for a vaccine's name
const HISTORY = 60; // samples kept for the time charts: three minutes at one every 3 s
const SLOTS_PER_REQUEST = 5000; // well under the server's 20,000 and its 4 MB body limit

const S = {
  token: stored('session', KEY_TOKEN),
  paused: false,
  timer: null,
  last: null, // {stats, cohorts, centers, leftovers, metrics, at}
  history: [], // [{at, waiting: Map(id -> n), bookingsPerS, inFlight, maxInFlight}]
  rows: new Map(), // cohort id -> the row's live elements, kept so an input being typed in survives
  failed: false,
  // The rebooking jobs, newest first: the server's latest (GET admin/rebookings, whoever started
  // them, on whichever node), and older ones opened by their number.
  jobs: [],
  opened: new Set(), // ids opened by number
  jobTimer: null,
  jobsAsking: false,
  slotsOf: null, // the center whose slots the slot form lists
  slotList: [],
  shift: null, // the shift being confirmed
};

// ---------------------------------------------------------------- sign in and out

function showSignin(messageKey) {
  clearTimeout(S.timer);
  clearTimeout(S.jobTimer);
  $('#dash').hidden = true;
  $('#signout').hidden = true;
  $('#signin').hidden = false;
  if (messageKey) fieldError($('#token'), t(messageKey));
  $('#token').focus();
}

function showDash() {
  $('#signin').hidden = true;
  $('#dash').hidden = false;
  $('#signout').hidden = false;
  defaults();
  $('#h-dash').focus();
  refresh();
  pollJobs(true);
}

$('#signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  if (!fieldError(input, token ? '' : t('err_token_empty'))) return;
  const btn = $('#signin-submit');
  btn.disabled = true;
  const r = await call('GET', '/api/v1/admin/stats', { token });
  btn.disabled = false;
  if (r.status === 401) return fieldError(input, t('err_token_wrong'));
  if (!r.ok) return fieldError(input, t('err_generic', { message: r.message || r.status }));
  fieldError(input, '');
  input.value = '';
  S.token = token;
  stored('session', KEY_TOKEN, token);
  showDash();
});

$('#signout').addEventListener('click', () => {
  S.token = null;
  stored('session', KEY_TOKEN, null);
  showSignin();
});

const admin = (method, path, body) => call(method, `/api/v1/admin${path}`, { token: S.token, body });

/** The admin token was refused: back to the sign-in, saying so. */
function signedOut() {
  S.token = null;
  stored('session', KEY_TOKEN, null);
  showSignin('err_token_wrong');
}

// ---------------------------------------------------------------- the live figures

/** Prometheus text to a map of `name{labels}` -> value; enough for the few figures shown. */
function parseMetrics(text) {
  const out = new Map();
  for (const line of String(text ?? '').split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    // Every sample carries the node that reported it; this page reads one node's figures.
    const key = line.slice(0, cut).replace(/node="(?:[^"\\]|\\.)*",?/, '').replace('{}', '');
    out.set(key, Number(line.slice(cut + 1)));
  }
  return out;
}

async function refresh() {
  clearTimeout(S.timer);
  if (!S.token) return;
  const [stats, cohorts, centers, metrics, leftovers] = await Promise.all([
    admin('GET', '/stats'),
    admin('GET', '/cohorts'),
    call('GET', '/api/v1/centers'),
    call('GET', '/metrics'),
    call('GET', '/api/v1/leftovers'),
  ]);
  if (stats.status === 401 || cohorts.status === 401) {
    S.token = null;
    return signedOut();
  }
  S.failed = ![stats, cohorts, centers, metrics, leftovers].every((r) => r.ok);
  if (!S.failed) {
    const now = {
      at: Date.now(), stats: stats.data, cohorts: cohorts.data, centers: centers.data,
      leftovers: leftovers.data, metrics: parseMetrics(metrics.data),
    };
    sample(now, S.last);
    S.last = now;
  }
  render();
  // No job running: the jobs are asked for at this pace, to show one started elsewhere.
  if (S.jobTimer == null) pollJobs();
  // Forms call refresh() too; clearing here keeps a single chain of timers.
  clearTimeout(S.timer);
  if (!S.paused && !document.hidden) S.timer = setTimeout(refresh, REFRESH_MS);
}

/** One point of each time chart. Bookings per second is the counter's rise since the last refresh. */
function sample(now, prev) {
  const created = now.metrics.get('bookings_created_total') ?? 0;
  let perS = null;
  if (prev) {
    const rise = created - (prev.metrics.get('bookings_created_total') ?? 0);
    // A fall means the server restarted and its counters began again.
    perS = rise >= 0 ? rise / ((now.at - prev.at) / 1000) : 0;
  }
  S.history.push({
    at: now.at,
    waiting: new Map(now.stats.cohorts.map((c) => [c.id, c.waiting])),
    bookingsPerS: perS,
    inFlight: now.metrics.get('identity_in_flight') ?? 0,
    maxInFlight: now.metrics.get('identity_max_in_flight') ?? 0,
  });
  if (S.history.length > HISTORY) S.history.shift();
}

// Pausing saves the server the requests while nobody looks; the figures resume on return.
document.addEventListener('visibilitychange', () => {
  if (document.hidden) {
    clearTimeout(S.timer);
    clearTimeout(S.jobTimer);
  } else if (S.token && !$('#dash').hidden) {
    if (!S.paused) refresh();
    pollJobs();
  }
});

$('#toggle-refresh').addEventListener('click', (e) => {
  S.paused = !S.paused;
  e.currentTarget.setAttribute('aria-pressed', String(S.paused));
  e.currentTarget.textContent = t(S.paused ? 'dash_resume' : 'dash_pause');
  if (S.paused) clearTimeout(S.timer);
  else refresh();
});

// ---------------------------------------------------------------- drawing

function render() {
  const L = S.last;
  $('#updated').textContent = S.failed
    ? t('dash_failed')
    : L ? t('dash_updated', { time: new Date(L.at).toLocaleTimeString(t('locale')) }) : t('loading');
  $('#updated').classList.toggle('error-text', S.failed);
  if (!L) return;
  renderTiles(L);
  renderCohorts(L);
  renderCenters(L);
  renderLeftovers(L);
  renderNodes(L);
  renderCharts(L);
}

/** The nodes seen in the last minute: one on SQLite, every node of a cluster on PostgreSQL. */
function renderNodes(L) {
  const nodes = L.stats.nodes ?? [];
  $('#node-table tbody').replaceChildren(...nodes.map((n) => h('tr', { 'data-name': n.name },
    h('td', {}, n.name),
    h('td', {}, h('span', { class: `badge ${n.ready ? 'state-open' : 'state-closed'}` }, t(n.ready ? 'node_ready' : 'node_not_ready'))),
    h('td', {}, fmtWhen(n.last_seen)),
    h('td', { class: 'num' }, fmtNum(n.requests_per_s ?? 0, 1)),
    h('td', { class: 'num' }, fmtNum(n.in_flight ?? 0)),
    h('td', { class: 'num' }, `${fmtNum(n.identity_in_flight ?? 0)} / ${fmtNum(n.identity_capacity ?? 0)}`))));
}

function renderTiles(L) {
  const m = L.metrics;
  const last = S.history.at(-1);
  const waiting = L.stats.cohorts.reduce((n, c) => n + c.waiting, 0);
  const outcome = (o) => fmtNum(m.get(`identity_outcomes_total{outcome="${o}"}`) ?? 0);
  const tile = (key, value, sub, id) => h('div', { class: 'tile', id },
    h('p', { class: 'tile-label' }, t(key)), h('p', { class: 'tile-value' }, value), sub ? h('p', { class: 'tile-sub' }, sub) : null);
  $('#tiles').replaceChildren(
    tile('tile_waiting', fmtNum(waiting), null, 'tile-waiting'),
    tile('tile_confirmed', fmtNum(L.stats.bookings_confirmed), t('tile_cancelled', { n: fmtNum(L.stats.bookings_cancelled) }), 'tile-confirmed'),
    tile('tile_rate', last?.bookingsPerS == null ? '–' : fmtNum(last.bookingsPerS, 1), t('tile_rate_sub'), 'tile-rate'),
    tile('tile_identity', `${fmtNum(m.get('identity_in_flight') ?? 0)} / ${fmtNum(m.get('identity_max_in_flight') ?? 0)}`,
      t('tile_identity_sub', { waiting: fmtNum(m.get('identity_waiting') ?? 0) }), 'tile-identity'),
    tile('tile_outcomes', outcome('vouched'),
      t('tile_outcomes_sub', { rejected: outcome('rejected'), failed: outcome('failed'), busy: outcome('busy') }), 'tile-outcomes'),
  );
}

/** The time a newcomer at the back would wait at the measured rate. */
function etaBack(stat) {
  if (!stat.waiting) return t('eta_none');
  if (!(stat.admission_rate_per_s > 0)) return '–';
  return fmtDuration(stat.waiting / stat.admission_rate_per_s);
}

function renderCohorts(L) {
  const body = $('#cohort-table tbody');
  const stats = new Map(L.stats.cohorts.map((c) => [c.id, c]));
  $('#cohorts-empty').hidden = L.cohorts.length > 0;
  for (const c of L.cohorts) {
    let row = S.rows.get(c.id);
    if (!row) {
      row = cohortRow(c);
      S.rows.set(c.id, row);
      body.append(row.tr);
    }
    const s = stats.get(c.id) ?? { waiting: 0, admitted: 0, verified: 0, booked: 0, admission_rate_per_s: 0 };
    row.cells.name.textContent = c.name;
    row.cells.name.title = `${c.birth_year_from}–${c.birth_year_to} · ${c.vaccine} · ${fmtWhen(c.opens_at)} → ${fmtWhen(c.closes_at)}`;
    const badge = h('span', { class: `badge state-${c.state}` }, t(`state_${c.state}`));
    row.cells.state.replaceChildren(badge, c.paused ? h('span', { class: 'badge state-paused' }, t('paused')) : '');
    row.cells.waiting.textContent = fmtNum(s.waiting);
    row.cells.admitted.textContent = fmtNum(s.admitted);
    row.cells.verified.textContent = fmtNum(s.verified);
    row.cells.booked.textContent = fmtNum(s.booked);
    row.cells.rate.textContent = `${fmtNum(s.admission_rate_per_s, 1)} / ${fmtNum(c.admission_rate_per_s, 2)}`;
    row.cells.eta.textContent = etaBack(s);
    row.pause.textContent = t(c.paused ? 'resume' : 'pause');
    row.pause.dataset.paused = String(c.paused);
    row.rateInput.placeholder = String(c.admission_rate_per_s);
    row.rateInput.setAttribute('aria-label', t('rate_label', { name: c.name }));
    row.pause.setAttribute('aria-label', t(c.paused ? 'resume_named' : 'pause_named', { name: c.name }));
  }
}

/** A cohort's row, built once: its controls keep focus and half-typed values across refreshes. */
function cohortRow(c) {
  const cells = {};
  const td = (name, cls) => (cells[name] = h('td', { class: cls }));
  const rateInput = h('input', {
    type: 'number', min: '0.01', step: 'any', inputmode: 'decimal', class: 'rate-input',
    'aria-label': t('rate_label', { name: c.name }),
  });
  const pause = h('button', {
    type: 'button', class: 'secondary small-button',
    onclick: () => patchCohort(c.id, { paused: pause.dataset.paused !== 'true' }),
  });
  const setRate = h('button', {
    type: 'button', class: 'secondary small-button',
    onclick: () => {
      const rate = Number(rateInput.value);
      if (!(rate > 0)) return notice('err_rate', {}, 'error');
      patchCohort(c.id, { admission_rate_per_s: rate }).then((ok) => ok && (rateInput.value = ''));
    },
  }, t('rate_set'));
  const tr = h('tr', { 'data-id': c.id },
    h('td', {}, String(c.id)), td('name'), td('state'), td('waiting', 'num'), td('admitted', 'num'),
    td('verified', 'num'), td('booked', 'num'), td('rate', 'num'), td('eta', 'num'),
    h('td', { class: 'controls' }, pause, h('span', { class: 'rate-control' }, rateInput, setRate)));
  return { tr, cells, pause, rateInput, setRate };
}

async function patchCohort(id, patch) {
  const r = await admin('PATCH', `/cohorts/${id}`, patch);
  if (r.ok) {
    notice('patched', { name: r.data.name }, 'ok');
    refresh();
  } else {
    notice('err_generic', { message: r.message || r.status }, 'error');
  }
  return r.ok;
}

function renderCenters(L) {
  const body = $('#center-table tbody');
  $('#centers-empty').hidden = L.centers.length > 0;
  body.replaceChildren(...L.centers.map((c) => h('tr', { 'data-id': c.id },
    h('td', {}, String(c.id)), h('td', {}, c.name), h('td', {}, c.region), h('td', {}, c.address),
    h('td', { class: 'num' }, fmtNum(c.remaining)))));
  // The slot and leftover forms' lists of centers and the region suggestions follow what exists.
  const ids = L.centers.map((c) => String(c.id)).join(',');
  for (const select of [$('#sf-center'), $('#lf-center'), $('#sc-center')]) {
    if (select.dataset.ids === ids) continue;
    const keep = select.value;
    select.replaceChildren(...L.centers.map((c) => h('option', { value: c.id }, `${c.name} (${c.region})`)));
    if (keep && L.centers.some((c) => String(c.id) === keep)) select.value = keep;
    select.dataset.ids = ids;
  }
  if ($('#region-options').dataset.ids !== ids) {
    $('#region-options').dataset.ids = ids;
    $('#region-options').replaceChildren(...[...new Set(L.centers.map((c) => c.region))].map((r) => h('option', { value: r })));
    preview();
  }
  if ($('#sc-center').value && $('#sc-center').value !== S.slotsOf) loadSlots();
  // The shift form suggests the vaccines the cohorts use.
  const vaccines = [...new Set(L.cohorts.map((c) => c.vaccine))].sort().join('\n');
  if ($('#vaccine-options').dataset.list !== vaccines) {
    $('#vaccine-options').dataset.list = vaccines;
    $('#vaccine-options').replaceChildren(...vaccines.split('\n').filter(Boolean).map((v) => h('option', { value: v })));
  }
}

/** `HH:MM` of an instant as the server wrote it (in its zone): the doses are today's. */
const wallTime = (rfc3339) => String(rfc3339 ?? '').slice(11, 16);

/** Today's leftovers with doses left, by center (`GET /api/v1/leftovers`, as citizens see it). */
function renderLeftovers(L) {
  const list = [...(L.leftovers ?? [])].sort((a, b) => a.name.localeCompare(b.name, 'ko')
    || a.center_id - b.center_id || a.until.localeCompare(b.until) || a.vaccine.localeCompare(b.vaccine));
  $('#leftovers-empty').hidden = list.length > 0;
  $('#leftover-table tbody').replaceChildren(...list.map((l) => h('tr', { 'data-center': l.center_id },
    h('td', {}, l.name), h('td', {}, l.region), h('td', {}, l.vaccine),
    h('td', { class: 'num' }, fmtNum(l.remaining)), h('td', {}, wallTime(l.until)))));
}

function renderCharts(L) {
  const names = new Map(L.cohorts.map((c) => [c.id, c.name]));
  const ids = [...names.keys()];
  const series = ids.map((id) => ({ name: names.get(id), values: S.history.map((p) => p.waiting.get(id) ?? null) }));
  lineChart($('#chart-waiting'), { series, slots: HISTORY, label: t('chart_waiting') });
  legend($('#legend-waiting'), series.map((s) => s.name));

  lineChart($('#chart-bookings'), {
    series: [{ name: t('tile_rate'), values: S.history.map((p) => p.bookingsPerS) }],
    slots: HISTORY, label: t('chart_bookings'), digits: 1,
  });

  const maxInFlight = S.history.at(-1)?.maxInFlight ?? 0;
  lineChart($('#chart-identity'), {
    series: [
      { name: t('in_flight'), values: S.history.map((p) => p.inFlight) },
      { name: t('max_in_flight'), values: S.history.map((p) => p.maxInFlight), dashed: true },
    ],
    slots: HISTORY, label: t('chart_identity'), max: Math.max(1, maxInFlight),
  });
  legend($('#legend-identity'), [t('in_flight'), t('max_in_flight')]);

  const stats = new Map(L.stats.cohorts.map((c) => [c.id, c]));
  barChart($('#chart-cohorts'), {
    rows: ids.map((id) => ({ label: names.get(id), values: [stats.get(id)?.waiting ?? 0, stats.get(id)?.admitted ?? 0] })),
    label: t('chart_cohorts'),
  });
  legend($('#legend-cohorts'), [t('col_waiting'), t('col_admitted')]);

  const regions = new Map();
  for (const c of L.centers) regions.set(c.region, (regions.get(c.region) ?? 0) + c.remaining);
  barChart($('#chart-regions'), {
    rows: [...regions].sort(([a], [b]) => a.localeCompare(b, 'ko')).map(([label, n]) => ({ label, values: [n] })),
    label: t('chart_regions'),
  });
}

// The charts are drawn at their on-screen width (see charts.js), so redraw when it changes.
let resizing = 0;
window.addEventListener('resize', () => {
  cancelAnimationFrame(resizing);
  resizing = requestAnimationFrame(() => S.last && renderCharts(S.last));
});

// ---------------------------------------------------------------- creating things

function notice(key, vars = {}, kind = 'info') {
  const box = $('#notice');
  box.hidden = !key;
  box.className = `msg ${kind}`;
  box.textContent = key ? t(key, vars) : '';
}

function formStatus(id, key, vars, kind) {
  const box = document.getElementById(id);
  box.hidden = !key;
  box.className = `msg ${kind}`;
  box.textContent = key ? t(key, vars) : '';
}

/** `YYYY-MM-DDTHH:MM` on the wall clock of a zone `offset` (`+09:00`) away from UTC. */
function wallClock(ms, offset) {
  const m = /^([+-])(\d{2}):(\d{2})$/.exec(offset) ?? ['', '+', '09', '00'];
  const minutes = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  return new Date(ms + minutes * 60000).toISOString().slice(0, 16);
}

/** Sensible starting values: a cohort open from now for 30 days, slots from tomorrow for four weeks. */
function defaults() {
  const offset = $('#cf-offset').value;
  if (!$('#cf-opens').value) $('#cf-opens').value = wallClock(Date.now(), offset);
  if (!$('#cf-closes').value) $('#cf-closes').value = wallClock(Date.now() + 30 * 86400000, offset);
  if (!$('#sf-from').value) $('#sf-from').value = isoDay(1);
  if (!$('#sf-to').value) $('#sf-to').value = isoDay(28);
  if (!$('#lf-until').value) $('#lf-until').value = '18:00';
  preview();
}

$('#cohort-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const v = (id) => $(`#${id}`).value.trim();
  const offset = v('cf-offset');
  if (!/^[+-]\d{2}:\d{2}$/.test(offset)) return formStatus('cf-status', 'err_offset', {}, 'error');
  const body = {
    name: v('cf-name'),
    birth_year_from: Number(v('cf-from')),
    birth_year_to: Number(v('cf-to')),
    opens_at: `${v('cf-opens')}:00${offset}`,
    closes_at: `${v('cf-closes')}:00${offset}`,
    vaccine: v('cf-vaccine'),
    dose_interval_days: Number(v('cf-interval')),
  };
  if (v('cf-rate')) body.admission_rate_per_s = Number(v('cf-rate'));
  const r = await admin('POST', '/cohorts', body);
  if (r.ok) {
    formStatus('cf-status', 'cf_done', { name: r.data.name, id: r.data.id }, 'ok');
    $('#sf-vaccine').value = r.data.vaccine; // the slots for it come next
    $('#cf-name').value = '';
    preview();
    refresh();
  } else {
    formStatus('cf-status', 'err_generic', { message: r.message || r.status }, 'error');
  }
});

$('#center-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const body = { name: $('#ce-name').value.trim(), region: $('#ce-region').value.trim(), address: $('#ce-address').value.trim() };
  const r = await admin('POST', '/centers', body);
  if (r.ok) {
    for (const id of ['ce-name', 'ce-address']) $(`#${id}`).value = '';
    await refresh();
    $('#sf-center').value = String(r.data.id); // its slots come next
    preview();
    // Said once the slot form offers the new center, so what the operator reads is ready.
    formStatus('ce-status', 'ce_done', { name: r.data.name, id: r.data.id }, 'ok');
  } else {
    formStatus('ce-status', 'err_generic', { message: r.message || r.status }, 'error');
  }
});

/** Every slot the generator form describes: each day of the range × each time of the day. */
function planSlots() {
  const v = (id) => $(`#${id}`).value;
  const [from, to, start, end] = [v('sf-from'), v('sf-to'), v('sf-start'), v('sf-end')];
  const every = Number(v('sf-every'));
  const capacity = Number(v('sf-capacity'));
  const vaccine = v('sf-vaccine').trim();
  if (!from || !to || !start || !end || !(every >= 5) || !(capacity >= 1) || !vaccine || from > to) return null;
  const minutes = (s) => Number(s.slice(0, 2)) * 60 + Number(s.slice(3, 5));
  const clock = (m) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  const times = [];
  for (let m = minutes(start); m + every <= minutes(end); m += every) times.push([clock(m), clock(m + every)]);
  const days = [];
  for (let d = new Date(`${from}T00:00:00Z`); d <= new Date(`${to}T00:00:00Z`); d.setUTCDate(d.getUTCDate() + 1)) {
    const weekend = d.getUTCDay() === 0 || d.getUTCDay() === 6;
    if (!weekend || $('#sf-weekends').checked) days.push(d.toISOString().slice(0, 10));
    if (days.length > 3660) return null;
  }
  const slots = days.flatMap((date) => times.map(([s, e]) => ({ date, start_time: s, end_time: e, capacity, vaccine })));
  return { days: days.length, times: times.length, slots };
}

function preview() {
  const plan = planSlots();
  $('#sf-preview').textContent = plan && plan.slots.length
    ? t('sf_preview', { days: fmtNum(plan.days), times: fmtNum(plan.times), slots: fmtNum(plan.slots.length),
      places: fmtNum(plan.slots.length * plan.slots[0].capacity) })
    : t('sf_preview_none');
  $('#sf-submit').disabled = !plan || !plan.slots.length || !$('#sf-center').value;
}

$('#slots-form').addEventListener('input', preview);
$('#slots-form').addEventListener('change', preview);

$('#slots-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const plan = planSlots();
  const center = $('#sf-center').value;
  if (!plan || !center) return;
  $('#sf-submit').disabled = true;
  let added = 0;
  for (let i = 0; i < plan.slots.length; i += SLOTS_PER_REQUEST) {
    formStatus('sf-status', 'sf_sending', { done: fmtNum(added), total: fmtNum(plan.slots.length) }, 'info');
    const r = await admin('POST', `/centers/${center}/slots`, { slots: plan.slots.slice(i, i + SLOTS_PER_REQUEST) });
    if (!r.ok) {
      formStatus('sf-status', 'sf_failed', { done: fmtNum(added), message: r.message || r.status }, 'error');
      $('#sf-submit').disabled = false;
      refresh();
      return;
    }
    added += r.data.slots.length;
  }
  formStatus('sf-status', 'sf_done', { n: fmtNum(added) }, 'ok');
  $('#sf-submit').disabled = false;
  refresh();
});

/** Today at `HH:MM` on this browser's clock, as an RFC 3339 instant (the server checks it is later today). */
function todayAt(hhmm) {
  const [hh, mm] = hhmm.split(':').map(Number);
  const d = new Date();
  d.setHours(hh, mm, 0, 0);
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

$('#leftover-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const center = $('#lf-center').value;
  const vaccine = $('#lf-vaccine').value.trim();
  const doses = Number($('#lf-doses').value);
  const untilAt = $('#lf-until').value;
  // Only what the form can see for itself; whether the time is still ahead is the server's to
  // say, by its own clock (a 422 is shown as it answers).
  const ok = [
    fieldError($('#lf-vaccine'), vaccine ? '' : t('lf_err_vaccine')),
    fieldError($('#lf-doses'), Number.isInteger(doses) && doses >= 1 && doses <= 10000 ? '' : t('lf_err_doses')),
    fieldError($('#lf-until'), /^\d{2}:\d{2}$/.test(untilAt) ? '' : t('lf_err_until')),
  ].every(Boolean);
  if (!center) return formStatus('lf-status', 'lf_err_center', {}, 'error');
  if (!ok) return formStatus('lf-status', null);
  $('#lf-submit').disabled = true;
  formStatus('lf-status', null);
  const r = await admin('POST', `/centers/${center}/leftovers`, { vaccine, doses, until: todayAt(untilAt) });
  $('#lf-submit').disabled = false;
  if (r.ok) {
    const name = S.last?.centers.find((c) => c.id === r.data.center_id)?.name ?? `#${r.data.center_id}`;
    formStatus('lf-status', 'lf_done', {
      center: name, vaccine: r.data.vaccine, doses: fmtNum(r.data.doses), id: r.data.id,
      until: wallTime(r.data.until), remaining: fmtNum(r.data.remaining),
    }, 'ok');
    refresh();
  } else if (r.status === 422 && /\buntil\b/.test(r.message)) {
    fieldError($('#lf-until'), t('lf_err_validation', { message: r.message }));
    formStatus('lf-status', 'lf_err_validation', { message: r.message }, 'error');
  } else if (r.status === 422) {
    formStatus('lf-status', 'err_validation', { message: r.message }, 'error');
  } else {
    formStatus('lf-status', 'err_generic', { message: r.message || r.status }, 'error');
  }
});

// ---------------------------------------------------------------- supply changes and rebooking

/**
 * A refusal as the forms below say it: with its status and the server's code and message, a
 * friendlier sentence for the codes a form expects (`known`: code -> key).
 */
function refusal(r, known = {}) {
  if (r.status === 401) return ['err_unauthorized', {}];
  const vars = { status: r.status, code: r.error ?? '', message: r.message || r.status };
  if (known[r.error]) return [known[r.error], vars];
  return [r.error === 'validation' ? 'err_refused_validation' : 'err_refused', vars];
}

/** The slots of the center picked in the slot form, as citizens see them (cancelled ones are never listed). */
async function loadSlots() {
  const center = $('#sc-center').value;
  S.slotsOf = center;
  if (!center) {
    S.slotList = [];
    return renderSlotOptions();
  }
  const r = await call('GET', `/api/v1/centers/${center}/slots`);
  if (S.slotsOf !== center) return; // another center was picked meanwhile
  S.slotList = r.ok ? r.data : [];
  if (!r.ok) formStatus('sc-status', ...refusal(r), 'error');
  renderSlotOptions();
}

function slotLabel(s) {
  return t('sc_slot_option', {
    id: s.id, date: fmtDate(s.date), start: s.start_time, end: s.end_time, vaccine: s.vaccine,
    capacity: fmtNum(s.capacity), remaining: fmtNum(s.remaining),
  });
}

function renderSlotOptions() {
  const select = $('#sc-slot');
  const keep = select.value;
  select.replaceChildren(...S.slotList.map((s) => h('option', { value: s.id }, slotLabel(s))));
  if (keep && S.slotList.some((s) => String(s.id) === keep)) select.value = keep;
  const ready = S.slotList.length > 0;
  $('#sc-submit').disabled = !ready;
  $('#sc-cancel').disabled = !ready;
  $('#sc-slot-hint').textContent = t(ready || !S.slotsOf ? 'sc_slot_hint' : 'sc_no_slots');
}

const pickedSlot = () => S.slotList.find((s) => String(s.id) === $('#sc-slot').value);

function closeSlotConfirm() {
  $('#sc-confirm').hidden = true;
}

async function patchSlot(body) {
  const slot = pickedSlot();
  if (!slot) return;
  const buttons = ['#sc-submit', '#sc-cancel', '#sc-cancel-yes'].map((sel) => $(sel));
  for (const b of buttons) b.disabled = true;
  formStatus('sc-status', null);
  const r = await admin('PATCH', `/slots/${slot.id}`, body);
  for (const b of buttons) b.disabled = false;
  const wasConfirming = !$('#sc-confirm').hidden;
  closeSlotConfirm();
  if (r.ok) {
    const s = r.data;
    const job = s.rebooking?.id;
    const key = `sc_done${s.cancelled ? '_cancelled' : ''}${job ? '_job' : ''}`;
    formStatus('sc-status', key, {
      id: s.id, date: fmtDate(s.date), start: s.start_time, capacity: fmtNum(s.capacity),
      remaining: fmtNum(s.remaining), job,
    }, 'ok');
    $('#sc-capacity').value = '';
    if (job) follow(job);
    loadSlots();
    refresh();
  } else {
    formStatus('sc-status', ...refusal(r, { not_found: 'sc_err_not_found', slot_cancelled: 'sc_err_cancelled' }), 'error');
    // The slot is gone from what citizens see: the list follows.
    if (r.error === 'not_found' || r.error === 'slot_cancelled') loadSlots();
  }
  if (wasConfirming) $('#sc-cancel').focus(); // the button that had focus is hidden
}

$('#sc-center').addEventListener('change', () => {
  closeSlotConfirm();
  formStatus('sc-status', null);
  loadSlots();
});
$('#sc-slot').addEventListener('change', closeSlotConfirm);

$('#slot-change-form').addEventListener('submit', (e) => {
  e.preventDefault();
  closeSlotConfirm();
  const input = $('#sc-capacity');
  const raw = input.value.trim();
  const capacity = Number(raw);
  const ok = raw !== '' && Number.isInteger(capacity) && capacity >= 0 && capacity <= 100000;
  if (!fieldError(input, ok ? '' : t('sc_err_capacity'))) {
    formStatus('sc-status', null);
    return input.focus();
  }
  patchSlot({ capacity });
});

$('#sc-cancel').addEventListener('click', () => {
  const slot = pickedSlot();
  if (!slot) return;
  fieldError($('#sc-capacity'), '');
  formStatus('sc-status', null); // the last answer was about another change
  $('#sc-confirm-text').textContent = t('sc_cancel_ask', { slot: slotLabel(slot) });
  $('#sc-confirm').hidden = false;
  $('#sc-cancel-no').focus();
});
$('#sc-cancel-no').addEventListener('click', () => {
  closeSlotConfirm();
  $('#sc-cancel').focus();
});
$('#sc-cancel-yes').addEventListener('click', () => patchSlot({ cancelled: true }));

/** The shift form's values as the server would take them, or null after marking what is wrong. */
function readShift() {
  const vaccine = $('#sh-vaccine').value.trim();
  const raw = $('#sh-days').value.trim();
  const days = Number(raw);
  const ok = [
    fieldError($('#sh-vaccine'), VACCINE.test(vaccine) ? '' : t('sh_err_vaccine')),
    fieldError($('#sh-days'), raw !== '' && Number.isInteger(days) && days >= 1 && days <= MAX_SHIFT_DAYS
      ? '' : t('sh_err_days', { max: MAX_SHIFT_DAYS })),
  ].every(Boolean);
  return ok ? { vaccine, second_dose_shift_days: days } : null;
}

$('#shift-form').addEventListener('input', () => {
  $('#sh-confirm').hidden = true; // what was asked is no longer what the form says
});

$('#shift-form').addEventListener('submit', (e) => {
  e.preventDefault();
  S.shift = readShift();
  $('#sh-confirm').hidden = !S.shift;
  formStatus('sh-status', null);
  if (!S.shift) return [$('#sh-vaccine'), $('#sh-days')].find((i) => i.getAttribute('aria-invalid'))?.focus();
  $('#sh-confirm-text').textContent = t('sh_ask', { vaccine: S.shift.vaccine, days: S.shift.second_dose_shift_days });
  $('#sh-no').focus(); // the safe answer first, as for cancelling
});

$('#sh-no').addEventListener('click', () => {
  $('#sh-confirm').hidden = true;
  $('#sh-submit').focus();
});

$('#sh-yes').addEventListener('click', async () => {
  const body = S.shift;
  if (!body) return;
  $('#sh-yes').disabled = true;
  const r = await admin('POST', '/rebookings', body);
  $('#sh-yes').disabled = false;
  $('#sh-confirm').hidden = true;
  S.shift = null;
  if (r.ok) {
    formStatus('sh-status', 'sh_done', { id: r.data.id, vaccine: body.vaccine, days: body.second_dose_shift_days }, 'ok');
    follow(r.data.id);
  } else {
    formStatus('sh-status', ...refusal(r), 'error');
  }
  $('#sh-submit').focus();
});

/** Puts a job first in the table and follows it until it is done. */
function follow(id, known = {}) {
  S.jobs = [{ ...(S.jobs.find((j) => j.id === id) ?? {}), ...known, id }, ...S.jobs.filter((j) => j.id !== id)];
  renderJobs();
  pollJobs();
}

/**
 * Asks for the latest jobs (one request) and for each job opened by number that the list does
 * not hold and is not known to be done, and again in a second while any runs; when none does,
 * the dashboard's refresh asks again (a job another operator starts shows within seconds).
 * Stops when the tab is hidden or the operator signs out.
 */
async function pollJobs(all = false) {
  if (S.jobsAsking) return; // the poll under way reads S.jobs after its answers
  S.jobsAsking = true;
  try {
    await askJobs(all);
  } finally {
    S.jobsAsking = false;
  }
}

async function askJobs(all) {
  clearTimeout(S.jobTimer);
  S.jobTimer = null;
  if (!S.token) return;
  const list = await admin('GET', '/rebookings');
  if (list.status === 401) return signedOut();
  const listed = list.ok ? new Map(list.data.map((j) => [j.id, j])) : new Map();
  const old = new Map(S.jobs.map((j) => [j.id, j]));
  // The list failed (a blip): keep what is shown, asked again at the next poll.
  const rows = list.ok ? list.data.map((j) => ({ ...j, failed: false })) : [...S.jobs];
  for (const id of S.opened) if (!listed.has(id) && !rows.some((j) => j.id === id)) rows.push(old.get(id) ?? { id });
  // A job just started or opened may be newer than the list's read: keep it first.
  for (const j of S.jobs) if (!rows.some((r) => r.id === j.id) && j.state == null) rows.unshift(j);
  const asked = rows.filter((j) => !listed.has(j.id) && (all || j.state !== 'done'));
  const answers = await Promise.all(asked.map((j) => admin('GET', `/rebookings/${j.id}`)));
  if (answers.some((r) => r.status === 401)) return signedOut();
  asked.forEach((j, i) => {
    const r = answers[i];
    if (r.ok) Object.assign(j, r.data, { failed: false });
    else if (r.status === 404) j.gone = true; // a job of another database (this one was reset)
    else j.failed = true; // a blip: asked again at the next poll
  });
  S.jobs = rows.filter((j) => !j.gone).sort((a, b) => b.id - a.id);
  for (const id of S.opened) if (!S.jobs.some((j) => j.id === id)) S.opened.delete(id);
  renderJobs();
  clearTimeout(S.jobTimer);
  S.jobTimer = null;
  const running = S.jobs.some((j) => j.state !== 'done');
  if (running && S.token && !document.hidden && !$('#dash').hidden) S.jobTimer = setTimeout(pollJobs, JOB_POLL_MS);
}

function renderJobs() {
  $('#jobs-empty').hidden = S.jobs.length > 0;
  $('#job-table tbody').replaceChildren(...S.jobs.map((j) => {
    const known = j.state != null;
    const handled = (j.moved ?? 0) + (j.unmovable ?? 0);
    let pct = 0;
    if (j.state === 'done') pct = 100;
    else if (known && j.total > 0) pct = Math.min(99, Math.floor((100 * handled) / j.total));
    const kind = !known ? ''
      : j.kind === 'shift' ? t('job_kind_shift', { days: j.second_dose_shift_days })
        : t('job_kind_slot', { id: j.slot_id });
    const count = (n) => h('td', { class: 'num' }, known ? fmtNum(n) : '–');
    return h('tr', { 'data-id': j.id, 'data-state': j.state ?? 'unknown' },
      h('td', {}, String(j.id)),
      h('td', { class: 'job-kind' }, kind),
      h('td', { class: 'job-vaccine' }, j.vaccine ?? ''),
      h('td', { class: 'job-state' }, known
        ? h('span', { class: `badge job-${j.state}` }, t(j.state === 'done' ? 'job_done' : 'job_running'))
        : t(j.failed ? 'job_unknown' : 'loading')),
      count(j.total), count(j.moved), count(j.unmovable),
      h('td', { class: 'job-progress' },
        h('progress', { max: 100, value: pct, 'aria-label': t('job_progress_label', { id: j.id }) }),
        h('span', { class: 'pct' }, `${pct}%`)));
  }));
}

$('#job-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const input = $('#jf-id');
  const id = Number(input.value);
  if (!fieldError(input, Number.isInteger(id) && id >= 1 && id <= 2147483647 ? '' : t('jf_err_id'))) return input.focus();
  const r = await admin('GET', `/rebookings/${id}`);
  if (r.ok) {
    formStatus('jf-status', null);
    input.value = '';
    S.opened.add(id);
    follow(id, r.data);
  } else {
    formStatus('jf-status', ...refusal(r, { not_found: 'jf_err_not_found' }), 'error');
  }
});

// ---------------------------------------------------------------- start

initLangSwitch($('#lang-switch'), () => {
  applyStatic();
  $('#toggle-refresh').textContent = t(S.paused ? 'dash_resume' : 'dash_pause');
  for (const row of S.rows.values()) row.setRate.textContent = t('rate_set');
  preview();
  render();
  renderSlotOptions();
  renderJobs();
  if (!$('#sc-confirm').hidden && pickedSlot()) $('#sc-confirm-text').textContent = t('sc_cancel_ask', { slot: slotLabel(pickedSlot()) });
  if (!$('#sh-confirm').hidden && S.shift) $('#sh-confirm-text').textContent = t('sh_ask', { vaccine: S.shift.vaccine, days: S.shift.second_dose_shift_days });
});
applyStatic();
renderJobs();
if (S.token) showDash();
else showSignin();
