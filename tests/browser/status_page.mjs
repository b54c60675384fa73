// The status page in a real browser: Debian's chromium, headless, driven by playwright-core.
//
// Starts the three-site fast fleet as eight `quorate run` processes on 127.235.0.0/16 (its own
// range: no clash with a demo or the Rust tests), with a two-step exec plan on the watch of
// site a. Opens the page of node b1, checks that every site the node watches shows up, then
// stops every node of site a (SIGKILL: a power cut) and checks that the page shows site a DOWN,
// at the epoch REST reports, within 2 s of REST saying so, without a reload and without a
// console error; then that the failover run shows with its steps as REST lists them (when no
// voter knows a run of the verdict, it says so and leaves the timeline unchecked). Saves screenshots under
// target/artifacts/ (desktop and phone width) and prints their paths. Stops every process it
// started on every way out; the whole run is bounded.
//
// Run through tests/browser.sh (it installs playwright-core and builds quorate). Env:
//   QUORATE_BIN          the quorate binary (default target/debug/quorate)
//   PLAYWRIGHT_CORE      path of the installed playwright-core module
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   DOCS_SCREENSHOT      also save the top of the page here (960 px wide), for the README
//   PIDS_FILE            append the pid of every node started here to this file
//   WORK_DIR             an empty directory for the fleet's files (default: a new temporary
//                        one); removed at the end

import { spawn, execFileSync } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdtempSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(new URL('../..', import.meta.url).pathname);
const bin = process.env.QUORATE_BIN || join(repo, 'target/debug/quorate');
const { chromium } = await import(process.env.PLAYWRIGHT_CORE || 'playwright-core');
const OCTET = 235;
const PAGE_LAG_MS = 2000;
const TOKEN = 'status-page-test-token';
const TOTAL_MS = 120 * 1000;
const artifacts = join(repo, 'target/artifacts');
mkdirSync(artifacts, { recursive: true });

const work = process.env.WORK_DIR || mkdtempSync(join(tmpdir(), 'quorate-browser-'));
const profile = join(work, 'chromium-profile');
const nodes = new Map(); // id -> child process
let browser = null;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(msg) {
  throw new Error(msg);
}

async function stopNode(id, signal) {
  const child = nodes.get(id);
  if (!child) return;
  nodes.delete(id);
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(child.pid, signal); } catch (_) { return; }
  await Promise.race([exited, sleep(5000)]);
  try { process.kill(child.pid, 'SIGKILL'); } catch (_) { /* gone */ }
}

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  await Promise.all([...nodes.keys()].map((id) => stopNode(id, 'SIGTERM')));
  rmSync(work, { recursive: true, force: true });
}

const overall = setTimeout(async () => {
  console.error(`FAIL: the browser test did not finish within ${TOTAL_MS / 1000} s`);
  await cleanup();
  process.exit(1);
}, TOTAL_MS);

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await cleanup();
    process.exit(130);
  });
}

async function getJson(url) {
  const r = await fetch(url, { signal: AbortSignal.timeout(3000) });
  if (!r.ok) fail(`${url}: ${r.status}`);
  return r.json();
}

async function eventually(what, probe, ms = 30000) {
  const deadline = Date.now() + ms;
  let last = null;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (e) {
      last = e.message;
    }
    await sleep(100);
  }
  fail(`no ${what} within ${ms / 1000} s${last ? ` (last: ${last})` : ''}`);
}

// The fast fleet of config/, on its own loopback range, with a plan for site a: two exec
// steps that take a moment each, so that the page has a step timeline to show.
function fleetFile() {
  const text = readFileSync(join(repo, 'config/three-sites-fast.toml'), 'utf8')
    .replaceAll('"127.0.', `"127.${OCTET}.`);
  const watchA = 'site = "a"\nby   = ["b", "c"]\n';
  if (!text.includes(watchA)) fail('config/three-sites-fast.toml changed: no watch of a to extend');
  const plan = `takeover_delay_s = 0.5
self_fence_after_s = 0.2

[[watch.pipeline.step]]
name = "fence-a"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "sleep 0.4; echo fenced a at term $QUORATE_EPOCH"]

[[watch.pipeline.step]]
name = "promote-b"
kind = "exec"
timeout_s = 5
argv = ["/bin/sh", "-c", "sleep 0.8; echo promoted b at term $QUORATE_EPOCH"]
`;
  // The operator token, so that the test may raise an alarm of a (its watch keeps the
  // default on_alarm = "notify": shown, no run).
  writeFileSync(join(work, 'api.token'), `${TOKEN}\n`);
  const api = `\n[api]\ntoken_file = '${join(work, 'api.token')}'\n`;
  return text.replace(watchA, watchA + plan) + api;
}

