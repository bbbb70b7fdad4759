// Cluster mode in a real browser: the page on one wschat node, a raw
// WebSocket client (the PHP tutorial's kind: no subprotocol) on another,
// both nodes sharing one chat through a real redis-server.
//
// Run by tests/cluster/run.sh (which installs redis-server, Chromium and
// these npm packages); it needs redis-server, so tests/browser/run.sh does
// not run it. Every process it starts is stopped by its PID.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import WsClient from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const WWW = path.join(ROOT, 'www');
const SERVER_BIN = process.env.WSCHAT_BIN || path.join(ROOT, 'target', 'release', 'wschat');
const REDIS_BIN = process.env.REDIS_SERVER || '/usr/bin/redis-server';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 15_000;

const procs = [];
let browser;
let redisPort;
let nodes = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

// Starts `bin args` and resolves once a line of its output matches `ready`.
function start(bin, args, ready, what) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    procs.push(proc);
    let log = '';
    const timer = setTimeout(() => reject(new Error(`${what} not ready in 15 s:\n${log}`)), 15_000);
    const onData = (chunk) => {
      log += chunk.toString();
      const m = ready.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, match: m });
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (code ${code}):\n${log}`));
    });
  });
}

async function startNode(name) {
  const { match } = await start(
    SERVER_BIN,
    ['--addr', '127.0.0.1:0', '--www', WWW, '--redis', `redis://127.0.0.1:${redisPort}`,
      '--node-name', name],
    /Listening on http:\/\/127\.0\.0\.1:(\d+)\//,
    `wschat node ${name}`);
  return `127.0.0.1:${match[1]}`;
}

before(async () => {
  for (const [file, what] of [[SERVER_BIN, 'wschat (cargo build --release)'],
    [REDIS_BIN, 'redis-server'], [CHROMIUM, 'Chromium']]) {
    if (!fs.existsSync(file)) throw new Error(`${what} not found at ${file}`);
  }
  redisPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-cluster-browser-'));
  await start(REDIS_BIN,
    ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir],
    /Ready to accept connections/, 'redis-server');
  nodes = [await startNode('browser-a'), await startNode('browser-b')];
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  for (const proc of procs.reverse()) {
    if (proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(t);
    }
  }
});

process.on('exit', () => {
  for (const proc of procs) {
    if (proc.exitCode === null && proc.signalCode === null) {
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
    }
  }
});

test('a page on one node and a raw client on another chat both ways', { timeout: 90_000 }, async () => {
  const [a, b] = nodes;
  // The raw client on node B: every text it receives, in order.
  const raw = new WsClient(`ws://${b}/`, { perMessageDeflate: false });
  const heard = [];
  const waiters = [];
  raw.on('message', (data) => {
    heard.push(data.toString());
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((resolve, reject) => { raw.once('open', resolve); raw.once('error', reject); });
  const rawHears = async (text) => {
    const deadline = Date.now() + WAIT;
    while (!heard.includes(text)) {
      assert.ok(Date.now() < deadline, `the raw client never got ${JSON.stringify(text)}; it got ${JSON.stringify(heard)}`);
      await new Promise((resolve) => { waiters.push(resolve); setTimeout(resolve, 200); });
    }
  };

  // The page on node A picks a nickname.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(`http://${a}/`);
  const dialog = page.locator('#nick-dialog');
  await dialog.waitFor({ state: 'visible' });
  await page.locator('#nick-input').fill('ann');
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await page.locator('#me-nick').filter({ hasText: 'ann' }).waitFor();

  // The page speaks: the raw client on the other node gets the PHP
  // tutorial's plain line.
  const input = page.locator('#composer-input');
  await input.fill('hello from node a');
  await input.press('Enter');
  await rawHears('ann: hello from node a');

  // The raw client speaks: the page shows it, from the raw client's guest
  // name, and the raw client does not get its own line back.
  raw.send('hello from node b');
  const item = page.locator('#messages li.msg').filter({
    has: page.locator('.text').getByText('hello from node b', { exact: true }),
  });
  await item.first().waitFor();
  const from = (await item.first().locator('.nick').first().textContent()).trim();
  assert.match(from, /^guest-\d+$/, `the raw client's name: ${from}`);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.ok(!heard.includes('hello from node b'), 'the raw sender got its own line back');

  // Both see the other in the people list (presence across nodes).
  await page.locator('#people').getByText(from, { exact: true }).waitFor({ state: 'attached' });

  raw.close();
  await context.close();
});
