// The citizen's journey: cohort → waiting room → identity → place → confirm → done, and
// looking up or cancelling a booking. One view shows at a time.
//
// What must survive a reload or a dropped connection (the ticket, i.e. the place in line) is
// kept in localStorage; the short-lived session only in this tab's sessionStorage; the name
// and phone number only in memory, and only until the check answers.
import { t, applyStatic, initLangSwitch, fmtDate, fmtWhen, fmtDuration, fmtClock, fmtNum, addDays } from './i18n.js';
import { h, $, call, stored, randomKey, normalizeDate, fieldError } from './common.js';

const KEY_TICKET = 'rsv.ticket';
const KEY_SESSION = 'rsv.session';
const KEY_CODE = 'rsv.code';
const KEY_ENTRY = 'rsv.entry';

const S = {
  view: null,
  notice: null, // {key, vars, kind}: kept as a key so a language switch redraws it
  cohorts: null,
  cohortsFailed: false,
  ticket: stored('local', KEY_TICKET), // {token, cohort, first}: `first` is the first position seen
  queue: null, // the last answer of the waiting room
  offline: false,
  failures: 0,
  pass: null, // {token, expiresAt}
  session: stored('session', KEY_SESSION), // {token, expiresAt, cohortId}
  birthDate: null, // in memory only: prefills the lookup after booking
  verifyBody: null, // in memory only, while an automatic retry is pending
  centers: null, // every center, for regions and for naming a booking's center
  regionCenters: [],
  slots: [],
  slotsLoading: false,
  pick: { region: null, centerId: null, date: null, slotId: null },
  idemKey: null,
  booking: null,
  manage: { booking: null, birth: null, confirming: false },
  leftovers: { list: null, picked: new Set(), entry: stored('local', KEY_ENTRY), status: null }, // entry: the sign-up's token
  deadlines: {}, // name -> epoch ms, drawn by the one-second ticker
  timers: {},
};

// ---------------------------------------------------------------- views and notices

/** Shows one view; a message that goes with the move (why it happened) comes as `say`. */
function show(view, { focus = true, say = null } = {}) {
  S.notice = say ? { key: say[0], vars: say[1] ?? {}, kind: say[2] ?? 'info' } : null;
  S.view = view;
  for (const s of document.querySelectorAll('[data-view]')) s.hidden = s.id !== `view-${view}`;
  render();
  if (focus) $(`#view-${view} h1`)?.focus();
}

/** A message above the current view, until the next view. */
function notice(key, vars = {}, kind = 'info') {
  S.notice = key ? { key, vars, kind } : null;
  renderNotice();
}

function renderNotice() {
  const box = $('#notice');
  const text = S.notice ? t(S.notice.key, S.notice.vars) : '';
  box.hidden = !S.notice;
  box.className = `msg ${S.notice?.kind ?? ''}`;
  if (box.textContent !== text) box.textContent = text; // a live region: say it once
}

/** Sets a status box (role=alert) only when its text changes, so it is announced once. */
function status(id, key, vars, kind = 'error') {
  const box = document.getElementById(id);
  const text = key ? t(key, vars) : '';
  box.hidden = !key;
  box.className = `msg ${kind}`;
  if (box.textContent !== text) box.textContent = text;
}

function render() {
  renderNotice();
  ({ cohorts: renderCohorts, queue: renderQueue, verify: renderVerify, place: renderPlace,
     confirm: renderConfirm, done: renderDone, manage: renderManage, leftovers: renderLeftovers })[S.view]?.();
  renderCountdowns();
}

function route() {
  if (location.hash === '#manage') {
    show('manage');
    return;
  }
  if (location.hash === '#leftovers') {
    show('leftovers');
    loadLeftovers();
    return;
  }
  clearTimeout(S.timers.leftovers);
  if (!S.view || S.view === 'manage' || S.view === 'leftovers') resume();
}

/** Where a visitor belongs: back in line if they hold a ticket, else the list of cohorts. */
function resume() {
  if (S.ticket && sessionValid()) {
    enterPlace();
  } else if (S.ticket) {
    show('queue', { focus: S.view !== null });
    poll();
  } else {
    show('cohorts', { focus: S.view !== null });
    loadCohorts();
  }
}

// ---------------------------------------------------------------- 1. cohorts

async function loadCohorts() {
  const r = await call('GET', '/api/v1/cohorts');
  S.cohortsFailed = !r.ok;
  if (r.ok) S.cohorts = r.data;
  if (S.view === 'cohorts') renderCohorts();
}