// Certificates, then one `quorate run` per node; returns each node's site and REST address.
async function startFleet() {
  const fleet = join(work, 'fleet.toml');
  writeFileSync(fleet, fleetFile());
  const certs = join(work, 'certs');
  execFileSync(bin, ['certs', 'init', '--fleet', fleet, '--ca', join(work, 'ca'), '--dir', certs],
    { stdio: ['ignore', 'ignore', 'inherit'], timeout: 30000 });
  const apis = {};
  for (const m of readFileSync(fleet, 'utf8').matchAll(/^\[\[node\]\]\s*\nid\s*=\s*"([^"]+)"\s*\nsite\s*=\s*"([^"]+)"[\s\S]*?^api\s*=\s*"([^"]+)"/gm)) {
    apis[m[1]] = { site: m[2], api: m[3] };
  }
  if (Object.keys(apis).length !== 8) fail(`expected 8 nodes in the fleet file, found ${JSON.stringify(apis)}`);
  for (const id of Object.keys(apis)) {
    const log = openSync(join(work, `${id}.log`), 'w');
    const child = spawn(bin, ['run', '--fleet', fleet, '--node', id, '--certs', certs,
      '--data', join(work, 'data', id)], { stdio: ['ignore', log, log] });
    nodes.set(id, child);
    // For tests/browser.sh, which stops them should this script itself be killed.
    if (process.env.PIDS_FILE) appendFileSync(process.env.PIDS_FILE, `${child.pid}\n`);
  }
  return apis;
}

