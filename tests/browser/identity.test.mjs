// Sign-in and moderation in the page, against the real
// server started with `--auth optional --auth-secret-file`: the token taken
// from the URL fragment and offered as a subprotocol, the signed-in and
// operator marks, an operator's menu, and what a kicked, banned or muted
// page and a refused sign-in say. Tokens are HS256 JWTs minted here with
// node's crypto, with a key written to a temporary secret file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  WAIT, RECONNECT_WAIT, TEST_TIMEOUT, DESKTOP, PHONE, session, openSession, closeSession,
  startServer, stopServer, sleep, newPage, closePage, waitOnline, join, say, expectText,
  expectMessage, shot,
} from './harness.mjs';

// The page waits this long after a kick before it reconnects (app.js).
const KICK_PAUSE_MS = 5000;
// A time as the page writes it today ("14:05", or "02:05 PM" in en-US).
const CLOCK = String.raw`\d{1,2}:\d{2}(?: [AP]M)?`;
const until = (before, after = '') => new RegExp(before + ' until ' + CLOCK + after);

let secretDir;
let secretFile;
let key;

before(async () => {
  await openSession();
  secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-auth-'));
  secretFile = path.join(secretDir, 'secret');
  key = crypto.randomBytes(32).toString('hex'); // 64 bytes of text, one line
  fs.writeFileSync(secretFile, key + '\n', { mode: 0o600 });
});

after(async () => {
  await closeSession();
  fs.rmSync(secretDir, { recursive: true, force: true });
});

// A fresh server per test: a guest ban is by address, and every page here
// comes from 127.0.0.1.
async function authServer() {
  const server = await startServer('127.0.0.1:0', ['--auth', 'optional', '--auth-secret-file', secretFile]);
  session.baseUrl = `http://127.0.0.1:${server.port}/`;
  return server;
}

// ------------------------------------------------------------------ tokens

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

// An HS256 JWT (RFC 7515 compact form) for `claims`, valid for an hour
// unless `exp` says otherwise.
function mint(claims, signingKey = key) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({ iat: now, exp: now + 3600, ...claims });
  const sig = crypto.createHmac('sha256', signingKey).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

// ------------------------------------------------------------------ helpers

// Records the subprotocols each socket was offered (before the page loads).
async function recordOffers(page) {
  await page.addInitScript(() => {
    const Wrapped = window.WebSocket;
    window.__offered = [];
    window.WebSocket = class extends Wrapped {
      constructor(url, protocols) {
        super(url, protocols);
        window.__offered.push(Array.isArray(protocols) ? protocols : [protocols]);
      }
    };
  });
}

// Opens the chat signed in with `token` (and the other fragment keys).
async function signIn(page, token, rest = '') {
  await page.goto(`${session.baseUrl}#${rest ? rest + '&' : ''}token=${token}`);
  await waitOnline(page);
}

const person = (page, nick) => page.locator('#user-list li.user').filter({
  has: page.locator('.nick').getByText(nick, { exact: true }),
});

async function waitPerson(page, nick, timeout = WAIT) {
  await person(page, nick).first().waitFor({ timeout });
}

const socketCount = (page) => page.evaluate(() => window.__sockets.length);

async function lastNotice(page, kind) {
  const item = page.locator(`#messages li.notice.${kind} .notice-text`).last();
  await item.waitFor();
  return (await item.textContent()).trim();
}

