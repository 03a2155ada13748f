// The latch operator console: one page, plain ES module, no build step. Everything it shows
// and does goes through latch's own HTTP API with the session cookie (HttpOnly, set by
// POST /v1/sessions) and, for changes, the session's CSRF token in X-CSRF-Token. The token
// typed at login goes in one Authorization header and is never kept; the CSRF token is kept
// in sessionStorage (this tab only), never in a cookie or a URL.

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const notice = document.getElementById('notice');
const CSRF = 'latch.csrf';

// Events that raise or clear an alarm on the Live page.
const ALARM_KINDS = ['door_forced_open', 'door_held_open', 'reader_tamper', 'reader_offline',
  'offline_decision_disputed'];
const RESTORE_KINDS = ['door_forced_open_restored', 'door_held_open_restored',
  'reader_tamper_restored', 'reader_online'];

let leave = () => {};   // stops what the current page started (streams, timers)

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// h('tag', {attr: value, onclick: fn}, child, ...): an element; text children are text.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else el.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function say(text) { notice.textContent = text || ''; }

function when(text) {
  if (!text) return '';
  const at = new Date(text);
  return Number.isNaN(at.getTime()) ? text : at.toLocaleString();
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = sessionStorage.getItem(CSRF) || '';
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    showLogin('Your session has ended: log in again.');
    throw new ApiError(401, 'unauthorized', 'session ended');
  }
  const type = response.headers.get('content-type') || '';
  const data = type.includes('json') ? await response.json() : await response.text();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return data;
}

// Runs an action, showing its error (if any) instead of throwing.
async function attempt(what, action) {
  try {
    return await action();
  } catch (error) {
    if (error.status !== 401) say(`${what}: ${error.message}`);
    return undefined;
  }
}

function table(headers, rows) {
  return h('table', {},
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', {scope: 'col'}, t)))),
    h('tbody', {}, rows));
}

// --- login -----------------------------------------------------------------------------

function showLogin(message) {
  leave();
  leave = () => {};
  sessionStorage.removeItem(CSRF);
  nav.hidden = true;
  const error = h('p', {class: 'error', role: 'alert', id: 'login-error'}, message || '');
  const token = h('input', {type: 'password', id: 'token', name: 'token', required: true,
    autocomplete: 'off', 'aria-describedby': 'login-error'});
  const form = h('form', {id: 'login', onsubmit: async (e) => {
    e.preventDefault();
    error.textContent = '';
    const response = await fetch('/v1/sessions', {
      method: 'POST', credentials: 'same-origin',
      headers: {Authorization: `Bearer ${token.value.trim()}`},
    }).catch(() => null);
    token.value = '';
    if (!response) { error.textContent = 'The API cannot be reached.'; return; }
    const body = await response.json().catch(() => ({}));
    if (response.status !== 201) {
      error.textContent = (body.error && body.error.message) || `Refused (HTTP ${response.status}).`;
      return;
    }
    sessionStorage.setItem(CSRF, body.csrf_token);
    if (!location.hash || location.hash === '#/login') location.hash = '#/live';
    route();
  }},
  h('label', {for: 'token'}, 'Token (an admin token, or an integrator token for read-only pages)'),
  token,
  h('button', {type: 'submit'}, 'Log in'),
  error);
  main.replaceChildren(h('section', {class: 'login'}, h('h1', {}, 'Log in to latch'), form));
  token.focus();
}

document.getElementById('logout').addEventListener('click', async () => {
  await fetch('/v1/sessions/current', {method: 'DELETE', credentials: 'same-origin'}).catch(() => {});
  showLogin('Logged out.');
});

// --- Live --------------------------------------------------------------------------------

