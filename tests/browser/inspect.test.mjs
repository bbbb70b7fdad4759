// The frame inspector (/inspect) in Chromium, against the real server:
// what the page shows of its own connection must be the RFC's arithmetic,
// checked here independently (SHA-1, unmasking, inflating in node).
// Run with tests/browser/run.sh. Screenshots go to a temporary folder, or
// to $INSPECT_SHOTS when set.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const WWW = path.join(ROOT, 'www');
const SERVER_BIN = process.env.WSCHAT_BIN || path.join(ROOT, 'target', 'release', 'wschat');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const WAIT = 10_000;
const TEST_TIMEOUT = 60_000;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 360, height: 740 };

let browser;
let server;
let shotDir;

function startServer(extraArgs = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(SERVER_BIN, ['--addr', '127.0.0.1:0', '--www', WWW, ...extraArgs],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    const state = { proc, port: 0, log: '' };
    const timer = setTimeout(() => reject(new Error(`no "Listening on" in 15 s:\n${state.log}`)), 15_000);
    const onData = (chunk) => {
      state.log += chunk.toString();
      const m = /Listening on http:\/\/[^\s/]*:(\d+)\//.exec(state.log);
      if (m && !state.port) {
        state.port = Number(m[1]);
        clearTimeout(timer);
        resolve(state);
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

async function stopServer(s) {
  if (!s || s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  const exited = new Promise((resolve) => s.proc.once('exit', resolve));
  process.kill(s.proc.pid, 'SIGTERM');
  const t = setTimeout(() => { try { process.kill(s.proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 5_000);
  await exited;
  clearTimeout(t);
}

process.on('exit', () => {
  if (server && server.proc.exitCode === null) {
    try { process.kill(server.proc.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

// Opens the inspector (with or without permessage-deflate) and waits for
// its feed to be up.
async function openInspector({ viewport = DESKTOP, deflate = true } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.pageErrors = [];
  page.on('pageerror', (e) => page.pageErrors.push(String(e)));
  await page.goto(`http://127.0.0.1:${server.port}/inspect`);
  await page.locator('#status[data-state="online"]').waitFor();
  if (!deflate) {
    await page.locator('#deflate').uncheck();
    await page.locator('#status[data-state="online"]').waitFor();
  }
  await page.locator('#handshake').waitFor();
  return page;
}

const value = (page, selector) => page.locator(`${selector} .value`).innerText();
const bytes = (hex) => hex.trim().split(/\s+/).map((b) => parseInt(b, 16));

async function shot(page, name) {
  const file = path.join(shotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  console.log(`screenshot: ${file}`);
}

before(async () => {
  if (!fs.existsSync(SERVER_BIN)) throw new Error(`server binary not found: ${SERVER_BIN}`);
  shotDir = process.env.INSPECT_SHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-inspect-'));
  fs.mkdirSync(shotDir, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopServer(server);
});

test('the handshake is shown with a correct accept computation', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openInspector();
  const key = await page.locator('#handshake .accept-key').innerText();
  const expected = crypto.createHash('sha1').update(key + GUID).digest();
  assert.equal(await page.locator('#handshake .guid').innerText(), GUID);
  assert.equal(await page.locator('#handshake .sha1').innerText(), [...expected].map((b) => b.toString(16).padStart(2, '0')).join(' '));
  assert.equal(await page.locator('#handshake .accept-result').innerText(), expected.toString('base64'));
  const request = await page.locator('#handshake .request-head').innerText();
  assert.match(request, new RegExp(`Sec-WebSocket-Key: ${key.replace(/[+/=]/g, '\\$&')}`));
  assert.match(request, /Sec-WebSocket-Extensions: permessage-deflate/, 'the extensions Chromium chose');
  const response = await page.locator('#handshake .response-head').innerText();
  assert.ok(response.includes(`Sec-WebSocket-Accept: ${expected.toString('base64')}`), response);
  assert.equal(await page.locator('#handshake .check').getAttribute('data-ok'), 'true');
  assert.deepEqual(page.pageErrors, []);
  await page.context().close();
});

test('"Hello" arrives as a masked frame whose key and bytes unmask to it', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openInspector({ deflate: false });
  await page.locator('#text').fill('Hello');
  await page.locator('#send-text').click();
  const frame = '.frame[data-dir="in"][data-opcode="1"]';
  await page.locator(frame).waitFor();
  assert.equal(await page.locator(frame).getAttribute('data-masked'), '1');
  assert.equal(await page.locator(frame).getAttribute('data-fin'), '1');
  const key = bytes(await value(page, `${frame} .f-key`));
  const masked = bytes(await value(page, `${frame} .f-masked`));
  assert.equal(key.length, 4);
  const unmasked = Buffer.from(masked.map((b, i) => b ^ key[i % 4])).toString();
  assert.equal(unmasked, 'Hello', 'the key and masked bytes shown unmask to the text');
  assert.notEqual(Buffer.from(masked).toString(), 'Hello', 'the bytes shown are masked');
  assert.equal(await value(page, `${frame} .f-text`), 'Hello');
  // The echo: the server's frame, unmasked.
  await page.locator('.frame[data-dir="out"][data-opcode="1"][data-masked="0"] .f-payload').last().waitFor();
  await page.context().close();
});

test('a 3-fragment message shows FIN 0, 0, 1 and text, continuation, continuation', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openInspector({ deflate: false });
  await page.locator('#server-text').fill('one two three');
  await page.locator('#fragments').fill('3');
  await page.locator('#send-fragments').click();
  const message = page.locator('.message[data-dir="out"][data-kind="text"]').filter({ hasText: 'one two three' });
  await message.waitFor();
  const numbers = (await message.getAttribute('data-frames')).split(',');
  assert.equal(numbers.length, 3);
  const fin = [];
  const opcodes = [];
  for (const n of numbers) {
    const frame = page.locator(`.frame[data-n="${n}"]`);
    fin.push(await frame.getAttribute('data-fin'));
    opcodes.push(await frame.getAttribute('data-opcode'));
  }
  assert.deepEqual(fin, ['0', '0', '1']);
  assert.deepEqual(opcodes, ['1', '0', '0']);
  await page.context().close();
});

test('a ping from the server and the browser\'s automatic pong both appear', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openInspector({ deflate: false });
  await page.locator('#send-ping').click();
  const ping = '.frame[data-dir="out"][data-opcode="9"]';
  const pong = '.frame[data-dir="in"][data-opcode="10"]';
  await page.locator(pong).waitFor();
  const sent = await value(page, `${ping} .f-payload`);
  assert.equal(await value(page, `${pong} .f-unmasked`), sent, 'the pong carries the ping\'s payload');
  assert.equal(Number(await page.locator(pong).getAttribute('data-n')) > Number(await page.locator(ping).getAttribute('data-n')), true);
  await page.context().close();
});

test('with deflate on, RSV1 and the compressed bytes are shown and inflate to the text', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openInspector();
  const text = 'Hello, Hello, Hello, compressed Hello';
  await page.locator('#text').fill(text);
  await page.locator('#send-text').click();
  const message = page.locator('.message[data-dir="in"][data-compressed="true"]');
  await message.waitFor();
  const frame = page.locator(`.frame[data-n="${await message.getAttribute('data-frames')}"]`);
  assert.equal(await frame.getAttribute('data-rsv1'), '1');
  const wire = bytes(await message.locator('.m-wire .value').innerText());
  const tail = bytes(await message.locator('.m-tail .value').innerText());
  assert.deepEqual(tail, [0x00, 0x00, 0xff, 0xff]);
  const inflated = zlib.inflateRawSync(Buffer.from([...wire, ...tail]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.equal(inflated.toString(), text);
  assert.equal(await message.locator('.m-text .value').innerText(), text);
  // And the server's compressed copy, then the same text uncompressed.
  await page.locator('#server-text').fill(text);
  await page.locator('#send-both').click();
  await page.locator('.message[data-dir="out"][data-compressed="true"]').filter({ hasText: text }).last().waitFor();
  await page.locator('.message[data-dir="out"][data-compressed="false"]').filter({ hasText: text }).last().waitFor();
  await page.context().close();
});

test('a Close 4000 "bye" shows its code and reason', { timeout: TEST_TIMEOUT }, async () => {
  const page = await openInspector({ deflate: false });
  await page.locator('#close-code').fill('4000');
  await page.locator('#close-reason').fill('bye');
  await page.locator('#send-close').click();
  const close = page.locator('.message[data-dir="out"][data-kind="close"]');
  await close.waitFor();
  assert.equal(await close.locator('.m-code .value').innerText(), '4000');
  assert.equal(await close.locator('.m-reason .value').innerText(), 'bye');
  // The browser's answer, and the end of the connection.
  await page.locator('.message[data-dir="in"][data-kind="close"]').waitFor();
  await page.locator('#status[data-state="closed"]').waitFor();
  await page.context().close();
});

test('it looks right at 1280 and 360 px', { timeout: TEST_TIMEOUT }, async () => {
  for (const [name, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    const page = await openInspector({ viewport });
    await shot(page, `inspect-${name}-top`);
    await page.locator('#text').fill('Hello');
    await page.locator('#send-text').click();
    await page.locator('#send-fragments').click();
    await page.locator('.message[data-dir="out"][data-kind="text"]').nth(2).waitFor();
    await page.locator('#send-ping').click();
    await page.locator('.frame[data-dir="in"][data-opcode="10"]').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: the page scrolls sideways by ${overflow}px`);
    await page.locator('#handshake').scrollIntoViewIfNeeded();
    await shot(page, `inspect-${name}-handshake`);
    await page.locator('.frame[data-dir="in"]').first().scrollIntoViewIfNeeded();
    await shot(page, `inspect-${name}-frames`);
    assert.deepEqual(page.pageErrors, []);
    await page.context().close();
  }
});