function renderCohorts() {
  const list = $('#cohort-list');
  list.setAttribute('aria-busy', String(!S.cohorts && !S.cohortsFailed));
  if (S.cohortsFailed && !S.cohorts) {
    list.replaceChildren(
      h('p', { class: 'msg error' }, t('err_load')),
      h('button', { type: 'button', class: 'secondary', onclick: loadCohorts }, t('retry')),
    );
    return;
  }
  if (!S.cohorts) return list.replaceChildren(h('p', { class: 'muted' }, t('loading')));
  if (!S.cohorts.length) return list.replaceChildren(h('p', { class: 'msg info' }, t('cohorts_none')));
  list.replaceChildren(...S.cohorts.map((c) => {
    const nameId = `cohort-${c.id}-name`;
    // Operators often name a cohort by its birth years, as in 2021 ("55-59세 (1962-1966년생)");
    // then the born line would say them a second time.
    const nameHasYears = [c.birth_year_from, c.birth_year_to].every((y) => c.name.includes(String(y)));
    const btn = h('button', {
      type: 'button', class: 'primary', 'aria-describedby': nameId, disabled: c.state === 'closed',
      onclick: () => join(c, btn),
    }, t(c.state === 'scheduled' ? 'cohort_join_early' : 'cohort_join'));
    return h('article', { class: 'card cohort', 'data-cohort': c.id },
      h('div', { class: 'row' },
        h('h2', { id: nameId }, c.name),
        h('span', { class: `badge state-${c.state}` }, t(`state_${c.state}`))),
      nameHasYears ? null : h('p', { class: 'born' }, t('cohort_born', { from: c.birth_year_from, to: c.birth_year_to })),
      h('p', { class: 'muted' }, `${c.vaccine} · ${t('cohort_interval', { days: c.dose_interval_days })}`),
      h('p', { class: 'muted small' }, t('cohort_period', { from: fmtWhen(c.opens_at), to: fmtWhen(c.closes_at) })),
      c.state === 'sold_out' ? h('p', { class: 'small' }, t('cohort_sold_out_note')) : null,
      btn);
  }));
}

/**
 * A solved challenge for joining `cohort` (`{challenge, nonce}`), solved in a worker while a
 * note counts the hashes tried; `null` when the cohort asks none; `{failed: r}` when the
 * challenge could not be had (`r` null: the worker failed).
 */
async function solvedChallenge(cohort) {
  const c = await call('GET', `/api/v1/cohorts/${cohort.id}/challenge`);
  if (!c.ok) return { failed: c };
  if (!c.data.difficulty) return null;
  notice('pow_preparing', { n: fmtNumber(0) }, 'info');
  const worker = new Worker(new URL('./pow-worker.js', import.meta.url), { type: 'module' });
  try {
    const out = await new Promise((resolve, reject) => {
      worker.onmessage = (e) => {
        if (e.data.nonce === undefined) notice('pow_preparing', { n: fmtNumber(e.data.tried) }, 'info');
        else resolve(e.data);
      };
      worker.onerror = reject;
      worker.postMessage({ challenge: c.data.challenge, difficulty: c.data.difficulty });
    });
    notice(null);
    return { challenge: c.data.challenge, nonce: out.nonce };
  } catch {
    return { failed: null }; // the worker broke: said as such
  } finally {
    worker.terminate();
  }
}

function fmtNumber(n) {
  return new Intl.NumberFormat(t('locale')).format(n);
}

async function join(cohort, btn, retried = false) {
  if (btn) btn.disabled = true;
  let body;
  if (cohort.join_difficulty > 0 || retried) {
    const solved = await solvedChallenge(cohort);
    if (solved && 'failed' in solved) {
      if (btn) btn.disabled = false;
      return solved.failed ? notice(...failure(solved.failed)) : notice('err_pow', {}, 'error');
    }
    body = solved ?? undefined;
  }
  const r = await call('POST', `/api/v1/cohorts/${cohort.id}/queue`, { body });
  if (btn) btn.disabled = false;
  // A challenge used or gone stale (or a difficulty raised since the listing): once more,
  // with a fresh one.
  if (!r.ok && !retried && (r.error === 'challenge_used' || r.status === 400)) {
    return join(cohort, btn, true);
  }
  if (r.ok) {
    S.ticket = { token: r.data.ticket, cohort, first: r.data.position ?? null };
    stored('local', KEY_TICKET, S.ticket);
    S.failures = 0;
    S.offline = false;
    show('queue');
    afterPoll(r.data);
  } else if (r.error === 'cohort_closed') {
    notice('err_cohort_closed', {}, 'warn');
    loadCohorts();
  } else {
    notice(...failure(r));
  }
}

/** A notice for an answer no step handles on its own: a blip, overload, or a surprise. */
function failure(r) {
  if (r.status === 0) return ['err_network', {}, 'warn'];
  if (r.status === 503 || r.status === 429) return ['err_busy', { s: r.retryAfter ?? 1 }, 'warn'];
  return ['err_generic', { message: r.message || r.status }, 'error'];
}

// ---------------------------------------------------------------- 2. the waiting room

function schedulePoll(seconds) {
  clearTimeout(S.timers.poll);
  const ms = Math.max(1, seconds) * 1000;
  S.deadlines.poll = Date.now() + ms;
  S.timers.poll = setTimeout(poll, ms);
}

async function poll() {
  clearTimeout(S.timers.poll);
  delete S.deadlines.poll;
  const token = S.ticket?.token;
  if (!token) return;
  const r = await call('GET', '/api/v1/queue', { token });
  if (S.ticket?.token !== token) return; // left the queue (or joined another) meanwhile
  if (r.ok) {
    S.failures = 0;
    S.offline = false;
    afterPoll(r.data);
  } else if (r.status === 401) {
    forgetTicket();
    show('cohorts', { say: ['err_ticket_invalid', {}, 'warn'] });
    loadCohorts();
  } else {
    // A blip or overload: the place in line is the server's, not this page's, so nothing
    // is lost. Keep the last figures and ask again, a little later each time.
    S.failures += 1;
    S.offline = true;
    schedulePoll(r.retryAfter ?? Math.min(30, 2 ** S.failures));
    if (S.view === 'queue') renderQueue();
  }
}