function live() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const site = h('input', {name: 'site', value: params.get('site') || '', placeholder: 'every site'});
  const door = h('input', {name: 'door', value: params.get('door') || '', placeholder: 'door id'});
  const kind = h('input', {name: 'kind', value: params.get('kind') || '', placeholder: 'every kind'});
  const filters = h('form', {class: 'bar', onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (site.value.trim()) q.set('site', site.value.trim());
    if (door.value.trim()) q.set('door', door.value.trim());
    if (kind.value.trim()) q.set('kind', kind.value.trim());
    location.hash = `#/live?${q}`;
  }},
  h('label', {}, 'Site', site), h('label', {}, 'Door', door), h('label', {}, 'Kind', kind),
  h('button', {type: 'submit'}, 'Filter'));
  const alarmsBody = h('tbody', {id: 'alarms'});
  const eventsBody = h('tbody', {id: 'events'});
  const status = h('span', {class: 'badge', id: 'stream-status'}, 'connecting');
  main.replaceChildren(
    h('h1', {}, 'Live'), filters,
    h('h2', {}, 'Open alarms'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Since', 'Alarm', 'Site', 'Door', 'Reader']
      .map((t) => h('th', {scope: 'col'}, t)))), alarmsBody),
    h('h2', {}, 'Events ', status),
    h('table', {}, h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Site', 'Door', 'Holder', 'Decision']
      .map((t) => h('th', {scope: 'col'}, t)))), eventsBody));

  const loadAlarms = () => attempt('Alarms', async () => {
    const q = new URLSearchParams();
    if (params.get('site')) q.set('site', params.get('site'));
    const body = await api('GET', `/v1/alarms?${q}`);
    alarmsBody.replaceChildren(...body.alarms.map((a) => h('tr', {class: 'alarm', 'data-kind': a.kind},
      h('td', {}, when(a.since)), h('td', {}, a.kind), h('td', {}, a.site),
      h('td', {}, a.door_name), h('td', {}, a.reader_id || ''))));
    if (!body.alarms.length) alarmsBody.replaceChildren(h('tr', {}, h('td', {colspan: 5, class: 'muted'}, 'None.')));
  });
  loadAlarms();

  const q = new URLSearchParams();
  if (params.get('site')) q.set('sites', params.get('site'));
  if (params.get('door')) q.set('doors', params.get('door'));
  if (params.get('kind')) q.set('kinds', params.get('kind'));
  const source = new EventSource(`/v1/events/stream?${q}`);
  source.onopen = () => { status.textContent = 'live'; status.className = 'badge good'; };
  source.onerror = () => { status.textContent = 'reconnecting'; status.className = 'badge bad'; };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const alarm = ALARM_KINDS.includes(event.kind);
    eventsBody.prepend(h('tr', {class: alarm ? 'alarm' : '', 'data-id': event.id, 'data-kind': event.kind},
      h('td', {}, when(event.occurred_at)), h('td', {}, event.kind), h('td', {}, event.site || ''),
      h('td', {}, event.door_id || ''), h('td', {}, event.holder_id || ''),
      h('td', {}, event.decision || '')));
    while (eventsBody.children.length > 200) eventsBody.lastChild.remove();
    if (alarm || RESTORE_KINDS.includes(event.kind)) loadAlarms();
  };
  return () => source.close();
}

// --- Doors and readers -------------------------------------------------------------------