// Kick, ban or mute `nick` through the operator's menu, by keyboard
// (`shotName`: a 1280 px screenshot of the dialog, filled in).
async function moderate(op, nick, action, { reason, duration, shotName } = {}) {
  const button = person(op, nick).locator('.mod-button');
  await button.focus();
  await op.keyboard.press('Enter');
  const menu = op.locator('#mod-menu');
  await menu.waitFor({ state: 'visible' });
  assert.equal(await button.getAttribute('aria-expanded'), 'true');
  assert.equal(await op.evaluate(() => document.activeElement.dataset.action), 'kick', 'the menu opens on its first item');
  const steps = { kick: 0, ban: 1, mute: 2 }[action];
  for (let i = 0; i < steps; i++) await op.keyboard.press('ArrowDown');
  assert.equal(await op.evaluate(() => document.activeElement.dataset.action), action);
  await op.keyboard.press('Enter');
  await op.locator('#mod-dialog').waitFor({ state: 'visible' });
  await expectText(op.locator('#mod-title'), new RegExp(`^${action} ${nick}$`, 'i'));
  if (duration !== undefined) await op.locator('#mod-duration').selectOption(duration);
  if (reason !== undefined) await op.locator('#mod-reason').fill(reason);
  if (shotName) await shot(op, shotName, DESKTOP);
  await op.locator('#mod-submit').click();
  await op.locator('#mod-dialog').waitFor({ state: 'hidden' });
}

// ------------------------------------------------------------------ scenarios

test('with --auth off a token is ignored: the page is a guest that chooses a name, and the token still leaves the address', { timeout: TEST_TIMEOUT }, async () => {
  const server = await startServer('127.0.0.1:0');
  session.baseUrl = `http://127.0.0.1:${server.port}/`;
  const page = await newPage(DESKTOP);
  try {
    const token = mint({ sub: 'u-olga', name: 'olga', role: 'op' });
    await recordOffers(page);
    await page.goto(`${session.baseUrl}#room=main&token=${token}`);
    await waitOnline(page);
    assert.equal(new URL(page.url()).hash, '#room=main');
    assert.deepEqual(await page.evaluate(() => window.__offered[0]), ['wschat.v1', 'wschat.auth.' + token]);
    assert.equal(await page.evaluate(() => window.__sockets[0].protocol), 'wschat.v1');
    // A guest: the chooser asks for a name, and nobody is marked.
    await page.locator('#nick-dialog').waitFor({ state: 'visible' });
    await page.locator('#nick-input').fill('olga');
    await page.keyboard.press('Enter');
    await page.locator('#nick-dialog').waitFor({ state: 'hidden' });
    await expectText(page.locator('#me-nick'), 'olga');
    await waitPerson(page, 'olga');
    assert.equal(await page.locator('.user-mark').count(), 0);
    assert.equal(await page.locator('.mod-button').count(), 0);
    assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(page);
    await stopServer(server);
  }
});

