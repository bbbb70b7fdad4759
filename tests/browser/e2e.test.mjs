// End-to-end test of the wschat browser client against the real server.
// Run with tests/browser/run.sh (or `node --test e2e.test.mjs` once the
// server is built and Chromium is installed).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import WsClient from 'ws';
import {
  WWW, WAIT, RECONNECT_WAIT, TEST_TIMEOUT, DESKTOP, PHONE, session, openSession, closeSession,
  startServer, stopServer, sleep, newPage, closePage, waitOnline, join, say, expectText,
  messageItem, expectMessage, messageCount, shot,
} from './harness.mjs';

let server;        // { proc, port, log }
let port;
let baseUrl;

// ------------------------------------------------------------------ server

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

// A second wschat with its own flags (for limits the shared one must not
// have), run for the length of `fn` and stopped by PID afterwards.
const extraServers = new Set();
async function withServer(extraArgs, fn) {
  const s = await startServer('127.0.0.1:0', extraArgs);
  extraServers.add(s);
  try {
    return await fn(`http://127.0.0.1:${s.port}/`, s);
  } finally {
    await stopServer(s);
    extraServers.delete(s);
  }
}

// Last resort: never leave a server running, even if the runner is torn down.
process.on('exit', () => {
  for (const s of [server, ...extraServers]) {
    if (s && s.proc.exitCode === null && s.proc.signalCode === null) {
      try { process.kill(s.proc.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
});

// ------------------------------------------------------------------ a scripted wschat.v1 server
// A few dozen lines of RFC 6455 in node, serving the real page, so that a
// test can send exactly the events and Close frames it wants: an error
// whose code and English text disagree, or each close reason in turn.
// `reply(text, conn)` answers what the page sends; by default it behaves
// like wschat for /nick and chat lines.
function startFakeServer() {
  const conns = new Set();
  const fake = { conns, received: [], reply: null, nextId: 1, port: 0 };
  const types = { html: 'text/html; charset=utf-8', js: 'text/javascript', css: 'text/css', svg: 'image/svg+xml' };
  const srv = http.createServer((req, res) => {
    const file = req.url === '/' ? 'index.html' : req.url.slice(1);
    const m = /^[a-z]+\.(html|js|css|svg)$/.exec(file);
    if (!m) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': types[m[1]] });
    res.end(fs.readFileSync(path.join(WWW, file)));
  });
  const frame = (opcode, payload) => {
    const len = payload.length;
    const head = len < 126 ? Buffer.from([0x80 | opcode, len])
      : Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff]);
    return Buffer.concat([head, payload]);
  };
  const sendJson = (conn, event) => conn.socket.write(frame(1, Buffer.from(JSON.stringify(event))));
  fake.send = sendJson;
  fake.close = (conn, code, reason) => {
    const payload = Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]);
    conn.socket.write(frame(8, payload));
    conn.closing = true;
    setTimeout(() => conn.socket.destroy(), 1_000);
  };
  fake.closeAll = (code, reason) => { for (const c of conns) fake.close(c, code, reason); };
  fake.dropAll = () => { for (const c of conns) c.socket.destroy(); };
  const defaultReply = (text, conn) => {
    const nick = /^\/nick (\S+)$/.exec(text);
    if (nick) {
      const old = conn.nick;
      conn.nick = nick[1];
      sendJson(conn, { type: 'nick', user: { id: conn.id, nick: conn.nick }, old, ts: Date.now() });
    } else {
      sendJson(conn, { type: 'message', id: ++fake.seq, from: { id: conn.id, nick: conn.nick }, text, ts: Date.now() });
    }
  };
  fake.seq = 0;
  srv.on('upgrade', (req, socket) => {
    const accept = crypto.createHash('sha1')
      .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: wschat.v1\r\n\r\n`);
    const id = fake.nextId++;
    const conn = { socket, id, nick: `guest-${id}` };
    conns.add(conn);
    socket.on('close', () => conns.delete(conn));
    socket.on('error', () => {});
    sendJson(conn, { type: 'welcome', you: { id, nick: conn.nick }, users: [{ id, nick: conn.nick }], history: [] });
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let at = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); at = 4; }
        if (len === 127) { socket.destroy(); return; } // the page sends nothing that large
        if (buf.length < at + 4 + len) return;
        const mask = buf.subarray(at, at + 4);
        const payload = Buffer.from(buf.subarray(at + 4, at + 4 + len));
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
        const opcode = buf[0] & 0x0f;
        buf = buf.subarray(at + 4 + len);
        if (opcode === 8) { // the page's Close: echo it and hang up
          if (!conn.closing) socket.write(frame(8, payload));
          socket.end();
          return;
        }
        if (opcode === 1) {
          const text = payload.toString();
          fake.received.push(text);
          (fake.reply || defaultReply)(text, conn);
        }
      }
    });
  });
  return new Promise((resolve) => {
    srv.listen(0, '127.0.0.1', () => {
      fake.port = srv.address().port;
      fake.url = `http://127.0.0.1:${fake.port}/`;
      fake.stop = () => new Promise((r) => { for (const c of conns) c.socket.destroy(); srv.close(r); });
      resolve(fake);
    });
  });
}

