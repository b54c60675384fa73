// The status page: reads this node's open endpoints and draws them. Refreshes on every event
// of /v1/events (the browser reconnects by itself and resumes with Last-Event-ID), and at most
// once a second besides, so that evidence ages and round-trip times stay current. Read-only.
'use strict';

const POLL_MS = 1000;
const MIN_EVENT_REFRESH_MS = 250;
const EVENTS_KEPT = 40;
// Every event /v1/events sends (src/api/events/diff.rs, KINDS).
const KINDS = ['hello', 'reset', 'verdict', 'opinion', 'round', 'run', 'step', 'maintenance',
  'hold_down', 'alarm', 'fleet_mismatch', 'peer', 'lagged'];

let lastRefresh = 0;
let inFlight = null;
let again = false;

// h('td', {class: 'x'}, 'text', child...): an element; strings become text nodes, never HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function put(id, ...children) {
  const el = document.getElementById(id);
  el.replaceChildren(...children.flat(Infinity));
}

const dash = (v) => (v === null || v === undefined || v === '' ? '–' : String(v));
const upper = (v) => dash(v).toUpperCase();

// An RFC 3339 time as local hh:mm:ss, with "in 4m" / "5s ago" beside it.
function when(t) {
  if (!t) return '–';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return t;
  const secs = Math.round((d.getTime() - Date.now()) / 1000);
  if (secs === 0) return `${d.toLocaleTimeString()} (now)`;
  const span = Math.abs(secs) < 90 ? `${Math.abs(secs)}s`
    : Math.abs(secs) < 5400 ? `${Math.round(Math.abs(secs) / 60)}m`
      : `${Math.round(Math.abs(secs) / 3600)}h`;
  return `${d.toLocaleTimeString()} (${secs >= 0 ? 'in ' + span : span + ' ago'})`;
}

function ms(v) {
  if (v === null || v === undefined) return '–';
  return v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
}

function badge(verdict) {
  return h('span', { class: `badge v-${verdict || 'none'}` }, upper(verdict));
}

function table(head, rows, cls) {
  return h('div', { class: 'scroll' },
    h('table', { class: cls || '' },
      h('thead', {}, h('tr', {}, head.map((x) => h('th', {}, x)))),
      h('tbody', {}, rows)));
}

async function getJson(path) {
  const r = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  const body = await r.json();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${body.error || ''}`);
  return body;
}

function drawAlerts(st) {
  const alerts = [];
  if (st.voting_disabled) alerts.push(`This node stopped voting: ${st.voting_disabled}`);
  if (st.fleet_error) alerts.push(`The fleet file change was not applied: ${st.fleet_error}`);
  if (st.isolation && st.isolation.isolated) {
    alerts.push(`This node is cut off from its site's electorate (heard ${st.isolation.heard} of ${st.isolation.needed} needed)`);
  }
  if ((st.fleet_mismatch || []).length) {
    alerts.push(`Peers running another fleet file: ${st.fleet_mismatch.join(', ')}`);
  }
  put('alerts', alerts.map((a) => h('p', { class: 'alert', role: 'alert' }, a)));
}