function doors() {
  const body = h('tbody', {id: 'readers'});
  main.replaceChildren(h('h1', {}, 'Doors and readers'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Site', 'Door', 'Reader', 'State', 'Last seen',
      'Open alarms', 'Missing seq', ''].map((t) => h('th', {scope: 'col'}, t)))), body));
  const load = () => attempt('Doors', async () => {
    const [doorList, readers, alarms] = await Promise.all([
      api('GET', '/v1/doors'), api('GET', '/v1/readers'),
      api('GET', '/v1/alarms').catch(() => ({alarms: []}))]);
    const byDoor = new Map(doorList.map((d) => [d.id, d]));
    const rows = await Promise.all(readers.map(async (r) => {
      const door = byDoor.get(r.door_id) || {site: '?', name: r.door_id};
      const open = alarms.alarms.filter((a) => a.door_id === r.door_id);
      const gaps = await api('GET', `/v1/readers/${r.id}/gaps`).catch(() => null);
      const state = !r.enabled ? h('span', {class: 'badge'}, 'disabled')
        : r.online ? h('span', {class: 'badge good'}, 'online') : h('span', {class: 'badge bad'}, 'offline');
      const disable = r.enabled ? h('button', {type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Disable the reader "${r.name}" at ${door.name}? Its key stops working.`)) return;
        await attempt('Disable', () => api('POST', `/v1/readers/${r.id}/disable`));
        load();
      }}, 'Disable') : '';
      return h('tr', {class: open.length ? 'alarm' : '', 'data-reader': r.id},
        h('td', {}, door.site), h('td', {}, door.name), h('td', {}, r.name), h('td', {}, state),
        h('td', {}, when(r.last_seen_at) || 'never'),
        h('td', {}, open.map((a) => a.kind).join(', ')),
        h('td', {}, gaps ? String(gaps.missing) : ''), h('td', {}, disable));
    }));
    body.replaceChildren(...rows);
  });
  load();
  const timer = setInterval(load, 15000);
  return () => clearInterval(timer);
}

// --- Roll-call ---------------------------------------------------------------------------

function rollCall() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const site = h('input', {name: 'site', id: 'roll-site', value: params.get('site') || '', required: true,
    pattern: '[a-z0-9][a-z0-9_-]{0,62}'});
  const heading = h('h2', {}, '');
  const body = h('tbody', {id: 'people'});
  const csv = h('a', {id: 'csv', hidden: true}, 'Export CSV');
  main.replaceChildren(h('h1', {}, 'Roll-call'),
    h('form', {class: 'bar', onsubmit: (e) => {
      e.preventDefault();
      location.hash = `#/roll-call?site=${encodeURIComponent(site.value.trim())}`;
    }}, h('label', {}, 'Site', site), h('button', {type: 'submit'}, 'Show'), csv),
    heading,
    h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Card', 'Door', 'Since', 'Safe', '']
      .map((t) => h('th', {scope: 'col'}, t)))), body));
  const chosen = params.get('site');
  if (!chosen) return () => {};
  csv.href = `/v1/sites/${encodeURIComponent(chosen)}/presence.csv`;
  csv.hidden = false;
  const load = () => attempt('Roll-call', async () => {
    const roll = await api('GET', `/v1/sites/${encodeURIComponent(chosen)}/presence`);
    heading.textContent = `${roll.count} on site at ${roll.site}, ${roll.safe} marked safe`;
    heading.id = 'roll-count';
    body.replaceChildren(...roll.people.map((p) => h('tr', {class: p.marked_safe_at ? 'safe' : '', 'data-holder': p.holder_id},
      h('td', {}, p.name), h('td', {}, p.card_id), h('td', {}, p.door_name), h('td', {}, when(p.since)),
      h('td', {}, p.marked_safe_at ? `safe ${when(p.marked_safe_at)}` : ''),
      h('td', {}, p.marked_safe_at ? '' : h('button', {type: 'button', class: 'mark-safe', onclick: async () => {
        await attempt('Mark safe', () => api('POST',
          `/v1/sites/${encodeURIComponent(chosen)}/presence/${p.holder_id}/safe`));
        load();
      }}, 'Mark safe')))));
  });
  load();
  // Live: people checking in and out, and marks made from other desks.
  const q = new URLSearchParams({sites: chosen, kinds: 'check_in,check_out,marked_safe'});
  const source = new EventSource(`/v1/events/stream?${q}`);
  let first = true;
  source.onmessage = () => load();
  source.onopen = () => { if (!first) load(); first = false; };
  return () => source.close();
}

// --- Dead letters ------------------------------------------------------------------------