function afterPoll(q) {
  S.queue = q;
  if (q.position != null && q.state === 'waiting' && (S.ticket.first == null || q.position > S.ticket.first)) {
    S.ticket.first = q.position;
    stored('local', KEY_TICKET, S.ticket);
  }
  if (q.state === 'admitted' && q.pass) {
    S.pass = { token: q.pass, expiresAt: Date.parse(q.pass_expires_at) };
    if (S.view === 'queue') {
      if (sessionValid()) enterPlace();
      else show('verify');
    }
    return;
  }
  S.pass = null;
  if (['pre_queue', 'waiting', 'sold_out'].includes(q.state)) schedulePoll(q.poll_after_seconds);
  // A pass that lapsed (or a cohort that closed) while the citizen was filling in a form.
  if (['verify', 'place', 'confirm'].includes(S.view) && !sessionValid()) show('queue');
  else if (S.view === 'queue') renderQueue();
}

function forgetTicket() {
  clearTimeout(S.timers.poll);
  S.ticket = null;
  S.queue = null;
  S.pass = null;
  stored('local', KEY_TICKET, null);
  forgetSession();
}

function renderQueue() {
  const q = S.queue;
  const cohort = S.ticket?.cohort;
  $('#q-cohort').textContent = cohort ? t('queue_cohort', { name: cohort.name }) : '';
  const state = q?.state ?? 'loading';
  let key = state === 'waiting' && q.eta_seconds == null ? 'q_waiting_no_eta' : `q_${state}`;
  let kind = { sold_out: 'warn', closed: 'warn', expired: 'warn', admitted: 'ok' }[state] ?? 'info';
  if (S.offline) [key, kind] = ['q_offline', 'warn'];
  status('q-message', key, {}, kind);

  const moving = q && q.position != null && ['waiting', 'sold_out'].includes(state);
  $('#q-figures').hidden = !moving;
  if (moving) {
    $('#q-position').textContent = t('queue_nth', { n: fmtNum(q.position) });
    $('#q-ahead').textContent = t('people', { n: fmtNum(q.ahead) });
    $('#q-behind').textContent = q.behind == null ? '–' : t('people', { n: fmtNum(q.behind) });
    $('#q-eta').textContent = state === 'sold_out' ? t('eta_sold_out')
      : q.eta_seconds == null ? t('eta_unknown') : fmtDuration(q.eta_seconds);
    const first = Math.max(S.ticket.first ?? q.position, q.position);
    const done = first > 0 ? Math.round((100 * (first - q.position)) / first) : 0;
    const bar = $('#q-progress');
    bar.value = done;
    bar.setAttribute('aria-valuetext', t('queue_progress_text', { p: done }));
  }
  const ended = ['closed', 'expired'].includes(state);
  $('#q-rejoin').hidden = state !== 'expired';
  $('#q-leave').textContent = t(ended ? 'queue_home' : 'queue_leave');
}

$('#q-leave').addEventListener('click', () => {
  forgetTicket();
  show('cohorts');
  loadCohorts();
});

$('#q-rejoin').addEventListener('click', () => {
  const cohort = S.ticket?.cohort;
  forgetTicket();
  if (cohort) join(cohort, $('#q-rejoin'));
});

// ---------------------------------------------------------------- 3. identity

function sessionValid() {
  return !!S.session && S.session.expiresAt > Date.now() + 5000 && S.session.cohortId === S.ticket?.cohort?.id;
}

function forgetSession() {
  S.session = null;
  stored('session', KEY_SESSION, null);
}

function renderVerify() {
  const c = S.ticket?.cohort;
  $('#v-birth-hint').textContent = c
    ? `${t('field_birth_hint')} ${t('verify_years', { from: c.birth_year_from, to: c.birth_year_to })}`
    : t('field_birth_hint');
}

/** Checks the form; returns the body to send, or null after marking what is wrong. */
function readVerify() {
  const name = $('#v-name');
  const birth = $('#v-birth');
  const phone = $('#v-phone');
  const birthDate = normalizeDate(birth.value);
  const digits = phone.value.replace(/[\s-]/g, '');
  const checks = [
    fieldError(name, name.value.trim() ? '' : t('err_name')),
    fieldError(birth, birthDate ? '' : t('err_birth')),
    fieldError(phone, /^010\d{7,8}$/.test(digits) ? '' : t('err_phone')),
  ];
  if (checks.includes(false)) {
    [name, birth, phone].find((i) => i.getAttribute('aria-invalid'))?.focus();
    return null;
  }
  if (birthDate) birth.value = birthDate;
  return { name: name.value.trim(), birth_date: birthDate, phone: digits.replace(/^(\d{3})(\d{3,4})(\d{4})$/, '$1-$2-$3') };
}