function drawSites(st, details) {
  if (!st.sites.length) {
    put('sites', h('p', { class: 'muted' }, 'This node watches no site.'));
    return;
  }
  put('sites', st.sites.map((s) => {
    const d = details[s.id] || {};
    const facts = [
      ['epoch', dash(s.epoch)],
      ['leader', dash(s.leader)],
      ['this node\'s opinion', dash(s.opinion)],
      ['decided', when(s.decided_at)],
      ['majority', d.majority ? `${d.majority} of ${(d.electorate || []).length}` : '–'],
      ['failover', dash(s.failover)],
      ['judged by', s.judge === 'service' ? 'service checks' : 'host answers'],
      ['hold-down until', when(s.hold_down_until)],
      ['maintenance until', when(s.maintenance_until)],
      ['on alarm', dash(s.on_alarm)],
      ['alarms', (s.alarms || []).length
        ? s.alarms.map((a) => h('span', { class: `alarm sev-${a.severity}` },
          `${a.severity} from ${a.source} since ${when(a.set_at)}: ${a.reason || '–'}`))
        : 'none'],
    ];
    return h('article', {
      class: `card site v-${s.verdict}`,
      'data-site': s.id,
      'data-verdict': s.verdict,
      'data-epoch': s.epoch === null ? '' : s.epoch,
    },
    h('h3', {}, `site ${s.id} `, badge(s.verdict)),
    h('dl', {}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
  }));
}

function indicatorCell(iv) {
  if (!iv) return h('td', { class: 'muted' }, '–');
  const state = iv.reachable === true ? 'ok' : iv.reachable === false ? 'bad' : 'unknown';
  const mark = state === 'ok' ? '✓' : state === 'bad' ? '✗' : '?';
  const rtt = iv.last_rtt_us === null || iv.last_rtt_us === undefined ? '–' : ms(iv.last_rtt_us / 1000);
  // What the Indicator's last answer said of its service checks ([[site.check]]), when it
  // runs any: a failing service counts as a miss where the watch judges the service.
  const service = iv.service && iv.service !== 'unchecked' ? ` · service ${iv.service}` : '';
  const cls = iv.service === 'failing' && state === 'ok' ? 'bad' : state;
  return h('td', { class: `cell ${cls}`, title: `last seen ${dash(iv.last_seen_age_ms)} ms ago` },
    h('span', { class: 'mark' }, mark), ` ${iv.misses} miss · ${rtt}${service}`);
}

function drawEvidence(st, details) {
  put('evidence', st.sites.map((s) => {
    const ev = (details[s.id] || {}).evidence || [];
    const indicators = [...new Set(ev.flatMap((p) => p.indicators.map((i) => i.node)))].sort();
    const rows = ev.map((p) => {
      const by = Object.fromEntries(p.indicators.map((i) => [i.node, i]));
      return h('tr', {},
        h('th', { scope: 'row' }, p.pinger),
        h('td', {}, `${p.opinion}${p.suspect ? ' (suspect)' : ''}`),
        h('td', {}, `${p.reported_ms_ago} ms`),
        indicators.map((n) => indicatorCell(by[n])));
    });
    return h('div', { class: 'block' },
      h('h3', {}, `site ${s.id}`),
      ev.length ? table(['Pinger', 'opinion', 'reported', ...indicators], rows, 'matrix')
        : h('p', { class: 'muted' }, 'No evidence reported yet.'));
  }));
}

function drawRounds(st, details) {
  const rows = [];
  for (const s of st.sites) {
    for (const r of (details[s.id] || {}).rounds || []) {
      rows.push(h('tr', {},
        h('td', {}, s.id),
        h('td', {}, upper(r.target)),
        h('td', {}, `${r.epoch} / ${r.attempt}`),
        h('td', { class: `outcome o-${r.outcome}` }, r.outcome),
        h('td', {}, ms(r.duration_ms)),
        h('td', {}, when(r.ended_at)),
        h('td', {}, h('ul', { class: 'answers' }, r.answers.map((a) => h('li', { class: `a-${a.opinion}` },
          `${a.voter}: ${a.opinion}${a.suspect ? ' (suspect)' : ''}${a.promised ? '' : ' (no promise)'}`))))));
    }
  }
  put('rounds', rows.length
    ? table(['site', 'target', 'epoch / attempt', 'outcome', 'took', 'ended', 'answers'], rows)
    : h('p', { class: 'muted' }, 'This node ran no vote round yet.'));
}

function drawRuns(runs) {
  if (!runs.length) {
    put('runs', h('p', { class: 'muted' }, 'No failover run led by this node.'));
    return;
  }
  const longest = Math.max(1, ...runs.flatMap((r) => r.steps.map((s) => s.duration_ms || 0)));
  put('runs', runs.map((r) => h('article', { class: `card run r-${r.state}`, 'data-run': r.id },
    h('h3', {}, `run ${r.id} `, h('span', { class: `badge r-${r.state}` }, r.state)),
    h('p', { class: 'small' }, `site ${r.site} · ${r.trigger} · epoch ${r.epoch} · term ${r.term} · leader ${r.leader}`),
    r.summary ? h('p', { class: 'small' }, r.summary) : null,
    h('ol', { class: 'timeline' }, r.steps.map((s) => {
      const state = s.finished_at === null ? 'running' : s.ok ? 'ok' : 'failed';
      const width = s.duration_ms ? Math.max(2, Math.round(100 * s.duration_ms / longest)) : 2;
      const bar = h('span', { class: `bar b-${state}` });
      // A class per width step: the page's policy allows no inline style.
      bar.classList.add(`w-${Math.min(100, Math.ceil(width / 5) * 5)}`);
      return h('li', { class: `step s-${state}` },
        h('span', { class: 'step-name' }, `${s.step} ${s.name}`),
        h('span', { class: 'step-state' }, state),
        h('span', { class: 'small muted' }, `attempts ${s.attempts} · started ${when(s.started_at)} · ${ms(s.duration_ms)}`),
        bar);
    })))));
}

function drawPeers(st) {
  const mismatch = new Set(st.fleet_mismatch || []);
  put('peers', table(['peer', 'site', 'reachable', 'last seen', 'fleet file'],
    st.peers.map((p) => h('tr', { class: p.reachable ? '' : 'down' },
      h('td', {}, p.node),
      h('td', {}, p.site),
      h('td', { class: p.reachable ? 'ok' : 'bad' }, p.reachable ? 'yes' : 'no'),
      h('td', {}, p.last_seen_ms_ago === null ? 'never' : `${p.last_seen_ms_ago} ms ago`),
      h('td', { class: mismatch.has(p.node) ? 'bad' : '' },
        mismatch.has(p.node) ? `differs (${dash(p.fleet_hash).slice(0, 12)})` : p.fleet_hash ? 'same' : '–')))));
}

async function refresh() {
  if (inFlight) {
    again = true;
    return inFlight;
  }
  lastRefresh = Date.now();
  inFlight = (async () => {
    try {
      const [st, fo] = await Promise.all([getJson('/v1/status'), getJson('/v1/failovers')]);
      const details = {};
      await Promise.all(st.sites.map(async (s) => {
        details[s.id] = await getJson(`/v1/sites/${encodeURIComponent(s.id)}`);
      }));
      document.getElementById('node').textContent = `node ${st.node} · site ${st.site} · ${st.roles.join(', ')}`;
      drawAlerts(st);
      drawSites(st, details);
      drawEvidence(st, details);
      drawRounds(st, details);
      drawRuns(fo.failovers);
      drawPeers(st);
      document.getElementById('updated').textContent = new Date().toLocaleTimeString();
      document.body.dataset.stale = 'false';
    } catch (e) {
      document.body.dataset.stale = 'true';
      document.getElementById('updated').textContent = `failed at ${new Date().toLocaleTimeString()}: ${e.message}`;
    } finally {
      inFlight = null;
    }
  })();
  await inFlight;
  if (again) {
    again = false;
    await refresh();
  }
}

function eventLine(kind, d) {
  switch (kind) {
    case 'verdict': return `site ${d.site}: verdict ${upper(d.verdict)} at epoch ${d.epoch} (leader ${d.leader})`;
    case 'opinion': return `site ${d.site}: this node's opinion ${d.from} → ${d.to}`;
    case 'round': return `site ${d.site}: vote round ${upper(d.target)} epoch ${d.epoch} attempt ${d.attempt}: ${d.outcome}`;
    case 'run': return `run ${d.id}: ${d.was_state ? d.was_state + ' → ' : ''}${d.state} (term ${d.term}, leader ${d.leader})`;
    case 'step': return `run ${d.run} step ${d.index} ${d.name}: attempt ${d.attempts}, ${d.finished_at ? (d.ok ? 'ok' : 'failed') : 'running'}`;
    case 'maintenance': case 'hold_down': return `site ${d.site}: ${kind.replace('_', '-')} ${d.state}${d.until ? ' until ' + when(d.until) : ''}`;
    case 'alarm': return `site ${d.site}: ${d.severity} alarm from ${d.source} ${d.state}${d.reason ? ': ' + d.reason : ''}`;
    case 'fleet_mismatch': return `peer ${d.peer}: fleet file ${d.state === 'appeared' ? 'differs' : 'matches again'}`;
    case 'peer': return `peer ${d.peer} (site ${d.site}) ${d.reachable ? 'reachable' : 'unreachable'}`;
    case 'hello': return `following node ${d.node}`;
    case 'reset': return `resynchronised: ${d.reason}`;
    case 'lagged': return `fell behind: ${d.reason}`;
    default: return kind;
  }
}

function follow() {
  const live = document.getElementById('live');
  const setLive = (state, text) => {
    live.dataset.state = state;
    live.textContent = text;
  };
  const es = new EventSource('/v1/events');
  es.onopen = () => setLive('live', 'live');
  es.onerror = () => setLive('down', 'reconnecting…');
  let timer = null;
  for (const kind of KINDS) {
    es.addEventListener(kind, (m) => {
      let d = {};
      try { d = JSON.parse(m.data); } catch (_) { /* shown as its kind alone */ }
      if (kind !== 'hello') {
        const list = document.getElementById('events');
        list.prepend(h('li', { class: `e-${kind}` }, h('time', { datetime: d.at || '' }, d.at ? new Date(d.at).toLocaleTimeString() : ''), ' ', eventLine(kind, d)));
        while (list.children.length > EVENTS_KEPT) list.lastChild.remove();
      }
      // Events come in bursts (a verdict, its hold-down, an opinion, a run's steps): one
      // refresh for a burst, and at most four a second however busy the node is.
      if (timer === null) {
        const wait = Math.max(50, MIN_EVENT_REFRESH_MS - (Date.now() - lastRefresh));
        timer = setTimeout(() => {
          timer = null;
          refresh();
        }, wait);
      }
    });
  }
}

document.addEventListener('DOMContentLoaded', () => {
  refresh();
  follow();
  setInterval(() => {
    if (Date.now() - lastRefresh >= POLL_MS - 50) refresh();
  }, POLL_MS);
});
