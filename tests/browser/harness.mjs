// What the browser tests share: starting and stopping wschat, Chromium
// pages with a handle on their WebSockets, and waiting for what a page
// shows. Used by e2e.test.mjs and rooms.test.mjs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const WWW = path.join(ROOT, 'www');
export const SERVER_BIN = process.env.WSCHAT_BIN || path.join(ROOT, 'target', 'release', 'wschat');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const WAIT = 10_000;            // default for a single visible-behaviour wait
export const RECONNECT_WAIT = 25_000;  // backoff is capped at ~12 s
export const TEST_TIMEOUT = 60_000;

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 360, height: 740 };

// One test file's browser, its open contexts, where screenshots and the
// servers' output go, and the address of its shared server.
export const session = {
  browser: null,
  contexts: new Set(),
  shotDir: null,
  serverLog: null,   // the servers' stdout and stderr, for a look after a failure
  baseUrl: null,
};

// Checks the binary and Chromium are there, makes the screenshot folder
// (WSCHAT_SCREENS, or a fresh temporary one) and launches Chromium.
export async function openSession() {
  if (!fs.existsSync(SERVER_BIN)) throw new Error(`server binary not found: ${SERVER_BIN} (run cargo build --release)`);
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM}`);
  if (process.env.WSCHAT_SCREENS) fs.mkdirSync(process.env.WSCHAT_SCREENS, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-screens-'));
  session.shotDir = process.env.WSCHAT_SCREENS || scratch;
  session.serverLog = path.join(scratch, 'server.log');
  console.log(`screenshots folder: ${session.shotDir} (server log: ${session.serverLog})`);
  session.browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export async function closeSession() {
  for (const c of session.contexts) await c.close().catch(() => {});
  if (session.browser) await session.browser.close().catch(() => {});
}

// ------------------------------------------------------------------ server

export function startServer(addr, extraArgs = []) {
  return new Promise((resolve, reject) => {
    const args = ['--addr', addr, '--www', WWW, ...extraArgs];
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
      if (session.serverLog) fs.appendFileSync(session.serverLog, chunk);
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

export async function stopServer(s, signal = 'SIGTERM') {
  if (!s || s.exited || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => s.proc.once('exit', resolve));
  try { process.kill(s.proc.pid, signal); } catch { return; }
  const t = setTimeout(() => { try { process.kill(s.proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5_000);
  await exited;
  clearTimeout(t);
}


// ------------------------------------------------------------------ browser helpers

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function newPage(viewport = DESKTOP) {
  const context = await session.browser.newContext({ viewport });
  session.contexts.add(context);
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
    window.__closes = []; // {code, reason} of every close the page saw
    // window.__blockSockets = true: every new socket goes to a closed port
    // instead, so that a test can keep the page offline for a while.
    window.__blockSockets = false;
    window.WebSocket = class extends Native {
      constructor(url, ...rest) {
        super(window.__blockSockets ? 'ws://127.0.0.1:9/' : url, ...rest);
        window.__sockets.push(this);
        this.addEventListener('close', (e) => window.__closes.push({ code: e.code, reason: e.reason }));
      }
    };
  });
  return page;
}

export async function closePage(page) {
  const context = page.context();
  session.contexts.delete(context);
  await context.close();
}

export async function waitOnline(page, timeout = WAIT) {
  await page.locator('#status[data-state="online"]').waitFor({ timeout });
}

// Opens the chat and picks a nickname through the chooser.
export async function join(page, nick, url = session.baseUrl) {
  await page.goto(url);
  const dialog = page.locator('#nick-dialog');
  await dialog.waitFor({ state: 'visible' });
  await waitOnline(page);
  await page.locator('#nick-input').fill(nick);
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await expectText(page.locator('#me-nick'), nick);
}

export async function say(page, text) {
  const input = page.locator('#composer-input');
  await input.fill(text);
  await input.press('Enter');
}

export async function expectText(locator, expected, timeout = WAIT) {
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
export function messageItem(page, text) {
  return page.locator('#messages li.msg').filter({
    has: page.locator('.text').getByText(text, { exact: true }),
  });
}

export async function expectMessage(page, text, { from, timeout = WAIT } = {}) {
  const item = messageItem(page, text);
  await item.first().waitFor({ timeout });
  if (from) {
    assert.equal((await item.first().locator('.nick').first().textContent()).trim(), from);
  }
  return item;
}

export async function messageCount(page, text) {
  return messageItem(page, text).count();
}

export async function shot(page, name, viewport) {
  if (viewport) await page.setViewportSize(viewport);
  await sleep(150);
  const file = path.join(session.shotDir, `${name}.png`);
  await page.screenshot({ path: file });
  console.log(`screenshot: ${file}`);
  return file;
}