async function submitVerify(retry = false) {
  clearTimeout(S.timers.verify);
  delete S.deadlines.verifyRetry;
  const body = retry ? S.verifyBody : readVerify();
  if (!body) return;
  if (!S.pass || S.pass.expiresAt <= Date.now()) {
    show('queue');
    poll();
    return;
  }
  const btn = $('#v-submit');
  btn.disabled = true;
  status('v-status', 'verify_checking', {}, 'info');
  const r = await call('POST', '/api/v1/verifications', { token: S.pass.token, body });
  btn.disabled = false;
  S.verifyBody = null;
  if (r.ok) {
    S.session = { token: r.data.session, expiresAt: Date.parse(r.data.expires_at), cohortId: r.data.cohort_id };
    stored('session', KEY_SESSION, S.session);
    S.birthDate = body.birth_date;
    for (const id of ['v-name', 'v-phone']) $(`#${id}`).value = ''; // not kept longer than needed
    status('v-status', null);
    enterPlace();
    return;
  }
  const c = S.ticket?.cohort;
  switch (r.error) {
    case 'identity_busy':
    case 'unavailable':
    case 'network': {
      // The check is refused before it starts, so trying again is safe and costs no attempt.
      const wait = r.retryAfter ?? 3;
      S.verifyBody = body;
      S.deadlines.verifyRetry = Date.now() + wait * 1000;
      S.timers.verify = setTimeout(() => submitVerify(true), wait * 1000);
      btn.disabled = true;
      status('v-status', r.error === 'network' ? 'verify_offline' : 'verify_busy', {}, 'warn');
      break;
    }
    case 'rate_limited':
      S.deadlines.verifyBlocked = Date.now() + (r.retryAfter ?? 60) * 1000;
      btn.disabled = true;
      status('v-status', 'verify_rate_limited', { wait: fmtDuration(r.retryAfter ?? 60) }, 'warn');
      break;
    case 'identity_rejected':
      status('v-status', 'verify_rejected');
      break;
    case 'not_eligible': {
      const year = Number(body.birth_date.slice(0, 4));
      const outside = c && (year < c.birth_year_from || year > c.birth_year_to);
      status('v-status', outside ? 'verify_not_eligible' : 'verify_not_today',
        { from: c?.birth_year_from, to: c?.birth_year_to, message: r.message });
      break;
    }
    case 'invalid_pass':
      status('v-status', null);
      S.pass = null;
      show('queue', { say: ['err_pass_expired', {}, 'warn'] });
      poll();
      break;
    case 'validation':
      status('v-status', 'err_validation', { message: r.message });
      break;
    default:
      status('v-status', ...failure(r));
  }
}

$('#verify-form').addEventListener('submit', (e) => {
  e.preventDefault();
  submitVerify();
});

// ---------------------------------------------------------------- 4. region, center, day, time

function enterPlace() {
  show('place');
  if (!S.centers) loadCenters();
}

async function loadCenters() {
  if (S.centersLoading) return;
  S.centersLoading = true;
  const r = await call('GET', '/api/v1/centers');
  S.centersLoading = false;
  if (!r.ok) return notice(...failure(r));
  S.centers = r.data;
  if (S.view === 'place') renderPlace();
  if (S.view === 'done' || S.view === 'manage') render();
}

function renderPlace() {
  const c = S.ticket?.cohort;
  $('#p-lead').textContent = c ? t('place_lead', { vaccine: c.vaccine, days: c.dose_interval_days }) : '';
  renderRegions();
  renderCenters();
  renderDates();
  renderTimes();
}

/** A group of radio buttons; only the groups after a changed one are redrawn, so focus stays. */
function radios(container, name, options, checked, onpick) {
  container.replaceChildren(...options.map((o) => {
    const id = `${name}-${o.value}`;
    return h('div', { class: `option${o.disabled ? ' disabled' : ''}` },
      h('input', { type: 'radio', name, id, value: o.value, checked: o.value === checked, disabled: !!o.disabled,
        onchange: () => onpick(o.value) }),
      h('label', { for: id }, h('span', { class: 'opt-main' }, o.label), h('span', { class: 'opt-sub' }, o.sub)));
  }));
}

function renderRegions() {
  const list = $('#p-region-list');
  list.setAttribute('aria-busy', String(!S.centers));
  if (!S.centers) return list.replaceChildren(h('p', { class: 'muted' }, t('loading')));
  const regions = new Map();
  for (const c of S.centers) regions.set(c.region, (regions.get(c.region) ?? 0) + c.remaining);
  if (!regions.size) return list.replaceChildren(h('p', { class: 'msg info' }, t('place_no_centers')));
  const options = [...regions].sort(([a], [b]) => a.localeCompare(b, 'ko'))
    .map(([region, left]) => ({ value: region, label: region, sub: t('places_left', { n: fmtNum(left) }), disabled: left <= 0 }));
  radios(list, 'region', options, S.pick.region, chooseRegion);
}

async function chooseRegion(region) {
  S.pick = { region, centerId: null, date: null, slotId: null };
  S.regionCenters = [];
  S.slots = [];
  renderCenters();
  renderDates();
  renderTimes();
  const r = await call('GET', `/api/v1/centers?region=${encodeURIComponent(region)}`);
  if (S.pick.region !== region) return; // the citizen moved on while this was loading
  if (!r.ok) return notice(...failure(r));
  S.regionCenters = r.data;
  renderCenters();
}

function renderCenters() {
  const box = $('#p-centers');
  box.hidden = !S.pick.region;
  const options = S.regionCenters.map((c) => ({
    value: String(c.id), label: c.name, sub: `${c.address} · ${t('places_left', { n: fmtNum(c.remaining) })}`,
    disabled: c.remaining <= 0,
  }));
  radios($('#p-center-list'), 'center', options, S.pick.centerId, (id) => chooseCenter(id));
  if (S.pick.region && !options.length) $('#p-center-list').replaceChildren(h('p', { class: 'muted' }, t('loading')));
}