test('the token leaves the address bar, travels as a subprotocol, and marks show who is signed in', { timeout: TEST_TIMEOUT }, async () => {
  const server = await authServer();
  const op = await newPage(DESKTOP);
  const ann = await newPage(DESKTOP);
  const gus = await newPage(DESKTOP);
  try {
    const opToken = mint({ sub: 'u-olga', name: 'olga', role: 'op' });
    await recordOffers(op);
    await signIn(op, opToken, 'room=main');
    // Gone from the address (and the history entry), the other key kept.
    const href = op.url();
    assert.ok(!href.includes('token'), `the token is gone from location.href: ${href}`);
    assert.ok(!href.includes(opToken.split('.')[2]), 'no part of the token is left in the address');
    assert.equal(new URL(href).hash, '#room=main');
    const offered = await op.evaluate(() => window.__offered[0]);
    assert.deepEqual(offered, ['wschat.v1', 'wschat.auth.' + opToken]);
    assert.equal(await op.evaluate(() => window.__sockets[0].protocol), 'wschat.v1', 'the server selects wschat.v1');
    const stored = await op.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.ok(!stored.includes(opToken.split('.')[1]), 'the token is not stored');

    // The name is the token's: no chooser, and the nickname button says so.
    assert.equal(await op.locator('#nick-dialog').isVisible(), false);
    await expectText(op.locator('#me-nick'), 'olga');
    await op.locator('#me-button .user-mark.op').waitFor();

    await signIn(ann, mint({ sub: 'u-ann', name: 'ann' }));
    await join(gus, 'gus');
    for (const page of [op, ann, gus]) {
      await waitPerson(page, 'olga');
      await waitPerson(page, 'ann');
      await waitPerson(page, 'gus');
      assert.equal(await person(page, 'olga').locator('.user-mark.op').count(), 1, 'the operator is marked');
      assert.match(await person(page, 'olga').textContent(), /\(operator\)/, 'in words for screen readers');
      assert.equal(await person(page, 'ann').locator('.user-mark.verified').count(), 1, 'a signed-in user is marked');
      assert.equal(await person(page, 'gus').locator('.user-mark').count(), 0, 'a guest has no mark');
    }
    // Only an operator gets the moderation buttons, never on itself.
    assert.equal(await op.locator('#user-list .mod-button').count(), 2);
    assert.equal(await person(op, 'olga').locator('.mod-button').count(), 0);
    assert.equal(await ann.locator('#user-list .mod-button').count(), 0);
    assert.equal(await gus.locator('#user-list .mod-button').count(), 0);

    // On messages too.
    await say(ann, 'hello from ann');
    await say(op, 'hello from olga');
    await say(gus, 'hello from gus');
    const annLine = await expectMessage(gus, 'hello from ann', { from: 'ann' });
    assert.equal(await annLine.locator('.user-mark.verified').count(), 1);
    const opLine = await expectMessage(gus, 'hello from olga', { from: 'olga' });
    assert.equal(await opLine.locator('.user-mark.op').count(), 1);
    const gusLine = await expectMessage(ann, 'hello from gus', { from: 'gus' });
    assert.equal(await gusLine.locator('.user-mark').count(), 0);

    // A signed-in page on a phone: its people, with their marks. (On a
    // phone the people panel is hidden until it is opened.)
    await ann.setViewportSize(PHONE);
    await ann.locator('#people-toggle').click();
    await waitPerson(ann, 'olga');
    await shot(ann, 'identity-signed-in-360', PHONE);
    await ann.locator('#people-toggle').click();

    // The operator's menu, open, for the screenshot.
    await person(op, 'gus').locator('.mod-button').click();
    await op.locator('#mod-menu').waitFor({ state: 'visible' });
    await shot(op, 'identity-operator-1280', DESKTOP);
    await op.keyboard.press('Escape');
    await op.locator('#mod-menu').waitFor({ state: 'hidden' });
    assert.equal(await op.evaluate(() => document.activeElement.classList.contains('mod-button')), true,
      'Escape returns the focus to the button');
    for (const page of [op, ann, gus]) assert.deepEqual(page.pageErrors, []);
    // The server logged the sign-ins, and no part of a token.
    assert.match(server.log, /signed in as olga/);
    for (const part of opToken.split('.')) assert.ok(!server.log.includes(part), 'a part of the token is in the server log');
  } finally {
    await closePage(op);
    await closePage(ann);
    await closePage(gus);
    await stopServer(server);
  }
});