function deadLetters() {
  const sink = h('input', {name: 'sink', id: 'dl-sink', placeholder: 'every sink'});
  const reason = h('select', {name: 'reason_class', id: 'dl-reason'},
    h('option', {value: ''}, 'every reason'), h('option', {value: 'permanent'}, 'permanent'),
    h('option', {value: 'exhausted'}, 'exhausted'), h('option', {value: 'malformed'}, 'malformed'));
  const body = h('tbody', {id: 'dead-letters'});
  const detail = h('section', {id: 'dl-detail'});
  const outcome = h('section', {id: 'dl-outcome', 'aria-live': 'polite'});
  const replay = h('button', {type: 'button', id: 'dl-replay', disabled: true}, 'Replay');
  let dryRunOf = null;     // the selection the last dry run was for
  const selection = () => {
    const ids = [...body.querySelectorAll('input[type=checkbox]:checked')].map((c) => c.value);
    const filters = {};
    if (sink.value.trim()) filters.sink = sink.value.trim();
    if (reason.value) filters.reason_class = reason.value;
    return ids.length ? {ids, ...filters} : {all: true, ...filters};
  };
  const show = (result, dry) => {
    outcome.replaceChildren(
      h('h2', {}, dry ? 'Dry run: nothing changed' : 'Replayed'),
      h('p', {id: 'dl-summary'}, `${result.replayed.length} ${dry ? 'would be replayed' : 'replayed'}, ${result.refused.length} refused by the stale-replay guard`
        + (result.remaining ? `, ${result.remaining} more to do` : '')),
      result.refused.length ? table(['Event', 'Sink', 'Why refused'], result.refused.map((r) =>
        h('tr', {class: 'refused'}, h('td', {}, r.event_id || ''), h('td', {}, r.sink), h('td', {}, r.reason)))) : '');
  };
  const dryRun = h('button', {type: 'button', class: 'secondary', id: 'dl-dry-run', onclick: async () => {
    const chosen = selection();
    const result = await attempt('Dry run', () => api('POST', '/v1/dead-letters:replay', {...chosen, dry_run: true}));
    if (!result) return;
    show(result, true);
    dryRunOf = JSON.stringify(chosen);
    replay.disabled = result.replayed.length === 0;
  }}, 'Dry run');
  replay.addEventListener('click', async () => {
    const chosen = selection();
    if (JSON.stringify(chosen) !== dryRunOf) { say('The selection changed: run a dry run first.'); replay.disabled = true; return; }
    const result = await attempt('Replay', () => api('POST', '/v1/dead-letters:replay', chosen));
    replay.disabled = true;
    dryRunOf = null;
    if (result) { show(result, false); load(); }
  });
  const purge = h('button', {type: 'button', class: 'danger', id: 'dl-purge', onclick: async () => {
    const chosen = selection();
    if (!chosen.ids) { say('Select the dead letters to purge.'); return; }
    if (!confirm(`Delete ${chosen.ids.length} dead letter(s) for good?`)) return;
    const result = await attempt('Purge', () => api('POST', '/v1/dead-letters:purge', chosen));
    if (result) { say(`Purged ${result.purged.length} dead letter(s).`); load(); }
  }}, 'Purge selected');
  main.replaceChildren(h('h1', {}, 'Dead letters'),
    h('form', {class: 'bar', onsubmit: (e) => { e.preventDefault(); load(); }},
      h('label', {}, 'Sink or endpoint', sink), h('label', {}, 'Reason', reason),
      h('button', {type: 'submit', class: 'secondary'}, 'Filter')),
    h('p', {class: 'muted'}, 'Select some, or none for every dead letter the filters match. A replay needs a dry run of the same selection first.'),
    h('div', {class: 'bar'}, dryRun, replay, purge),
    outcome,
    h('table', {}, h('thead', {}, h('tr', {}, ['', 'Dead-lettered', 'Sink', 'Kind', 'Event', 'Reason', 'Failures', '']
      .map((t) => h('th', {scope: 'col'}, t)))), body),
    detail);
  const load = () => attempt('Dead letters', async () => {
    const q = new URLSearchParams();
    if (sink.value.trim()) q.set('sink', sink.value.trim());
    if (reason.value) q.set('reason_class', reason.value);
    const list = await api('GET', `/v1/dead-letters?${q}`);
    body.replaceChildren(...list.items.map((d) => h('tr', {'data-event': d.event_id || ''},
      h('td', {}, d.event_id ? h('input', {type: 'checkbox', value: d.event_id, 'aria-label': `select ${d.event_id}`,
        onchange: () => { replay.disabled = true; }}) : ''),
      h('td', {}, when(d.at)), h('td', {}, d.sink), h('td', {}, d.kind || ''), h('td', {}, d.event_id || ''),
      h('td', {}, `${d.reason_class}: ${d.reason}`), h('td', {}, String(d.failures)),
      h('td', {}, d.event_id ? h('button', {type: 'button', class: 'secondary', onclick: () => showOne(d.event_id)}, 'Show') : ''))));
    if (!list.items.length) body.replaceChildren(h('tr', {}, h('td', {colspan: 8, class: 'muted'}, 'No dead letters.')));
  });
  const showOne = (id) => attempt('Dead letter', async () => {
    const found = await api('GET', `/v1/dead-letters/${id}`);
    detail.replaceChildren(...found.map((d) => h('article', {},
      h('h2', {}, `${d.kind || 'event'} ${d.event_id} at ${d.sink}`),
      table(['Failed', 'Class', 'Reason', 'Attempts', 'Status'], d.failures_recorded.map((f) => h('tr', {},
        h('td', {}, when(f.at)), h('td', {}, f.reason_class), h('td', {}, f.reason),
        h('td', {}, String(f.attempts)), h('td', {}, f.status ? String(f.status) : '')))),
      h('h2', {}, 'Headers'), h('pre', {}, d.headers.map((x) => `${x.name}: ${x.value}`).join('\n')),
      h('h2', {}, 'Envelope'), h('pre', {}, JSON.stringify(d.envelope, null, 2)))));
  });
  load();
  return () => {};
}