async function chooseCenter(centerId, { keepDate = false } = {}) {
  S.pick = { ...S.pick, centerId, date: keepDate ? S.pick.date : null, slotId: null };
  S.idemKey = null;
  if (!keepDate) {
    S.slots = [];
    renderDates();
  }
  renderTimes();
  S.slotsLoading = true;
  const r = await call('GET', `/api/v1/centers/${centerId}/slots`);
  if (S.pick.centerId !== centerId) return;
  S.slotsLoading = false;
  if (!r.ok) return notice(...failure(r));
  const vaccine = S.ticket?.cohort?.vaccine;
  S.slots = r.data.filter((s) => !vaccine || s.vaccine === vaccine);
  renderDates();
  renderTimes();
}

function renderDates() {
  const box = $('#p-dates');
  box.hidden = !S.pick.centerId;
  const days = new Map();
  for (const s of S.slots) days.set(s.date, (days.get(s.date) ?? 0) + s.remaining);
  // The server books the second dose at this center from the target day to 7 days after;
  // a first day with no room there is refused, so it is not offered (the server still decides).
  const interval = S.ticket?.cohort?.dose_interval_days;
  const roomy = new Set(S.slots.filter((s) => s.remaining > 0).map((s) => s.date));
  const secondFits = (date) => !interval || Array.from({ length: 8 }, (_, k) => addDays(date, interval + k)).some((d) => roomy.has(d));
  const thisYear = String(new Date().getFullYear());
  const options = [...days].sort(([a], [b]) => a.localeCompare(b)).map(([date, left]) => ({
    value: date,
    label: fmtDate(date, { year: !date.startsWith(thisYear) }), // short enough for two columns on a phone
    sub: !secondFits(date) ? t('place_no_second') : t('places_left', { n: fmtNum(left) }),
    disabled: left <= 0 || !secondFits(date),
  }));
  radios($('#p-date-list'), 'date', options, S.pick.date, (date) => {
    S.pick = { ...S.pick, date, slotId: null };
    renderTimes();
  });
  if (S.pick.centerId && !options.length) {
    $('#p-date-list').replaceChildren(h('p', { class: 'muted' }, t(S.slotsLoading ? 'loading' : 'place_no_slots')));
  }
}

function renderTimes() {
  $('#p-times').hidden = !S.pick.date;
  const options = S.slots.filter((s) => s.date === S.pick.date)
    .sort((a, b) => a.start_time.localeCompare(b.start_time))
    .map((s) => ({
      value: String(s.id), label: `${s.start_time}–${s.end_time}`,
      sub: s.remaining > 0 ? t('places_left', { n: fmtNum(s.remaining) }) : t('full'), disabled: s.remaining <= 0,
    }));
  radios($('#p-time-list'), 'slot', options, S.pick.slotId, (id) => {
    S.pick.slotId = id;
    S.idemKey = null; // a new choice is a new booking attempt
    $('#p-next').disabled = false;
  });
  $('#p-next').disabled = !S.pick.slotId;
}

$('#place-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (S.pick.slotId) show('confirm');
});

// ---------------------------------------------------------------- 5. confirm

const pickedSlot = () => S.slots.find((s) => String(s.id) === S.pick.slotId);
const centerById = (id) => S.centers?.find((c) => c.id === id) ?? S.regionCenters.find((c) => c.id === id);

function summary(dl, rows) {
  dl.replaceChildren(...rows.filter(Boolean).map(([k, v, cls]) => h('div', { class: cls }, h('dt', {}, t(k)), h('dd', {}, v))));
}

function renderConfirm() {
  const slot = pickedSlot();
  const center = centerById(Number(S.pick.centerId));
  const c = S.ticket?.cohort;
  if (!slot || !c) return;
  summary($('#c-summary'), [
    ['sum_cohort', c.name],
    ['sum_vaccine', c.vaccine],
    ['sum_center', center ? `${center.name} (${center.address})` : ''],
    ['sum_first', `${fmtDate(slot.date)} ${slot.start_time}`],
    ['sum_second', t('sum_second_about', { date: fmtDate(addDays(slot.date, c.dose_interval_days)) })],
  ]);
  $('#c-second-note').textContent = t('confirm_second_note', { days: c.dose_interval_days });
  if (!S.timers.book) status('c-status', null);
}