test('an operator kicks a guest page, which says by whom and why, and comes back', { timeout: 90_000 }, async () => {
  const server = await authServer();
  const op = await newPage(DESKTOP);
  const gus = await newPage(PHONE);
  try {
    await signIn(op, mint({ sub: 'u-olga', name: 'olga', role: 'op' }));
    await join(gus, 'gus');
    await waitPerson(op, 'gus');
    const before = await socketCount(gus);

    await moderate(op, 'gus', 'kick', { reason: 'too many capitals', shotName: 'identity-kick-dialog-1280' });
    const said = await lastNotice(gus, 'moderation');
    assert.match(said, /You were kicked from the chat by olga/);
    assert.match(said, /too many capitals/);
    assert.match(said, /reconnects in a few seconds/);
    await gus.locator('#status[data-state="reconnecting"]').waitFor();
    await expectText(gus.locator('#status-reason'), 'Kicked');
    await shot(gus, 'identity-kicked-360', PHONE);
    assert.match(await lastNotice(op, 'moderation'), /olga kicked gus from the chat: “too many capitals”/);
    await shot(op, 'identity-kicked-room-1280', DESKTOP);

    // Not at once: after the pause.
    await sleep(KICK_PAUSE_MS / 2);
    assert.equal(await socketCount(gus), before, 'no reconnection before the pause is over');
    await waitOnline(gus, RECONNECT_WAIT);
    await expectText(gus.locator('#me-nick'), 'gus');
    await waitPerson(op, 'gus');

    // The typed command works as well.
    await say(op, '/kick gus typed this time');
    assert.match(await lastNotice(gus, 'moderation'), /kicked from the chat by olga: “typed this time”/);
    await waitOnline(gus, RECONNECT_WAIT);
    for (const page of [op, gus]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(op);
    await closePage(gus);
    await stopServer(server);
  }
});

test('a banned page says until when and does not come back, not even after a reload', { timeout: 90_000 }, async () => {
  const server = await authServer();
  const op = await newPage(DESKTOP);
  const gus = await newPage(PHONE);
  try {
    await signIn(op, mint({ sub: 'u-olga', name: 'olga', role: 'op' }));
    await join(gus, 'gus');
    await waitPerson(op, 'gus');

    await moderate(op, 'gus', 'ban', { duration: '1h', reason: 'spam links' });
    const said = await lastNotice(gus, 'moderation');
    assert.match(said, until('You were banned from the chat by olga'));
    assert.match(said, /spam links/);
    assert.match(said, /will not reconnect/);
    await gus.locator('#status[data-state="stopped"]').waitFor();
    assert.match(await gus.locator('#status-reason').textContent(), until('^Banned', '$'));
    const sockets = await socketCount(gus);
    await sleep(KICK_PAUSE_MS + 3000);
    assert.equal(await socketCount(gus), sockets, 'no new connection');
    assert.equal(await gus.locator('#status').getAttribute('data-state'), 'stopped');
    await shot(gus, 'identity-banned-360', PHONE);

    // A reload remembers the ban and does not knock again.
    await gus.reload();
    await gus.locator('#status[data-state="stopped"]').waitFor();
    assert.match(await lastNotice(gus, 'moderation'), until('banned from the chat'));
    await sleep(1500);
    assert.equal(await socketCount(gus), 0, 'no connection attempt after the reload');
    // "Try again" asks once; the server still refuses (403), and the page
    // says so again instead of retrying.
    await gus.locator('#retry-now').click();
    await gus.locator('#status[data-state="stopped"]').waitFor();
    await sleep(3000);
    assert.equal(await socketCount(gus), 1, 'one attempt');
    assert.equal(await gus.locator('#status').getAttribute('data-state'), 'stopped');
    for (const page of [op, gus]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(op);
    await closePage(gus);
    await stopServer(server);
  }
});

test('a mute says until when, and a refused message goes back in the box', { timeout: TEST_TIMEOUT }, async () => {
  const server = await authServer();
  const op = await newPage(DESKTOP);
  const gus = await newPage(DESKTOP);
  try {
    await signIn(op, mint({ sub: 'u-olga', name: 'olga', role: 'op' }));
    await join(gus, 'gus');
    await waitPerson(op, 'gus');
    await moderate(op, 'gus', 'mute', { duration: '5m' });
    assert.match(await lastNotice(gus, 'moderation'), until('You were muted by olga'));
    await expectText(gus.locator('#composer-note'), until('You are muted'));
    await say(gus, 'can you hear me');
    assert.match(await lastNotice(gus, 'error'), until('You are muted', ': your message was not sent'));
    assert.equal(await gus.locator('#composer-input').inputValue(), 'can you hear me');
    assert.equal(await op.locator('#messages li.msg .text').getByText('can you hear me').count(), 0);
    for (const page of [op, gus]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(op);
    await closePage(gus);
    await stopServer(server);
  }
});

test('a refused or expired sign-in is explained, not retried, and the page can go on as a guest', { timeout: TEST_TIMEOUT }, async () => {
  const server = await authServer();
  const bad = await newPage(PHONE);
  const old = await newPage(DESKTOP);
  try {
    // Signed with another key: the server answers 401 at the handshake.
    await bad.goto(`${session.baseUrl}#token=${mint({ sub: 'u-x', name: 'xena' }, 'k'.repeat(40))}`);
    await bad.locator('#status[data-state="stopped"]').waitFor();
    await expectText(bad.locator('#status-reason'), 'Sign-in failed');
    assert.match(await lastNotice(bad, 'signin'), /Sign-in failed/);
    assert.equal(await bad.locator('#nick-dialog').isVisible(), false);
    await sleep(3000);
    assert.equal(await socketCount(bad), 1, 'one attempt, no loop');
    await shot(bad, 'identity-signin-failed-360', PHONE);
    await bad.locator('#as-guest').click();
    await waitOnline(bad);
    assert.equal(await bad.evaluate(() => window.__sockets[1].protocol), 'wschat.v1');

    // Expired: said without a loop either.
    const now = Math.floor(Date.now() / 1000);
    await old.goto(`${session.baseUrl}#token=${mint({ sub: 'u-y', name: 'yann', exp: now - 600 })}`);
    await old.locator('#status[data-state="stopped"]').waitFor();
    await expectText(old.locator('#status-reason'), 'Sign-in expired');
    assert.match(await lastNotice(old, 'signin'), /sign-in has expired/);
    assert.ok(!old.url().includes('token'));
    await sleep(2000);
    assert.ok(await socketCount(old) <= 1, 'no loop');
    for (const page of [bad, old]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(bad);
    await closePage(old);
    await stopServer(server);
  }
});

test('a sign-in that runs out on an open page is explained; a fresh #token= keeps another page signed in', { timeout: 90_000 }, async () => {
  const server = await authServer();
  const sue = await newPage(PHONE);
  const rex = await newPage(DESKTOP);
  try {
    // Both tokens run out in a few seconds; the server closes a connection
    // when `exp` plus its leeway (30 s, src/auth/jwt.rs) has passed.
    const exp = Math.floor(Date.now() / 1000) + 5;
    await signIn(sue, mint({ sub: 'u-sue', name: 'sue', exp }));
    await signIn(rex, mint({ sub: 'u-rex', name: 'rex', exp }));
    // The site hands rex's open page a fresh token: out of the address,
    // and sent on the open connection (/auth), not by reconnecting.
    const fresh = mint({ sub: 'u-rex', name: 'rex' });
    await rex.evaluate((t) => { location.hash = 'room=main&token=' + t; }, fresh);
    await rex.waitForFunction(() => !location.href.includes('token'));
    assert.equal(new URL(rex.url()).hash, '#room=main');

    await sue.locator('#status[data-state="stopped"]').waitFor({ timeout: 60_000 });
    await expectText(sue.locator('#status-reason'), 'Sign-in expired');
    assert.match(await lastNotice(sue, 'signin'), /Your sign-in has expired/);
    assert.equal(await sue.evaluate(() => window.__sockets.at(-1).readyState), 3, 'closed');
    await shot(sue, 'identity-expired-360', PHONE);
    await sleep(2000);
    assert.equal(await socketCount(sue), 1, 'no reconnection with the expired token');

    // Past the same end, rex is still on its first connection.
    assert.equal(await rex.locator('#status').getAttribute('data-state'), 'online');
    assert.equal(await socketCount(rex), 1);
    await say(rex, 'still here');
    await expectMessage(rex, 'still here', { from: 'rex' });

    // sue goes on as a guest.
    await sue.locator('#as-guest').click();
    await waitOnline(sue);
    await sue.locator('#nick-dialog').waitFor({ state: 'visible' });
    for (const page of [sue, rex]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(sue);
    await closePage(rex);
    await stopServer(server);
  }
});
