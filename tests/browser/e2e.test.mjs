// End-to-end test of the wschat browser client against the real server.
// Run with tests/browser/run.sh (or `node --test e2e.test.mjs` once the
// server is built and Chromium is installed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const WWW = path.join(ROOT, 'www');
const SERVER_BIN = process.env.WSCHAT_BIN || path.join(ROOT, 'target', 'release', 'wschat');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const WAIT = 10_000;            // default for a single visible-behaviour wait
const RECONNECT_WAIT = 25_000;  // backoff is capped at ~12 s
const TEST_TIMEOUT = 60_000;

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 360, height: 740 };

let browser;
let server;        // { proc, port, log }
let port;
let baseUrl;
let shotDir;
let serverLog;     // the servers' stdout and stderr, for a look after a failure
const contexts = new Set();

// ------------------------------------------------------------------ server

function startServer(addr) {
  return new Promise((resolve, reject) => {
    const args = ['--addr', addr, '--www', WWW];
    const proc = SERVER_BIN.endsWith('.mjs') || SERVER_BIN.endsWith('.js')
      ? spawn(process.execPath, [SERVER_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const state = { proc, port: 0, log: '' };
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        try { proc.kill('SIGKILL'); } catch { /* already gone */ }
        reject(err);
      } else {
        resolve(state);
      }
    };
    const onData = (chunk) => {
      state.log += chunk.toString();
      if (serverLog) fs.appendFileSync(serverLog, chunk);
      if (state.log.length > 200_000) state.log = state.log.slice(-100_000);
      const m = /Listening on http:\/\/[^\s/]*:(\d+)\//.exec(state.log);
      if (m && !done) {
        state.port = Number(m[1]);
        finish();
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => finish(new Error(`cannot start ${SERVER_BIN}: ${e.message}`)));
    proc.on('exit', (code, signal) => {
      state.exited = true;
      finish(new Error(`server exited early (code ${code}, signal ${signal}):\n${state.log}`));
    });
    const timer = setTimeout(
      () => finish(new Error(`server did not print "Listening on" within 15 s:\n${state.log}`)),
      15_000);
  });
}

async function stopServer(s, signal = 'SIGTERM') {
  if (!s || s.exited || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => s.proc.once('exit', resolve));
  try { process.kill(s.proc.pid, signal); } catch { return; }
  const t = setTimeout(() => { try { process.kill(s.proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5_000);
  await exited;
  clearTimeout(t);
}

// Restart on the same port; the old socket may take a moment to free up.
async function restartServerOnSamePort() {
  const deadline = Date.now() + 10_000;
  let lastErr;
  while (Date.now() < deadline) {
    try {
      return await startServer(`127.0.0.1:${port}`);
    } catch (e) {
      lastErr = e;
      await sleep(250);
    }
  }
  throw lastErr;
}

// Last resort: never leave a server running, even if the runner is torn down.
process.on('exit', () => {
  if (server && server.proc.exitCode === null && server.proc.signalCode === null) {
    try { process.kill(server.proc.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

// ------------------------------------------------------------------ browser helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function newPage(viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  contexts.add(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.dialogs = [];
  page.pageErrors = [];
  page.on('dialog', (d) => { page.dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('pageerror', (e) => page.pageErrors.push(String(e)));
  // Keep a handle on the page's WebSockets so a test can drop one on purpose.
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) { super(...args); window.__sockets.push(this); }
    };
  });
  return page;
}

async function closePage(page) {
  const context = page.context();
  contexts.delete(context);
  await context.close();
}

async function waitOnline(page, timeout = WAIT) {
  await page.locator('#status[data-state="online"]').waitFor({ timeout });
}

// Opens the chat and picks a nickname through the chooser.
async function join(page, nick) {
  await page.goto(baseUrl);
  const dialog = page.locator('#nick-dialog');
  await dialog.waitFor({ state: 'visible' });
  await waitOnline(page);
  await page.locator('#nick-input').fill(nick);
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await expectText(page.locator('#me-nick'), nick);
}

async function say(page, text) {
  const input = page.locator('#composer-input');
  await input.fill(text);
  await input.press('Enter');
}

async function expectText(locator, expected, timeout = WAIT) {
  try {
    await locator.filter({ hasText: expected }).first().waitFor({ state: 'attached', timeout });
    const got = (await locator.first().textContent()).trim();
    if (typeof expected === 'string') assert.equal(got, expected);
  } catch (e) {
    const got = await locator.first().textContent({ timeout: 500 }).catch(() => '<missing>');
    throw new Error(`expected ${locator} to show ${JSON.stringify(String(expected))}, it shows ${JSON.stringify(got)}\n${e.message}`);
  }
}

// The message item whose text is exactly `text`.
function messageItem(page, text) {
  return page.locator('#messages li.msg').filter({
    has: page.locator('.text').getByText(text, { exact: true }),
  });
}

async function expectMessage(page, text, { from, timeout = WAIT } = {}) {
  const item = messageItem(page, text);
  await item.first().waitFor({ timeout });
  if (from) {
    assert.equal((await item.first().locator('.nick').first().textContent()).trim(), from);
  }
  return item;
}

async function messageCount(page, text) {
  return messageItem(page, text).count();
}

async function onlineCount(page) {
  return Number((await page.locator('#online-count').textContent()).trim());
}

async function waitOnlineCount(page, n, timeout = WAIT) {
  try {
    await page.waitForFunction(
      (want) => document.getElementById('online-count').textContent.trim() === String(want),
      n, { timeout });
  } catch (e) {
    const names = await page.locator('#user-list .nick').allTextContents().catch(() => []);
    throw new Error(`expected ${n} online, the page shows ${await onlineCount(page).catch(() => '?')} (${names.join(', ')})\n${e.message}`);
  }
}

async function shot(page, name, viewport) {
  if (viewport) await page.setViewportSize(viewport);
  await sleep(150);
  const file = path.join(shotDir, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`screenshot: ${file}`);
  return file;
}

// ------------------------------------------------------------------ lifecycle

before(async () => {
  if (!fs.existsSync(SERVER_BIN)) throw new Error(`server binary not found: ${SERVER_BIN} (run cargo build --release)`);
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}`);
  shotDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-screens-'));
  serverLog = path.join(shotDir, 'server.log');
  console.log(`screenshots folder: ${shotDir} (server log: ${serverLog})`);
  server = await startServer('127.0.0.1:0');
  port = server.port;
  baseUrl = `http://127.0.0.1:${port}/`;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  if (browser) await browser.close().catch(() => {});
  await stopServer(server);
});

// ------------------------------------------------------------------ scenarios

test('two users pick nicknames and exchange messages both ways', { timeout: TEST_TIMEOUT }, async () => {
  const ann = await newPage(DESKTOP);
  const bob = await newPage(DESKTOP);
  try {
    await join(ann, 'ann');
    await join(bob, 'bob');

    await say(ann, 'hello from ann');
    await expectMessage(bob, 'hello from ann', { from: 'ann' });
    const own = await expectMessage(ann, 'hello from ann', { from: 'ann' });
    assert.equal(await own.count(), 1, 'the sender sees its message once (no local echo)');
    assert.ok(await own.first().evaluate((li) => li.classList.contains('own')), 'own message is marked as own');
    assert.ok(!(await messageItem(bob, 'hello from ann').first()
      .evaluate((li) => li.classList.contains('own'))), 'a message from someone else is not marked own');

    await say(bob, 'hi ann,\nbob here');
    await expectMessage(ann, 'hi ann,\nbob here', { from: 'bob' });

    await say(bob, '/me waves');
    const action = bob.locator('#messages li.msg.action').filter({ hasText: 'waves' });
    await ann.locator('#messages li.msg.action').filter({ hasText: 'waves' }).waitFor();
    await action.waitFor();
    assert.match((await action.first().textContent()).replace(/\s+/g, ' '), /\* bob waves/);

    await say(ann, '//not a command');
    await expectMessage(bob, '/not a command', { from: 'ann' });

    // Each message shows a local time.
    const time = ann.locator('#messages li.msg time').first();
    assert.match((await time.textContent()).trim(), /\d{1,2}[:.]\d{2}/);

    await shot(ann, 'desktop-ann', DESKTOP);
    await shot(bob, 'desktop-bob', DESKTOP);
    await shot(ann, 'phone-ann', PHONE);
    await shot(bob, 'phone-bob', PHONE);
    await bob.locator('#people-toggle').click();
    await bob.locator('#people').getByText('ann', { exact: true }).waitFor({ state: 'visible' });
    await shot(bob, 'phone-bob-people-open');
    await bob.keyboard.press('Escape');
    await bob.locator('#people').getByText('ann', { exact: true }).waitFor({ state: 'hidden' });

    // Unread count in the tab title while the tab is hidden.
    await bob.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await say(ann, 'unread one');
    await say(ann, 'unread two');
    await expectMessage(bob, 'unread two');
    assert.equal(await bob.title(), '(2) wschat');
    await bob.evaluate(() => {
      delete document.visibilityState;
      document.dispatchEvent(new Event('visibilitychange'));
    });
    assert.equal(await bob.title(), 'wschat');

    // The list follows new messages, unless the reader has scrolled up.
    await bob.setViewportSize(PHONE);
    for (let i = 1; i <= 25; i++) await say(ann, `filler ${i}`);
    await expectMessage(bob, 'filler 25');
    const gap = () => bob.locator('#scroller').evaluate((s) => s.scrollHeight - s.scrollTop - s.clientHeight);
    assert.ok(await gap() < 50, 'scrolled to the bottom while following');
    await bob.locator('#scroller').evaluate((s) => { s.scrollTop = 0; });
    await say(ann, 'while scrolled up');
    await expectMessage(bob, 'while scrolled up');
    assert.equal(await bob.locator('#scroller').evaluate((s) => s.scrollTop), 0, 'stays where the reader is');
    await bob.locator('#jump').waitFor({ state: 'visible' });
    await bob.locator('#jump').click();
    assert.ok(await gap() < 50, 'the jump button goes back to the bottom');

    assert.deepEqual([...ann.pageErrors, ...bob.pageErrors], []);
  } finally {
    await closePage(ann);
    await closePage(bob);
  }
});

test('presence shows both users, then a leave notice and count 1', { timeout: TEST_TIMEOUT }, async () => {
  const cat = await newPage(DESKTOP);
  const dan = await newPage(PHONE);
  try {
    await join(cat, 'cat');
    await join(dan, 'dan');
    await waitOnlineCount(cat, 2);
    await waitOnlineCount(dan, 2);
    for (const page of [cat, dan]) {
      const names = await page.locator('#user-list .nick').allTextContents();
      assert.deepEqual(names.map((s) => s.trim()).sort(), ['cat', 'dan']);
    }
    // On a phone the people list is behind a toggle that shows the count too.
    await expectText(dan.locator('#people-toggle-count'), '2');
    await expectText(cat.locator('#messages li.notice.join .notice-text').last(), 'dan joined');

    await closePage(dan);
    await cat.locator('#messages li.notice.leave').filter({ hasText: 'dan left' }).waitFor();
    await waitOnlineCount(cat, 1);
    assert.deepEqual((await cat.locator('#user-list .nick').allTextContents()).map((s) => s.trim()), ['cat']);
  } finally {
    await closePage(cat);
    if (contexts.has(dan.context())) await closePage(dan);
  }
});

test('reload and reconnect show the history once', { timeout: TEST_TIMEOUT }, async () => {
  const eve = await newPage(DESKTOP);
  const fay = await newPage(DESKTOP);
  try {
    await join(eve, 'eve');
    await join(fay, 'fay');
    const texts = ['history one', 'history two', 'history three'];
    for (const t of texts) await say(eve, t);
    for (const t of texts) await expectMessage(fay, t, { from: 'eve' });

    await fay.reload();
    await waitOnline(fay);
    // The nickname comes back from localStorage without asking again.
    await expectText(fay.locator('#me-nick'), 'fay');
    assert.equal(await fay.locator('#nick-dialog').isVisible(), false, 'no nickname chooser after a reload');
    for (const t of texts) {
      await expectMessage(fay, t, { from: 'eve' });
      assert.equal(await messageCount(fay, t), 1, `"${t}" shown once after reload`);
    }

    // Drop the connection from the client side: the page reconnects by itself
    // and the history it receives again is not shown twice.
    await fay.evaluate(() => window.__sockets.at(-1).close());
    await fay.locator('#status[data-state="reconnecting"]').waitFor();
    await waitOnline(fay, RECONNECT_WAIT);
    await say(eve, 'after reconnect');
    await expectMessage(fay, 'after reconnect');
    for (const t of [...texts, 'after reconnect']) {
      assert.equal(await messageCount(fay, t), 1, `"${t}" shown once after reconnect`);
    }
    const ids = await fay.locator('#messages li.msg').evaluateAll((lis) => lis.map((li) => li.dataset.id));
    assert.equal(new Set(ids).size, ids.length, 'no message id is shown twice');
  } finally {
    await closePage(eve);
    await closePage(fay);
  }
});

test('both pages reconnect by themselves after the server restarts', { timeout: TEST_TIMEOUT }, async () => {
  const gus = await newPage(DESKTOP);
  const hal = await newPage(PHONE);
  try {
    await join(gus, 'gus');
    await join(hal, 'hal');
    await say(gus, 'before restart');
    await expectMessage(hal, 'before restart');

    await stopServer(server, 'SIGKILL');
    for (const page of [gus, hal]) {
      await page.locator('#status[data-state="reconnecting"]').waitFor();
      assert.match(await page.locator('#status-text').textContent(), /Reconnecting in \d+ s/);
    }
    // The input stays usable while offline and unsent text is kept.
    await say(gus, 'typed while offline');
    assert.equal(await gus.locator('#composer-input').inputValue(), 'typed while offline');
    await shot(hal, 'phone-hal-reconnecting');

    server = await restartServerOnSamePort();
    await waitOnline(gus, RECONNECT_WAIT);
    await waitOnline(hal, RECONNECT_WAIT);
    await expectText(gus.locator('#me-nick'), 'gus');
    await expectText(hal.locator('#me-nick'), 'hal');
    await waitOnlineCount(gus, 2);

    // The text typed while offline is sent with Enter once back online.
    await gus.locator('#composer-input').press('Enter');
    await expectMessage(hal, 'typed while offline', { from: 'gus' });
    assert.equal(await gus.locator('#composer-input').inputValue(), '');
    await say(hal, 'back again');
    await expectMessage(gus, 'back again', { from: 'hal' });
    await expectMessage(gus, 'typed while offline', { from: 'gus' });
    for (const page of [gus, hal]) {
      for (const t of ['before restart', 'typed while offline', 'back again']) {
        assert.equal(await messageCount(page, t), 1, `"${t}" shown once`);
      }
    }
  } finally {
    await closePage(gus);
    await closePage(hal);
  }
});

test('an HTML payload is shown as literal text', { timeout: TEST_TIMEOUT }, async () => {
  const ivy = await newPage(DESKTOP);
  const jon = await newPage(DESKTOP);
  const payload = '<img src=x onerror=alert(1)>';
  try {
    await join(ivy, 'ivy');
    await join(jon, '<b>jon</b>');
    await say(jon, payload);
    await say(jon, `/me ${payload}`);
    for (const page of [ivy, jon]) {
      await expectMessage(page, payload, { from: '<b>jon</b>' });
      await page.locator('#messages li.msg.action').filter({ hasText: payload }).waitFor();
    }
    await sleep(500); // give a (wrongly) created image time to fail and fire onerror
    for (const page of [ivy, jon]) {
      assert.equal(await page.locator('#messages img, #messages b, #user-list b').count(), 0,
        'no element created from message text or nickname');
      assert.deepEqual(page.dialogs, [], 'no dialog opened');
    }
    assert.ok((await ivy.locator('#user-list').textContent()).includes('<b>jon</b>'));
  } finally {
    await closePage(ivy);
    await closePage(jon);
  }
});

test('a nickname collision shows the server error next to the chooser', { timeout: TEST_TIMEOUT }, async () => {
  const kim = await newPage(DESKTOP);
  const lee = await newPage(PHONE);
  try {
    await join(kim, 'kim');
    await lee.goto(baseUrl);
    await waitOnline(lee);
    const dialog = lee.locator('#nick-dialog');
    await dialog.waitFor({ state: 'visible' });
    await lee.locator('#nick-input').fill('KIM');
    await lee.keyboard.press('Enter');
    const error = lee.locator('#nick-error');
    await error.filter({ hasText: /taken/i }).waitFor();
    assert.ok(await dialog.isVisible(), 'the chooser stays open');
    assert.equal(await lee.locator('#nick-input').inputValue(), 'KIM', 'the rejected name stays editable');
    await shot(lee, 'phone-lee-nick-taken');

    // The reserved guest-<digits> form is rejected too.
    await lee.locator('#nick-input').fill('guest-123');
    await lee.keyboard.press('Enter');
    await lee.waitForFunction(() => {
      const t = document.getElementById('nick-error').textContent;
      return t && !/taken/i.test(t);
    });

    await lee.locator('#nick-input').fill('lee');
    await lee.keyboard.press('Enter');
    await dialog.waitFor({ state: 'hidden' });
    await expectText(lee.locator('#me-nick'), 'lee');
    assert.equal(await lee.evaluate(() => localStorage.getItem('wschat.nick')), 'lee');
  } finally {
    await closePage(kim);
    await closePage(lee);
  }
});