async function book() {
  clearTimeout(S.timers.book);
  S.timers.book = null;
  delete S.deadlines.bookRetry;
  if (!sessionValid()) return sessionLapsed();
  // One key per choice: a retry after a blip is the same request, and books nothing twice.
  S.idemKey ??= randomKey();
  const btn = $('#c-book');
  btn.disabled = true;
  status('c-status', 'confirm_booking', {}, 'info');
  const r = await call('POST', '/api/v1/bookings', {
    token: S.session.token, body: { slot_id: Number(S.pick.slotId) }, headers: { 'Idempotency-Key': S.idemKey },
  });
  btn.disabled = false;
  if (r.ok) {
    S.booking = r.data;
    stored('local', KEY_CODE, r.data.code);
    S.manage = { booking: null, birth: S.birthDate, confirming: false };
    forgetTicket();
    show('done');
    return;
  }
  switch (r.error) {
    case 'slot_full':
    case 'no_second_dose_slot':
    case 'not_found':
    case 'wrong_vaccine':
      show('place', { say: [{ no_second_dose_slot: 'err_no_second', wrong_vaccine: 'err_wrong_vaccine' }[r.error] ?? 'err_slot_full', {}, 'warn'] });
      chooseCenter(S.pick.centerId, { keepDate: true });
      break;
    case 'already_booked':
      status('c-status', 'err_already_booked', { message: r.message });
      break;
    case 'invalid_session':
      sessionLapsed();
      break;
    case 'validation':
      status('c-status', 'err_validation', { message: r.message });
      break;
    default: {
      if (r.status !== 0 && r.status !== 503 && r.status !== 429) {
        status('c-status', ...failure(r));
        break;
      }
      const wait = r.retryAfter ?? 3;
      S.deadlines.bookRetry = Date.now() + wait * 1000;
      S.timers.book = setTimeout(book, wait * 1000);
      btn.disabled = true;
      status('c-status', 'confirm_retrying', {}, 'warn');
    }
  }
}

/** The session ran out: verify again while the pass lasts, else back to the waiting room. */
function sessionLapsed() {
  forgetSession();
  const say = ['err_session_expired', {}, 'warn'];
  if (S.pass && S.pass.expiresAt > Date.now()) {
    show('verify', { say });
  } else {
    show('queue', { say });
    poll();
  }
}

$('#c-book').addEventListener('click', book);
$('#c-back').addEventListener('click', () => {
  clearTimeout(S.timers.book);
  S.timers.book = null;
  show('place');
});

// ---------------------------------------------------------------- 6. done, 7. manage

function centerLabel(id) {
  const center = centerById(id);
  if (!center && !S.centers) loadCenters();
  return center ? `${center.name} (${center.address})` : `#${id}`;
}

/**
 * A booking's summary. A rebooking may have left its doses at two centers: each dose then names
 * its own. A booking that needs rebooking shows the places it had, marked as given back.
 */
function bookingRows(b) {
  const split = b.second_dose.center_id !== b.first_dose.center_id;
  const freed = b.state === 'needs_rebooking';
  const dose = (d) => `${fmtDate(d.date)} ${d.start_time}${split ? ` · ${centerLabel(d.center_id)}` : ''}`;
  return [
    ['sum_name', b.name],
    ['sum_vaccine', b.vaccine],
    split ? null : ['sum_center', centerLabel(b.first_dose.center_id)],
    [freed ? 'sum_first_freed' : 'sum_first', dose(b.first_dose), 'dose-first'],
    [freed ? 'sum_second_freed' : 'sum_second', dose(b.second_dose), 'dose-second'],
  ];
}

/** Each dose a supply change moved, oldest first: where it was, where it went, and when. */
function renderMoves(b) {
  const moves = b.moved ?? [];
  $('#m-moves').hidden = !moves.length;
  $('#m-moves-note').hidden = b.state !== 'confirmed';
  const place = (p) => `${fmtDate(p.date)} ${p.start_time} · ${centerLabel(p.center_id)}`;
  $('#m-move-list').replaceChildren(...moves.map((mv) => h('li', { 'data-dose': mv.dose },
    h('p', { class: 'move-dose' }, t(mv.dose === 1 ? 'sum_first' : 'sum_second'),
      h('span', { class: 'move-at muted small' }, t('move_at', { when: fmtWhen(mv.at) }))),
    h('dl', { class: 'move-places' },
      h('div', { class: 'move-from' }, h('dt', {}, t('move_from')), h('dd', {}, place(mv.from))),
      h('div', { class: 'move-to' }, h('dt', {}, t('move_to')), h('dd', {}, place(mv.to)))))));
}

function renderDone() {
  const b = S.booking;
  if (!b) return;
  $('#d-code').textContent = b.code;
  summary($('#d-summary'), bookingRows(b));
}

$('#d-print').addEventListener('click', () => window.print());

function renderManage() {
  const m = S.manage;
  const code = $('#m-code');
  if (!code.value) code.value = stored('local', KEY_CODE) ?? '';
  if (!$('#m-birth').value && m.birth) $('#m-birth').value = m.birth;
  const b = m.booking;
  $('#m-result').hidden = !b;
  if (!b) return;
  $('#m-code-shown').textContent = b.code;
  const badge = $('#m-state');
  badge.className = `badge state-${b.state}`;
  badge.textContent = t(`booking_${b.state}`);
  summary($('#m-summary'), bookingRows(b));
  // Not moved for lack of places: nothing is left to cancel, the way on is to book again.
  $('#m-rebook').hidden = b.state !== 'needs_rebooking';
  renderMoves(b);
  $('#m-cancel-area').hidden = b.state !== 'confirmed' || m.confirming;
  $('#m-confirm').hidden = !m.confirming;
}

$('#manage-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const codeInput = $('#m-code');
  const birthInput = $('#m-birth');
  const code = codeInput.value.replace(/[\s-]/g, '').toUpperCase();
  const birth = normalizeDate(birthInput.value);
  const ok = [fieldError(codeInput, code ? '' : t('err_code')), fieldError(birthInput, birth ? '' : t('err_birth'))];
  if (ok.includes(false)) return;
  birthInput.value = birth;
  status('m-status', 'loading', {}, 'info');
  const r = await call('POST', '/api/v1/bookings/lookup', { body: { code, birth_date: birth } });
  S.manage = { booking: r.ok ? r.data : null, birth, confirming: false };
  if (r.ok) status('m-status', null);
  else if (r.status === 404) status('m-status', 'manage_not_found');
  else if (r.error === 'rate_limited') status('m-status', 'manage_rate_limited', { wait: fmtDuration(r.retryAfter ?? 60) }, 'warn');
  else if (r.error === 'validation') status('m-status', 'err_validation', { message: r.message });
  else status('m-status', ...failure(r));
  renderManage();
  if (r.ok) $('#m-result').focus();
});