// --- Pipeline ----------------------------------------------------------------------------

function pipeline() {
  const box = h('div', {class: 'numbers', id: 'pipeline'});
  main.replaceChildren(h('h1', {}, 'Pipeline'), box);
  const number = (label, value, bad) => h('div', {class: bad ? 'alarm' : ''}, h('b', {}, value), label);
  const load = () => attempt('Pipeline', async () => {
    const p = await api('GET', '/v1/pipeline');
    const items = [
      number('outbox rows pending', p.outbox.pending_rows, p.outbox.oldest_pending_age_seconds > 60),
      number('oldest pending row (s)', p.outbox.oldest_pending_age_seconds.toFixed(1), p.outbox.oldest_pending_age_seconds > 60),
      number('dead letters', p.dead_letters ?? '?', p.dead_letters > 0),
      number('webhook endpoints enabled', p.webhook_endpoints.enabled),
      number('endpoints failing', p.webhook_endpoints.failing, p.webhook_endpoints.failing > 0),
      number('endpoint breakers open', p.webhook_endpoints.breaker_open, p.webhook_endpoints.breaker_open > 0),
      number('endpoints disabled', p.webhook_endpoints.disabled),
    ];
    if (p.stream) items.push(number(`events in ${p.stream.name}`, p.stream.messages));
    for (const s of p.sinks) items.push(number(`${s.sink}: to deliver / in flight`, `${s.pending} / ${s.in_flight}`, s.pending > 10000));
    if (p.nats_error) items.push(h('div', {class: 'error'}, p.nats_error));
    box.replaceChildren(...items);
  });
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}

// --- Webhooks ----------------------------------------------------------------------------