// ------------------------------------------------------------------ browser helpers


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

// What the chooser says when a nickname is taken: the page's own words,
// chosen by the error's code whatever the server's English says.
const takenText = (nick) => `“${nick}” is already taken. Please choose another nickname.`;

// The latest "why the connection closed" notice in the message list.
const closedNotice = (page) => page.locator('#messages li.notice.closed .notice-text');

async function expectClosedNotice(page, text, timeout = WAIT) {
  await expectText(closedNotice(page).last(), text, timeout);
}


// ------------------------------------------------------------------ lifecycle

before(async () => {
  await openSession();
  server = await startServer('127.0.0.1:0');
  port = server.port;
  baseUrl = `http://127.0.0.1:${port}/`;
  session.baseUrl = baseUrl;
});

after(async () => {
  await closeSession();
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
    if (session.contexts.has(dan.context())) await closePage(dan);
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

    await stopServer(server, 'SIGTERM');
    for (const page of [gus, hal]) {
      await page.locator('#status[data-state="reconnecting"]').waitFor();
      assert.match(await page.locator('#status-text').textContent(), /Reconnecting in \d+ s/);
      // A server that stops gracefully says 1001 shutting_down; one that just
      // dies leaves the browser with 1006. The page explains whichever it got.
      const closes = await page.evaluate(() => window.__closes);
      const last = closes.at(-1);
      await expectClosedNotice(page, last.code === 1001 && last.reason === 'shutting_down'
        ? 'The server is restarting.' : 'Connection lost.');
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

// Resuming sends `since` and `epoch`: with --history-file a restart keeps
// the epoch (no notice, nothing repeated); without the file the history is
// new, and the page says so instead of taking new ids for old ones.
test('a page resumes across restarts by its epoch, and says when the history is new', { timeout: 90_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-epoch-'));
  const file = path.join(dir, 'history.jsonl');
  let s = await startServer('127.0.0.1:0', ['--history-file', file]);
  extraServers.add(s);
  const url = `http://127.0.0.1:${s.port}/`;
  const restart = async (args) => {
    await stopServer(s, 'SIGTERM');
    extraServers.delete(s);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        s = await startServer(`127.0.0.1:${s.port}`, args);
        extraServers.add(s);
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(250);
      }
    }
  };
  const restartNotice = (page) => page.locator('#messages li.notice.restart .notice-text');
  const ivy = await newPage(DESKTOP);
  try {
    await join(ivy, 'ivy', url);
    for (const t of ['kept one', 'kept two']) await say(ivy, t);
    await expectMessage(ivy, 'kept two');

    // Same file: the same epoch; the page resumes after its last id.
    await restart(['--history-file', file]);
    await waitOnline(ivy, RECONNECT_WAIT);
    const resumed = await ivy.evaluate(() => window.__sockets.at(-1).url);
    assert.match(resumed, /\?since=\d+&epoch=[0-9a-z]+$/, 'since and epoch sent');
    await say(ivy, 'after the same history');
    await expectMessage(ivy, 'after the same history');
    assert.equal(await restartNotice(ivy).count(), 0, 'no notice: nothing was lost');
    for (const t of ['kept one', 'kept two']) assert.equal(await messageCount(ivy, t), 1, `"${t}" once`);

    // No file: a new epoch. Ids start again at 1, and the page says why.
    fs.rmSync(file);
    await restart([]);
    await waitOnline(ivy, RECONNECT_WAIT);
    await expectText(restartNotice(ivy).last(), /new history/);
    await say(ivy, 'in the new history');
    await expectMessage(ivy, 'in the new history');
    const ids = await ivy.locator('#messages li.msg').evaluateAll((lis) => lis.map((li) => li.dataset.id));
    assert.equal(ids.at(-1), '1', 'numbering started again, and the new line is shown');
    await shot(ivy, 'desktop-ivy-new-history');
  } finally {
    await closePage(ivy);
    await stopServer(s);
    extraServers.delete(s);
    fs.rmSync(dir, { recursive: true, force: true });
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
    await expectText(error, takenText('KIM'));
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
    // That one is the server's own explanation of the rule (code nick_invalid).
    assert.match(await error.textContent(), /reserved/);

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


test('errors are handled by their code, whatever their English text says', { timeout: TEST_TIMEOUT }, async () => {
  const fake = await startFakeServer();
  const mia = await newPage(PHONE);
  try {
    // The same code as the real server's collision (previous test), other words:
    // the chooser says exactly what it said there.
    fake.reply = (text, conn) => {
      if (text.startsWith('/nick ')) fake.send(conn, { type: 'error', code: 'nick_taken', text: 'Name schon vergeben' });
      else fake.send(conn, { type: 'error', code: 'empty_message', text: 'qqq' });
    };
    await mia.goto(fake.url);
    await waitOnline(mia);
    await mia.locator('#nick-dialog').waitFor({ state: 'visible' });
    await mia.locator('#nick-input').fill('KIM');
    await mia.keyboard.press('Enter');
    await expectText(mia.locator('#nick-error'), takenText('KIM'));
    assert.ok(await mia.locator('#nick-dialog').isVisible(), 'the chooser stays open');

    // Other errors are notices in the list, in the page's words for the code.
    await mia.locator('#nick-input').fill('mia');
    fake.reply = null; // the next /nick succeeds
    await mia.keyboard.press('Enter');
    await mia.locator('#nick-dialog').waitFor({ state: 'hidden' });
    fake.reply = (text, conn) => fake.send(conn, { type: 'error', code: 'empty_message', text: 'qqq' });
    await say(mia, 'anything');
    await expectText(mia.locator('#messages li.notice.error .notice-text').last(), 'Empty messages are not sent.');

    // After a reload the saved nickname is asked for again; "taken" (by the
    // code, the text says nothing of the kind) is retried automatically
    // until the name is free.
    let refusals = 0;
    fake.reply = (text, conn) => {
      if (text === '/nick mia' && refusals < 2) {
        refusals += 1;
        fake.send(conn, { type: 'error', code: 'nick_taken', text: 'Name schon vergeben' });
      } else {
        fake.reply = null;
        conn.nick = 'mia';
        fake.send(conn, { type: 'nick', user: { id: conn.id, nick: 'mia' }, old: `guest-${conn.id}`, ts: Date.now() });
      }
    };
    fake.received.length = 0;
    await mia.reload();
    await waitOnline(mia);
    await mia.waitForFunction(() => document.getElementById('me-nick').textContent === 'mia');
    await expectText(mia.locator('#me-nick'), 'mia');
    assert.equal(await mia.locator('#nick-dialog').isVisible(), false, 'no chooser: the retries got the name');
    assert.deepEqual(fake.received, ['/nick mia', '/nick mia', '/nick mia']);
    assert.deepEqual(mia.pageErrors, []);
  } finally {
    await closePage(mia);
    await fake.stop();
  }
});

test('the page says why the server closed the connection, and comes back', { timeout: 90_000 }, async () => {
  const fake = await startFakeServer();
  const ned = await newPage(DESKTOP);
  try {
    await join(ned, 'ned', fake.url);

    // Server restarting: explained, and the page reconnects by itself.
    fake.closeAll(1001, 'shutting_down');
    await expectClosedNotice(ned, 'The server is restarting.');
    await expectText(ned.locator('#status-reason'), 'Server restarting');
    await shot(ned, 'desktop-ned-server-restarting');
    await waitOnline(ned, RECONNECT_WAIT);
    assert.equal(await ned.locator('#status-reason').isVisible(), false, 'no reason shown once online');

    const cases = [
      [1001, 'ping_timeout', 'The server stopped hearing from this page and closed the connection.'],
      [1008, 'slow_consumer', 'Your connection fell too far behind the chat.'],
      [1011, 'internal_error', 'The server ran into a problem and closed the connection.'],
      [1012, 'rejoin', 'The chat lost track of this connection for a moment; reconnecting.'],
      [1011, '', 'The server ran into a problem and closed the connection.'],
      [1009, 'message over 4096 bytes', 'Your last message was too large for the server (limit 4096 bytes).'],
      [1009, '', 'Your last message was too large for the server.'],
      [1002, 'reserved bits set', 'The server closed the connection after a protocol error (code 1002).'],
      [1007, 'invalid UTF-8', 'The server closed the connection after a protocol error (code 1007).'],
      [null, '', 'Connection lost.'], // the TCP connection just ends: 1006
    ];
    for (const [code, reason, text] of cases) {
      if (code === null) fake.dropAll();
      else fake.closeAll(code, reason);
      await expectClosedNotice(ned, text);
      await ned.locator('#status[data-state="reconnecting"], #status[data-state="connecting"]').waitFor();
      if (text === 'Connection lost.') await shot(ned, 'phone-ned-connection-lost', PHONE);
      if (await ned.locator('#retry-now').isVisible()) await ned.locator('#retry-now').click().catch(() => {});
      await waitOnline(ned, RECONNECT_WAIT);
    }
    const closes = await ned.evaluate(() => window.__closes.map((c) => c.code));
    assert.deepEqual(closes, [1001, ...cases.map(([code]) => code ?? 1006)]);
    assert.deepEqual(ned.pageErrors, []);
  } finally {
    await closePage(ned);
    await fake.stop();
  }
});

test('sending too fast: the page explains, keeps the unsent text, and reconnects', { timeout: TEST_TIMEOUT }, async () => {
  await withServer(['--rate-limit', '1'], async (url) => {
    const oz = await newPage(DESKTOP);
    try {
      await join(oz, 'oz', url);
      for (let i = 1; i <= 6; i++) await say(oz, `flood ${i}`);
      await expectClosedNotice(oz, 'You were disconnected for sending messages too fast.');
      await oz.locator('#status[data-state="reconnecting"]').waitFor();
      await expectText(oz.locator('#status-reason'), 'Sending too fast');
      const closes = await oz.evaluate(() => window.__closes);
      assert.deepEqual(closes, [{ code: 1008, reason: 'rate_limited' }]);
      // The box holds a message the server never passed on.
      const kept = await oz.locator('#composer-input').inputValue();
      assert.match(kept, /^flood \d$/);
      assert.equal(await messageCount(oz, kept), 0, `"${kept}" was not delivered`);
      await shot(oz, 'desktop-oz-rate-limited');
      await shot(oz, 'phone-oz-rate-limited', PHONE);

      // Back after the pause, with the same nickname; Enter sends the kept text.
      await waitOnline(oz, RECONNECT_WAIT);
      await expectText(oz.locator('#me-nick'), 'oz');
      await oz.locator('#composer-input').press('Enter');
      await expectMessage(oz, kept, { from: 'oz' });
      assert.deepEqual(oz.pageErrors, []);
    } finally {
      await closePage(oz);
    }
  });
});

test('a message over the server limit: explained, kept to shorten, and stopped before sending', { timeout: TEST_TIMEOUT }, async () => {
  await withServer(['--max-message-bytes', '64'], async (url) => {
    const pia = await newPage(DESKTOP);
    try {
      await join(pia, 'pia', url);
      const long = 'é'.repeat(40); // 80 bytes of UTF-8
      await say(pia, long);
      await expectClosedNotice(pia, 'Your last message was too large for the server (limit 64 bytes).');
      assert.deepEqual(await pia.evaluate(() => window.__closes.map((c) => c.code)), [1009]);
      assert.equal(await pia.locator('#composer-input').inputValue(), long, 'the text is back in the box');
      await waitOnline(pia, RECONNECT_WAIT);

      // Now the page knows the limit: Enter explains instead of sending.
      await pia.locator('#composer-input').press('Enter');
      await expectText(pia.locator('#composer-note'),
        'This message is 80 bytes; the server takes at most 64. Please shorten it.');
      await shot(pia, 'desktop-pia-too-long');
      assert.equal(await pia.locator('#status').getAttribute('data-state'), 'online', 'still connected');
      await say(pia, 'é'.repeat(20));
      await expectMessage(pia, 'é'.repeat(20), { from: 'pia' });
      assert.equal(await pia.locator('#composer-note').textContent(), '', 'the note goes once the text is edited');
      assert.deepEqual(pia.pageErrors, []);
    } finally {
      await closePage(pia);
    }
  });
});

// ------------------------------------------------------------------ compression (RFC 7692)

// One sample of the server's Prometheus text.
async function metric(url, name) {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no ${name} in /metrics`);
  return Number(line.split(' ')[1]);
}

test('Chromium negotiates permessage-deflate with wschat and the chat works over it', { timeout: TEST_TIMEOUT }, async () => {
  const ivy = await newPage(DESKTOP);
  const jon = await newPage(DESKTOP);
  try {
    const before = await metric(baseUrl, 'wschat_deflate_messages_total');
    await join(ivy, 'ivy');
    await join(jon, 'jon');
    for (const page of [ivy, jon]) {
      const extensions = await page.evaluate(() => window.__sockets.at(-1).extensions);
      assert.match(extensions, /^permessage-deflate(;|$)/, `negotiated: ${JSON.stringify(extensions)}`);
    }
    // Chromium compresses what it sends; the server inflates it, and
    // compresses the broadcast once for both pages.
    const long = 'a line that repeats itself, '.repeat(40).trim();
    await say(ivy, long);
    await expectMessage(jon, long, { from: 'ivy' });
    await expectMessage(ivy, long, { from: 'ivy' });
    await say(jon, 'short reply é€𝄞');
    await expectMessage(ivy, 'short reply é€𝄞', { from: 'jon' });
    assert.ok(await metric(baseUrl, 'wschat_deflate_clients{protocol="wschat.v1"}') >= 2);
    assert.ok(await metric(baseUrl, 'wschat_deflate_messages_total') >= before + 2);
    assert.deepEqual(ivy.pageErrors, []);
    assert.deepEqual(jon.pageErrors, []);
  } finally {
    await closePage(ivy);
    await closePage(jon);
  }
});

test('with --deflate off Chromium connects without compression and the chat works', { timeout: TEST_TIMEOUT }, async () => {
  await withServer(['--deflate', 'off'], async (url) => {
    const kai = await newPage(DESKTOP);
    try {
      await join(kai, 'kai', url);
      assert.equal(await kai.evaluate(() => window.__sockets.at(-1).extensions), '');
      await say(kai, 'plain as can be');
      await expectMessage(kai, 'plain as can be', { from: 'kai' });
    } finally {
      await closePage(kai);
    }
  });
});

// The npm `ws` package: an independent permessage-deflate (zlib) on both
// ends of the exchange. threshold 0 makes it compress every message.
function wsConnect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WsClient(url, { perMessageDeflate: { threshold: 0 } });
    const inbox = [];
    const waiters = [];
    ws.on('message', (data, isBinary) => {
      const item = { data: Buffer.from(data), isBinary };
      const waiter = waiters.shift();
      if (waiter) waiter(item); else inbox.push(item);
    });
    ws.next = () => new Promise((res, rej) => {
      if (inbox.length) return res(inbox.shift());
      const timer = setTimeout(() => rej(new Error('no message within 10 s')), WAIT);
      waiters.push((item) => { clearTimeout(timer); res(item); });
    });
    ws.closed = new Promise((res) => ws.on('close', (code, reason) => res({ code, reason: String(reason) })));
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Sizes from 0 to the limit: every size up to 300 (all three length forms'
// edges), then around each power of two, then the limit itself.
function sizesUpTo(limit) {
  const sizes = new Set();
  for (let n = 0; n <= 300; n++) sizes.add(n);
  for (let p = 512; p <= limit; p *= 2) for (const n of [p - 1, p, p + 1]) if (n <= limit) sizes.add(n);
  for (const n of [65535, limit - 1, limit]) sizes.add(n);
  return [...sizes].filter((n) => n >= 0 && n <= limit).sort((a, b) => a - b);
}

function payloadOf(n, k) {
  if (k % 2 === 0) return { data: crypto.randomBytes(n), isBinary: true }; // does not compress
  // Text that compresses well, cut to n bytes on a character boundary
  // (UTF-8 continuation bytes are 10xxxxxx), then padded with ASCII.
  const long = Buffer.from('wschat ✓ compresses chat lines: '.repeat(Math.ceil(n / 30) + 1));
  let cut = n;
  while (cut > 0 && (long[cut] & 0xc0) === 0x80) cut--;
  const data = Buffer.concat([long.subarray(0, cut), Buffer.alloc(n - cut, 'x')]);
  return { data, isBinary: false };
}

test('a scripted ws client exchanges compressed messages of every size with wschat, raw chat and echo', { timeout: 120_000 }, async () => {
  // Hundreds of messages in a burst: no rate limit on this server.
  await withServer(['--rate-limit', '0'], async (url) => exchangeEverySize(url));
});

async function exchangeEverySize(url) {
  const limit = 65536;
  const raw = url.replace('http://', 'ws://');
  const sender = await wsConnect(raw);
  const receiver = await wsConnect(raw);
  const echo = await wsConnect(`${raw}echo`);
  try {
    for (const ws of [sender, receiver, echo]) {
      assert.match(ws.extensions, /^permessage-deflate/, `negotiated: ${ws.extensions}`);
    }
    const sizes = sizesUpTo(limit);
    let k = 0;
    for (const n of sizes) {
      const { data, isBinary } = payloadOf(n, k++);
      sender.send(data, { binary: isBinary });
      const got = await receiver.next();
      assert.equal(got.isBinary, isBinary, `raw chat, ${n} bytes: type`);
      assert.ok(got.data.equals(data), `raw chat, ${n} bytes: content`);
      echo.send(data, { binary: isBinary });
      const back = await echo.next();
      assert.equal(back.isBinary, isBinary, `echo, ${n} bytes: type`);
      assert.ok(back.data.equals(data), `echo, ${n} bytes: content`);
    }
    console.log(`ws interop: ${sizes.length} sizes from 0 to ${limit} bytes, both ways, raw chat and /echo`);
    // One byte over the chat's limit, however well it compresses: 1009.
    sender.send(Buffer.alloc(limit + 1, 'a'));
    const closed = await sender.closed;
    assert.equal(closed.code, 1009);
  } finally {
    for (const ws of [sender, receiver, echo]) ws.terminate();
  }
}