$('#m-cancel').addEventListener('click', () => {
  S.manage.confirming = true;
  renderManage();
  $('#m-cancel-no').focus();
});

$('#m-cancel-no').addEventListener('click', () => {
  S.manage.confirming = false;
  renderManage();
  $('#m-cancel').focus();
});

$('#m-cancel-yes').addEventListener('click', async () => {
  const m = S.manage;
  const btn = $('#m-cancel-yes');
  btn.disabled = true;
  const r = await call('POST', `/api/v1/bookings/${encodeURIComponent(m.booking.code)}/cancel`, { body: { birth_date: m.birth } });
  btn.disabled = false;
  m.confirming = false;
  if (r.ok) {
    m.booking = { ...m.booking, state: r.data.state };
    status('m-status', 'manage_cancelled', {}, 'ok');
    renderManage();
    $('#m-result').focus(); // the button that had focus is gone
    return;
  } else if (r.error === 'rate_limited') {
    status('m-status', 'manage_rate_limited', { wait: fmtDuration(r.retryAfter ?? 60) }, 'warn');
  } else {
    status('m-status', ...failure(r));
  }
  renderManage();
});

$('#m-rebook-go').addEventListener('click', () => {
  history.pushState(null, '', location.pathname);
  resume(); // the cohort list, or back in line for one who holds a ticket already
});

$('#m-home').addEventListener('click', (e) => {
  e.preventDefault();
  history.pushState(null, '', location.pathname);
  resume();
});

// ---------------------------------------------------------------- 8. leftover doses today

/** The list of today's leftovers, and where this visitor's sign-up stands. */
async function loadLeftovers() {
  const L = S.leftovers;
  const r = await call('GET', '/api/v1/leftovers');
  if (r.ok) L.list = r.data;
  if (L.entry) await pollEntry();
  else render();
}

async function pollEntry() {
  const L = S.leftovers;
  clearTimeout(S.timers.leftovers);
  if (!L.entry) return;
  const r = await call('GET', '/api/v1/leftovers/waitlist', { token: L.entry });
  if (r.ok) {
    L.status = r.data;
    if (r.data.state === 'offered') S.deadlines.offer = Date.parse(r.data.offer.expires_at);
    else delete S.deadlines.offer;
  } else if (r.error === 'invalid_entry') {
    forgetEntry();
  }
  render();
  // Waiting or offered: ask again soon (an offer comes, or lapses).
  if (S.view === 'leftovers' && L.entry && ['waiting', 'offered'].includes(L.status?.state)) {
    S.timers.leftovers = setTimeout(pollEntry, 2000);
  }
}

function forgetEntry() {
  const L = S.leftovers;
  L.entry = null;
  L.status = null;
  delete S.deadlines.offer;
  stored('local', KEY_ENTRY, null);
}

function renderLeftovers() {
  const L = S.leftovers;
  const list = L.list ?? [];
  const live = L.entry && L.status && ['waiting', 'offered'].includes(L.status.state);
  $('#l-signup').hidden = !!live;
  $('#l-empty').hidden = list.length > 0;
  const box = $('#l-list');
  const centers = new Map();
  for (const l of list) if (!centers.has(l.center_id)) centers.set(l.center_id, l);
  box.replaceChildren(...[...centers.values()].map((l) => {
    const id = `lo-${l.center_id}`;
    const input = h('input', {
      type: 'checkbox', id, checked: L.picked.has(l.center_id),
      onchange: (e) => (e.target.checked ? L.picked.add(l.center_id) : L.picked.delete(l.center_id)),
    });
    const text = t('lo_item', { name: l.name, vaccine: l.vaccine, n: fmtNum(l.remaining), until: l.until.slice(11, 16) });
    return h('div', { class: 'lo-item', 'data-leftover': l.center_id }, input, h('label', { for: id }, text));
  }));
  $('#l-need-session').hidden = sessionValid();
  $('#l-join').disabled = !sessionValid();
  const st = L.entry ? L.status : null;
  $('#l-entry').hidden = !st;
  if (!st) return;
  $('#l-state').textContent = t(`lo_state_${st.state}`);
  $('#l-position').hidden = st.state !== 'waiting';
  $('#l-position').textContent = st.state === 'waiting' ? t('lo_position', { ahead: Math.max(0, st.position - 1), n: st.position }) : '';
  $('#l-offer').hidden = st.state !== 'offered';
  if (st.state === 'offered') {
    const c = list.find((l) => l.center_id === st.offer.center_id) ?? centerById(st.offer.center_id);
    $('#l-offer-text').textContent = t('lo_offer', { center: c?.name ?? `#${st.offer.center_id}`, vaccine: st.offer.vaccine });
  }
  $('#l-leave').hidden = !live || st.state === 'offered';
  $('#l-again').hidden = !!live || st.state === 'booked';
}