function webhooks() {
  const body = h('tbody', {id: 'endpoints'});
  const detail = h('section', {id: 'wh-detail'});
  main.replaceChildren(h('h1', {}, 'Webhook endpoints'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Description', 'URL', 'Kinds', 'Sites', 'State', '']
      .map((t) => h('th', {scope: 'col'}, t)))), body), detail);
  const open = (e) => attempt('Endpoint', async () => {
    const [stats, attempts] = await Promise.all([
      api('GET', `/v1/webhooks/endpoints/${e.id}/stats`),
      api('GET', `/v1/webhooks/endpoints/${e.id}/attempts?limit=20`)]);
    const since = h('input', {type: 'datetime-local', name: 'since', required: true});
    const secret = h('pre', {id: 'wh-secret', hidden: true});
    detail.replaceChildren(h('h2', {}, e.description || e.url),
      h('div', {class: 'numbers'},
        ...[['delivered', stats.delivered], ['failed calls', stats.failed], ['dead-lettered', stats.dead_lettered],
          ['pending', stats.pending ?? '?'], ['oldest pending (s)', stats.oldest_pending_age_secs?.toFixed(1) ?? '–'],
          ['breaker', stats.breaker]].map(([label, value]) => h('div', {}, h('b', {}, value), label))),
      h('div', {class: 'bar'},
        h('button', {type: 'button', class: 'secondary', id: 'wh-rotate', onclick: async () => {
          if (!confirm('Give this endpoint a new signing secret? The current one keeps signing for a day.')) return;
          const rotated = await attempt('Rotate', () => api('POST', `/v1/webhooks/endpoints/${e.id}/secret:rotate`));
          if (rotated) { secret.textContent = `New secret (shown once): ${rotated.secret}`; secret.hidden = false; }
        }}, 'Rotate secret'),
        h('form', {class: 'bar', onsubmit: async (ev) => {
          ev.preventDefault();
          const at = new Date(since.value);
          const done = await attempt('Recover', () => api('POST', `/v1/webhooks/endpoints/${e.id}/recover`, {since: at.toISOString()}));
          if (done) say('Recovery started: events since then are delivered again.');
        }}, h('label', {}, 'Deliver again since', since), h('button', {type: 'submit'}, 'Recover'))),
      secret,
      h('h2', {}, 'Latest attempts'),
      table(['Time', 'Event', 'Outcome', 'Status / error', 'Latency ms', 'Answer'], attempts.items.map((a) =>
        h('tr', {class: a.outcome === 'delivered' ? '' : 'alarm'}, h('td', {}, when(a.attempted_at)), h('td', {}, a.event_id),
          h('td', {}, a.outcome), h('td', {}, a.status ?? a.error ?? ''), h('td', {}, String(a.latency_ms)),
          h('td', {}, a.response || '')))));
  });
  attempt('Endpoints', async () => {
    const endpoints = await api('GET', '/v1/webhooks/endpoints');
    body.replaceChildren(...endpoints.map((e) => h('tr', {'data-endpoint': e.id},
      h('td', {}, e.description), h('td', {}, e.url), h('td', {}, (e.kinds || ['every kind']).join(', ')),
      h('td', {}, (e.sites || ['every site']).join(', ')),
      h('td', {}, e.disabled_at ? h('span', {class: 'badge bad'}, `disabled: ${e.disabled_reason || ''}`)
        : e.failing_since ? h('span', {class: 'badge bad'}, `failing since ${when(e.failing_since)}`)
          : h('span', {class: 'badge good'}, 'delivering')),
      h('td', {}, h('button', {type: 'button', class: 'secondary', onclick: () => open(e)}, 'Open')))));
    if (!endpoints.length) body.replaceChildren(h('tr', {}, h('td', {colspan: 6, class: 'muted'}, 'No endpoints.')));
  });
  return () => {};
}

// --- routing -----------------------------------------------------------------------------

const PAGES = {'/live': live, '/doors': doors, '/roll-call': rollCall, '/dead-letters': deadLetters,
  '/pipeline': pipeline, '/webhooks': webhooks};

function route() {
  if (!sessionStorage.getItem(CSRF)) { showLogin(); return; }
  const path = (location.hash.slice(1) || '/live').split('?')[0];
  const page = PAGES[path] || live;
  leave();
  say('');
  nav.hidden = false;
  for (const link of nav.querySelectorAll('a')) {
    if (link.getAttribute('href') === `#${path}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  leave = page() || (() => {});
  main.focus();
}

window.addEventListener('hashchange', route);
route();
