// The status page in a real browser: Debian's chromium, headless, driven by playwright-core.
//
// Starts `quorate demo --fast --blackout a --at N` (the whole fleet on loopback in one
// process; it stops every node of site a N seconds in), opens the page of node b1, checks that
// every site the node watches shows up, then waits for the blackout and checks that the page
// shows site a DOWN, at the epoch REST reports, within 2 s of REST saying so, without a reload
// and without a console error. Saves screenshots under target/artifacts/ (desktop and phone
// width) and prints their paths. Kills the demo and the browser on every way out; the whole run
// is bounded.
//
// Run through tests/browser.sh (it installs playwright-core and builds quorate). Env:
//   QUORATE_BIN          the quorate binary (default target/debug/quorate)
//   PLAYWRIGHT_CORE      path of the installed playwright-core module
//   BLACKOUT_AT          seconds from the demo's start to the blackout (default 15)
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   DOCS_SCREENSHOT      also save the top of the page here (960 px wide), for the README

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const repo = resolve(new URL('../..', import.meta.url).pathname);
const bin = process.env.QUORATE_BIN || join(repo, 'target/debug/quorate');
const { chromium } = await import(process.env.PLAYWRIGHT_CORE || 'playwright-core');
const blackoutAt = Number(process.env.BLACKOUT_AT || 15);
const PAGE_LAG_MS = 2000;
const TOTAL_MS = (blackoutAt + 60) * 1000;
const artifacts = join(repo, 'target/artifacts');
mkdirSync(artifacts, { recursive: true });

let demo = null;
let browser = null;
const profile = mkdtempSync(join(tmpdir(), 'quorate-chromium-'));

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  if (demo && demo.exitCode === null) {
    // The demo runs in its own process group: stop it and anything it started.
    try { process.kill(-demo.pid, 'SIGINT'); } catch (_) { /* gone */ }
    await Promise.race([new Promise((r) => demo.once('exit', r)), sleep(5000)]);
    try { process.kill(-demo.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
  rmSync(profile, { recursive: true, force: true });
}

function fail(msg) {
  throw new Error(msg);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

// Starts the demo and returns the REST address of each node, as it prints them.
function startDemo() {
  return new Promise((resolveApis, reject) => {
    demo = spawn(bin, ['demo', '--fast', '--blackout', 'a', '--at', String(blackoutAt)], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const apis = {};
    let out = '';
    demo.stdout.on('data', (b) => {
      out += b;
      for (const m of out.matchAll(/^\s+(\S+)\s+site (\S+)\s+\S+\s+http:\/\/(\S+)\/v1\/status$/gm)) {
        apis[m[1]] = { site: m[2], api: m[3] };
      }
      if (/^blackout of site a in/m.test(out)) resolveApis(apis);
    });
    demo.stderr.on('data', (b) => process.stderr.write(`demo: ${b}`));
    demo.once('exit', (code) => reject(new Error(`quorate demo exited (${code}) early:\n${out}`)));
  });
}

async function main() {
  const started = Date.now();
  const apis = await startDemo();
  const b1 = apis.b1 || fail(`the demo printed no b1: ${JSON.stringify(apis)}`);
  const base = `http://${b1.api}`;
  console.log(`demo up: page of b1 at ${base}/`);

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
  if (before.verdict === 'down') {
    fail(`site a was already DOWN before the page was checked (${(Date.now() - started) / 1000} s in); raise BLACKOUT_AT`);
  }
  console.log(`page shows sites ${sites.join(', ')}; site a ${before.verdict}; waiting for the blackout`);

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

  // REST's moment: polled every 50 ms from here.
  let restDown = null;
  const deadline = Date.now() + (blackoutAt + 30) * 1000;
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

  // Let the rounds and evidence settle for the picture.
  await sleep(1500);
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
  console.log('status page: 0 passed, 1 failed');
  code = 1;
} finally {
  clearTimeout(overall);
  await cleanup();
}
process.exit(code);