async function signUpLeftovers() {
  const L = S.leftovers;
  if (!sessionValid()) return render();
  const ids = [...L.picked];
  if (ids.length < 1 || ids.length > 5) return status('l-status', 'lo_pick_some', {}, 'warn');
  status('l-status', null);
  const r = await call('POST', '/api/v1/leftovers/waitlist', { token: S.session.token, body: { center_ids: ids } });
  if (r.ok) {
    L.entry = r.data.entry;
    L.picked.clear();
    stored('local', KEY_ENTRY, r.data.entry);
    L.status = { state: r.data.state, position: r.data.position };
    render();
    $('#l-entry').focus();
    pollEntry();
    return;
  }
  if (r.error === 'already_waiting') status('l-status', 'lo_already', {}, 'warn');
  else if (r.error === 'invalid_session') sessionLapsed();
  else status('l-status', ...failure(r));
}

async function acceptOffer() {
  const L = S.leftovers;
  const btn = $('#l-accept');
  btn.disabled = true;
  const r = await call('POST', '/api/v1/leftovers/waitlist/accept', { token: L.entry });
  btn.disabled = false;
  if (r.ok) {
    S.booking = r.data;
    stored('local', KEY_CODE, r.data.code);
    S.manage = { booking: null, birth: S.birthDate, confirming: false };
    clearTimeout(S.timers.leftovers);
    history.pushState(null, '', location.pathname);
    show('done');
    return;
  }
  if (r.error === 'no_offer') status('l-status', 'lo_no_offer', {}, 'warn');
  else if (r.error === 'no_second_dose_slot') status('l-status', 'lo_no_second', {}, 'warn');
  else status('l-status', ...failure(r));
  pollEntry();
}

async function leaveLeftovers() {
  const L = S.leftovers;
  const r = await call('POST', '/api/v1/leftovers/waitlist/decline', { token: L.entry });
  if (!r.ok && r.error !== 'no_offer') status('l-status', ...failure(r));
  await pollEntry();
}

$('#l-join').addEventListener('click', signUpLeftovers);
$('#l-accept').addEventListener('click', acceptOffer);
$('#l-decline').addEventListener('click', leaveLeftovers);
$('#l-leave').addEventListener('click', leaveLeftovers);
$('#l-again').addEventListener('click', () => {
  forgetEntry();
  loadLeftovers();
});
$('#l-home').addEventListener('click', (e) => {
  e.preventDefault();
  clearTimeout(S.timers.leftovers);
  history.pushState(null, '', location.pathname);
  resume();
});

// ---------------------------------------------------------------- countdowns

/** Redraws only the countdowns; they sit outside live regions so they are not read out each second. */
function renderCountdowns() {
  const left = (name) => Math.max(0, Math.ceil(((S.deadlines[name] ?? 0) - Date.now()) / 1000));
  if (S.view === 'queue') {
    const q = S.queue;
    const opens = q?.state === 'pre_queue' && S.ticket ? Date.parse(S.ticket.cohort.opens_at) : null;
    const cd = $('#q-countdown');
    cd.hidden = !opens;
    if (opens) cd.textContent = t('q_opens_in', { clock: fmtClock(Math.max(0, (opens - Date.now()) / 1000)) });
    $('#q-next').textContent = S.deadlines.poll ? t('q_next_check', { s: left('poll') }) : '';
  }
  if (S.view === 'verify' && S.pass && S.pass.expiresAt <= Date.now()) {
    // The turn lapsed while the form was open: the waiting room says what to do next.
    S.pass = null;
    poll();
  }
  if (S.view === 'verify') {
    const p = $('#v-pass');
    p.hidden = !S.pass;
    if (S.pass) p.textContent = t('verify_pass_left', { clock: fmtClock(Math.max(0, (S.pass.expiresAt - Date.now()) / 1000)) });
    const retry = $('#v-countdown');
    const pending = S.deadlines.verifyRetry ? left('verifyRetry') : S.deadlines.verifyBlocked ? left('verifyBlocked') : 0;
    retry.hidden = !pending;
    retry.textContent = pending ? t(S.deadlines.verifyRetry ? 'retry_in' : 'wait_in', { s: pending }) : '';
    if (S.deadlines.verifyBlocked && !pending) {
      delete S.deadlines.verifyBlocked;
      $('#v-submit').disabled = false;
    }
  }
  if (S.view === 'leftovers') {
    const cd = $('#l-countdown');
    cd.textContent = S.deadlines.offer ? t('lo_offer_left', { clock: fmtClock(left('offer')) }) : '';
    if (S.deadlines.offer && left('offer') === 0) {
      delete S.deadlines.offer;
      pollEntry();
    }
  }
  if (S.view === 'confirm') {
    const n = S.deadlines.bookRetry ? left('bookRetry') : 0;
    $('#c-countdown').hidden = !n;
    $('#c-countdown').textContent = n ? t('retry_in', { s: n }) : '';
  }
}

setInterval(renderCountdowns, 1000);
// Back online or back to the tab: ask at once rather than wait for the backoff to run out.
window.addEventListener('online', () => S.offline && poll());
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && S.offline) poll();
});

// ---------------------------------------------------------------- start

initLangSwitch($('#lang-switch'), () => {
  applyStatic();
  render();
});
applyStatic();
window.addEventListener('hashchange', route);
route();