async function main() {
  const apis = await startFleet();
  const b1 = apis.b1 || fail(`no b1 in the fleet: ${JSON.stringify(apis)}`);
  const base = `http://${b1.api}`;
  await eventually('fleet in which b1 hears every peer', async () => {
    const st = await getJson(`${base}/v1/status`);
    return st.peers.length === 7 && st.peers.every((p) => p.reachable);
  });
  // A node arms the failover of a site only once it has seen it up (a fleet being brought up
  // is no disaster): wait until every voter of a's electorate sees it up.
  await eventually('opinion UP of site a at b1, b2, c1 and c2', async () => {
    const views = await Promise.all(['b1', 'b2', 'c1', 'c2'].map((id) => getJson(`http://${apis[id].api}/v1/sites/a`)));
    return views.every((v) => v.opinion === 'up');
  });
  console.log(`fleet up: page of b1 at ${base}/`);

  // A fresh profile; the flags keep Chromium off the network (MACHINE-NOTES.md).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  let navigations = 0;
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations += 1; });

  const resp = await page.goto(`${base}/`, { waitUntil: 'load', timeout: 15000 });
  const csp = resp.headers()['content-security-policy'] || fail('the page has no Content-Security-Policy');
  if (!csp.includes("default-src 'none'")) fail(`a lax Content-Security-Policy: ${csp}`);

  // Every site this node watches shows up.
  const status = await getJson(`${base}/v1/status`);
  const sites = status.sites.map((s) => s.id);
  if (!sites.includes('a')) fail(`b1 does not watch site a: ${sites}`);
  for (const id of sites) {
    await page.waitForSelector(`[data-site="${id}"]`, { timeout: 10000 });
  }
  await page.waitForSelector('#live[data-state="live"]', { timeout: 10000 });
  const before = await getJson(`${base}/v1/sites/a`);
  if (before.verdict === 'down') fail('site a is DOWN before its blackout');
  console.log(`page shows sites ${sites.join(', ')}; site a ${before.verdict}`);

  // A fire alarm of a raised at b1: the card of a and the event list show it, live.
  const raised = await fetch(`${base}/v1/alarms`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ site: 'a', source: 'fire-panel', severity: 'critical', reason: 'smoke in hall 2' }),
    signal: AbortSignal.timeout(3000),
  });
  if (raised.status !== 200) fail(`POST /v1/alarms: ${raised.status} ${await raised.text()}`);
  await page.waitForSelector('[data-site="a"] .alarm.sev-critical', { timeout: PAGE_LAG_MS + 1000 })
    .catch(() => fail('the card of a does not show the raised alarm'));
  const alarmText = await page.textContent('[data-site="a"] .alarm.sev-critical');
  if (!alarmText.includes('fire-panel') || !alarmText.includes('smoke in hall 2')) fail(`the alarm reads ${alarmText}`);
  await page.waitForSelector('#events li.e-alarm', { timeout: PAGE_LAG_MS + 1000 })
    .catch(() => fail('the event list does not show the alarm'));
  console.log(`page: alarm of a shown (${alarmText.trim()})`);

  // The page notes the moment its card for a turns DOWN; a marker shows it was never reloaded.
  await page.evaluate(() => {
    window.__sameDocument = true;
    const seen = () => {
      const card = document.querySelector('[data-site="a"]');
      if (card && card.dataset.verdict === 'down' && !window.__downAt) {
        window.__downAt = Date.now();
        window.__downEpoch = card.dataset.epoch;
      }
    };
    new MutationObserver(seen).observe(document.getElementById('sites'), { subtree: true, childList: true, attributes: true });
    seen();
  });
  const navigationsBefore = navigations;

  // Power cut of site a; REST's moment is polled every 50 ms from here.
  await Promise.all(Object.keys(apis).filter((id) => apis[id].site === 'a').map((id) => stopNode(id, 'SIGKILL')));
  console.log('site a blacked out: a1, a2, a3 killed');
  let restDown = null;
  const deadline = Date.now() + 30000;
  while (!restDown && Date.now() < deadline) {
    const a = await getJson(`${base}/v1/sites/a`);
    if (a.verdict === 'down') restDown = { at: Date.now(), epoch: a.epoch };
    else await sleep(50);
  }
  restDown || fail('REST never showed site a DOWN');
  console.log(`REST: site a DOWN at epoch ${restDown.epoch}`);

  await page.waitForFunction(() => window.__downAt, null, { timeout: PAGE_LAG_MS + 3000 }).catch(() => {});
  const seen = await page.evaluate(() => ({ at: window.__downAt, epoch: window.__downEpoch, same: window.__sameDocument }));
  if (!seen.at) fail('the page never showed site a DOWN');
  const lag = seen.at - restDown.at;
  console.log(`page: site a DOWN at epoch ${seen.epoch}, ${lag} ms after REST (limit ${PAGE_LAG_MS} ms)`);
  if (lag > PAGE_LAG_MS) fail(`the page showed DOWN ${lag} ms after REST`);
  if (String(seen.epoch) !== String(restDown.epoch)) fail(`the page shows epoch ${seen.epoch}, REST ${restDown.epoch}`);
  if (!seen.same || navigations !== navigationsBefore) fail('the page was reloaded');
  const verdictText = await page.textContent('[data-site="a"] .badge');
  if (verdictText.trim() !== 'DOWN') fail(`site a's badge reads ${verdictText}`);
  await page.waitForSelector('#events li.e-verdict', { timeout: 5000 });

  // The failover run of the verdict, its two steps done, on the page as REST has it. When no
  // voter of the electorate knows a run of the verdict at all, the page has nothing to show:
  // that is said (it is the decision core's business, not the page's) and not failed here.
  const run = `a-${restDown.epoch}`;
  const runAtRest = await eventually(`succeeded run ${run} at b1 (REST)`, async () => {
    const f = await getJson(`${base}/v1/failovers`);
    return f.failovers.find((r) => r.id === run && r.state === 'succeeded') || null;
  }, 20000).catch(() => null);
  if (runAtRest) {
    await page.waitForSelector(`[data-run="${run}"].r-succeeded`, { timeout: PAGE_LAG_MS + 1000 })
      .catch(() => fail(`REST lists run ${run} succeeded, the page does not show it`));
    const steps = await page.$$eval(`[data-run="${run}"] .step.s-ok`, (els) => els.length);
    if (steps !== runAtRest.steps.length) fail(`run ${run} shows ${steps} finished steps, REST ${runAtRest.steps.length}`);
    console.log(`page: run ${run} succeeded with its ${steps} steps`);
  } else {
    const seen = {};
    for (const id of ['b1', 'b2', 'c1', 'c2']) {
      seen[id] = await getJson(`http://${apis[id].api}/v1/failovers`)
        .then((f) => f.failovers.map((r) => `${r.id} ${r.state} leader ${r.leader}`)).catch((e) => e.message);
    }
    console.log(`NOTE: no succeeded run ${run} at b1 within 20 s (runs known: ${JSON.stringify(seen)}); the run timeline was not checked`);
  }
  await sleep(500);
  const desktop = join(artifacts, 'status-page.png');
  await page.screenshot({ path: desktop, fullPage: true });
  // The picture in the README (tests/browser.sh --docs): the top of the page, small.
  if (process.env.DOCS_SCREENSHOT) {
    await page.setViewportSize({ width: 960, height: 1000 });
    await sleep(300);
    await page.screenshot({ path: process.env.DOCS_SCREENSHOT });
    console.log(`docs screenshot: ${process.env.DOCS_SCREENSHOT}`);
  }
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) fail(`at phone width the page is ${overflow} px wider than the screen`);
  const phone = join(artifacts, 'status-page-phone.png');
  await page.screenshot({ path: phone, fullPage: false });
  for (const p of [desktop, phone]) console.log(`screenshot: ${p} (${statSync(p).size} bytes)`);

  if (errors.length) fail(`the console shows errors:\n  ${errors.join('\n  ')}`);
  console.log('console: no errors');
}

let code = 0;
try {
  await main();
  console.log('status page: 1 passed, 0 failed');
} catch (e) {
  console.error(`FAIL: ${e.message}`);
  try {
    const log = readFileSync(join(work, 'b1.log'), 'utf8').split('\n').slice(-30).join('\n');
    console.error(`last lines of b1's log:\n${log}`);
    const keep = join(artifacts, 'browser-logs');
    rmSync(keep, { recursive: true, force: true });
    mkdirSync(keep, { recursive: true });
    for (const id of ['a1', 'a2', 'a3', 'b1', 'b2', 'b3', 'c1', 'c2']) {
      copyFileSync(join(work, `${id}.log`), join(keep, `${id}.log`));
    }
    console.error(`every node's log: ${keep}`);
  } catch (_) { /* no log */ }
  console.log('status page: 0 passed, 1 failed');
  code = 1;
} finally {
  clearTimeout(overall);
  await cleanup();
}
process.exit(code);
