// Rooms and direct messages in the page, against the real server: joining
// and creating rooms from two pages, what each room shows, unread counts,
// direct messages, the room in the URL fragment, resuming every room after
// a reconnect, and the layout at 360 px. Run by tests/browser/run.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  WAIT, RECONNECT_WAIT, TEST_TIMEOUT, DESKTOP, PHONE, session, openSession, closeSession,
  startServer, stopServer, sleep, newPage, closePage, waitOnline, join, say, expectText,
  expectMessage, messageCount, shot,
} from './harness.mjs';

let server;
let baseUrl;

before(async () => {
  await openSession();
  server = await startServer('127.0.0.1:0');
  baseUrl = `http://127.0.0.1:${server.port}/`;
  session.baseUrl = baseUrl;
});

after(async () => {
  await closeSession();
  await stopServer(server);
});

// ------------------------------------------------------------------ helpers

const roomButton = (page, name) => page.locator(`#room-list button.conv[data-key="${name}"]`);
const dmButton = (page, nick) => page.locator(`#dm-list button.conv[data-key="@${nick.toLowerCase()}"]`);

// The texts of the messages the page shows (the conversation on screen).
const shownTexts = (page) => page.locator('#messages li.msg .text').allTextContents();

async function expectTitle(page, title) {
  await expectText(page.locator('#conv-title'), title);
}

// On a phone the lists are behind the toggle.
async function openPanel(page) {
  const collapsed = await page.locator('#people-toggle').isVisible();
  if (collapsed && !(await page.evaluate(() => document.body.classList.contains('people-open')))) {
    await page.locator('#people-toggle').click();
  }
  await page.locator('#room-list').waitFor({ state: 'visible' });
}

// `shown`: the name as the server writes it (folded).
async function joinByForm(page, typed, shown = typed) {
  await openPanel(page);
  await page.locator('#join-input').fill(typed);
  await page.locator('#join-submit').click();
  await expectTitle(page, shown);
}

async function showRoom(page, name) {
  await openPanel(page);
  await roomButton(page, name).click();
  await expectTitle(page, name);
}

async function unreadOf(locator) {
  const badge = locator.locator('.badge');
  return (await badge.count()) ? Number((await badge.textContent()).trim()) : 0;
}

async function waitUnread(locator, n) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const got = await unreadOf(locator);
    if (got === n) return;
    if (Date.now() > deadline) throw new Error(`expected ${n} unread on ${locator}, it shows ${got}`);
    await sleep(50);
  }
}

async function memberNames(page) {
  return (await page.locator('#user-list .nick').allTextContents()).map((s) => s.trim()).sort();
}

async function waitMembers(page, names) {
  const want = [...names].sort();
  const deadline = Date.now() + WAIT;
  for (;;) {
    const got = await memberNames(page);
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    if (Date.now() > deadline) throw new Error(`expected members ${want.join(', ')}, the page shows ${got.join(', ')}`);
    await sleep(50);
  }
}

async function noHorizontalOverflow(page) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  assert.ok(scroll <= client, `horizontal overflow: scrollWidth ${scroll} > clientWidth ${client}`);
}

// ------------------------------------------------------------------ scenarios

test('two pages create and join a room; a message in one room is not shown in another', { timeout: TEST_TIMEOUT }, async () => {
  const ann = await newPage(DESKTOP);
  const bob = await newPage(DESKTOP);
  const cat = await newPage(DESKTOP);
  try {
    await join(ann, 'ann');
    await join(bob, 'bob');
    await join(cat, 'cat');

    // Created by the field and the button, joined by a typed command.
    await joinByForm(ann, 'Rust', '#rust');
    await say(bob, '/join #rust');
    await expectTitle(bob, '#rust');
    for (const page of [ann, bob]) {
      await roomButton(page, '#main').waitFor();
      await roomButton(page, '#rust').waitFor();
      await waitMembers(page, ['ann', 'bob']);
    }
    await expectText(ann.locator('#messages li.notice.join .notice-text').last(), 'bob joined');
    assert.equal(await roomButton(cat, '#rust').count(), 0, 'cat is not in #rust');

    await say(ann, 'only in rust');
    await expectMessage(bob, 'only in rust', { from: 'ann' });
    await expectMessage(ann, 'only in rust', { from: 'ann' });

    // #main, spoken to from the other page: not in #rust's list.
    await showRoom(bob, '#main');
    await say(bob, 'only in main');
    await expectMessage(cat, 'only in main', { from: 'bob' });
    await expectMessage(bob, 'only in main', { from: 'bob' });
    assert.equal(await messageCount(bob, 'only in rust'), 0, '#main does not show #rust\'s message');
    assert.equal(await messageCount(cat, 'only in rust'), 0, 'a page outside #rust never sees it');
    assert.equal(await messageCount(ann, 'only in main'), 0, 'ann looks at #rust, which does not show #main\'s message');
    await showRoom(ann, '#main');
    await expectMessage(ann, 'only in main', { from: 'bob' });
    assert.equal(await messageCount(ann, 'only in rust'), 0);
    await waitMembers(ann, ['ann', 'bob', 'cat']);
    await shot(ann, 'rooms-desktop-main', DESKTOP);

    for (const page of [ann, bob, cat]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(ann);
    await closePage(bob);
    await closePage(cat);
  }
});

test('unread counts: messages in a room not shown are counted, and cleared by showing it', { timeout: TEST_TIMEOUT }, async () => {
  const dan = await newPage(DESKTOP);
  const eve = await newPage(PHONE);
  try {
    await join(dan, 'dan');
    await join(eve, 'eve');
    await joinByForm(dan, '#news');
    await joinByForm(eve, '#news');
    await showRoom(eve, '#main');

    for (const t of ['news one', 'news two', 'news three']) await say(dan, t);
    await waitUnread(roomButton(eve, '#news'), 3);
    assert.equal(await unreadOf(roomButton(eve, '#main')), 0, 'the room shown counts nothing');
    assert.equal(await unreadOf(roomButton(dan, '#news')), 0, 'your own messages are not unread');
    // On a phone the toggle says there is something to read elsewhere.
    await eve.keyboard.press('Escape');
    await expectText(eve.locator('#toggle-unread'), '3');
    assert.match(await eve.locator('#people-toggle').getAttribute('aria-label'), /3 unread/);
    await shot(eve, 'rooms-phone-unread', PHONE);

    await showRoom(eve, '#news');
    for (const t of ['news one', 'news two', 'news three']) await expectMessage(eve, t, { from: 'dan' });
    await waitUnread(roomButton(eve, '#news'), 0);
    assert.equal(await eve.locator('#toggle-unread').isVisible(), false);

    // A message in the room shown is not unread either.
    await say(dan, 'news four');
    await expectMessage(eve, 'news four');
    assert.equal(await unreadOf(roomButton(eve, '#news')), 0);

    // Leaving: the room goes from the list, #main is shown, and the room's
    // members see the leave.
    await eve.locator('#conv-leave').click();
    await expectTitle(eve, '#main');
    await roomButton(eve, '#news').waitFor({ state: 'detached' });
    assert.equal(new URL(eve.url()).hash, '#room=main');
    await expectText(dan.locator('#messages li.notice.leave .notice-text').last(), 'eve left');
    await waitMembers(dan, ['dan']);
    assert.deepEqual([...dan.pageErrors, ...eve.pageErrors], []);
  } finally {
    await closePage(dan);
    await closePage(eve);
  }
});

test('a direct message between two pages, seen by nobody else', { timeout: TEST_TIMEOUT }, async () => {
  const fay = await newPage(DESKTOP);
  const gus = await newPage(DESKTOP);
  const hal = await newPage(DESKTOP);
  try {
    await join(fay, 'fay');
    await join(gus, 'gus');
    await join(hal, 'hal');
    await waitMembers(fay, ['fay', 'gus', 'hal']);

    // Clicking a person opens the conversation with them.
    await fay.locator('#user-list button.user-button', { hasText: 'gus' }).click();
    await expectTitle(fay, 'Direct messages with gus');
    await say(fay, 'psst, gus');
    await expectMessage(fay, 'psst, gus', { from: 'fay' });
    await waitUnread(dmButton(gus, 'fay'), 1);
    assert.equal(await messageCount(gus, 'psst, gus'), 0, 'not in #main');
    await dmButton(gus, 'fay').click();
    await expectTitle(gus, 'Direct messages with fay');
    await expectMessage(gus, 'psst, gus', { from: 'fay' });
    await waitUnread(dmButton(gus, 'fay'), 0);

    // /msg typed in a room: the reply goes to fay's conversation with gus.
    await showRoom(gus, '#main');
    await say(gus, '/msg fay hello back');
    await expectTitle(gus, 'Direct messages with fay');
    await expectMessage(gus, 'hello back', { from: 'gus' });
    await expectMessage(fay, 'hello back', { from: 'gus' });
    assert.equal(await messageCount(fay, 'hello back'), 1);

    // A new nickname: the conversation follows it.
    await say(gus, '/nick gus2');
    await dmButton(fay, 'gus2').waitFor();
    assert.equal(await dmButton(fay, 'gus').count(), 0);
    await expectTitle(fay, 'Direct messages with gus2');
    await expectText(fay.locator('#messages li.notice.nick .notice-text').last(), 'gus is now known as gus2');

    // Nobody else saw either line, in any conversation.
    await say(hal, 'hal in main');
    await expectMessage(hal, 'hal in main');
    assert.equal(await hal.locator('#dm-list button').count(), 0, 'hal has no direct conversation');
    assert.equal(await messageCount(hal, 'psst, gus'), 0);
    assert.equal(await messageCount(hal, 'hello back'), 0);

    // A nickname nobody has: said in plain words where it was typed.
    await say(fay, '/msg nobody-here hi');
    await expectText(fay.locator('#messages li.notice.error .notice-text').last(), 'Nobody here is called “nobody-here”.');
    await shot(fay, 'rooms-desktop-direct', DESKTOP);
    for (const page of [fay, gus, hal]) assert.deepEqual(page.pageErrors, []);
  } finally {
    await closePage(fay);
    await closePage(gus);
    await closePage(hal);
  }
});

test('the URL fragment opens a room, joining it, and follows the room shown', { timeout: TEST_TIMEOUT }, async () => {
  const ivy = await newPage(DESKTOP);
  const jon = await newPage(DESKTOP);
  try {
    await join(ivy, 'ivy');
    await joinByForm(ivy, '#linked');
    assert.equal(new URL(ivy.url()).hash, '#room=linked', 'showing a room puts it in the fragment');
    await ivy.locator('#topic-edit').click();
    await ivy.locator('#topic-input').fill('where the link leads');
    await ivy.locator('#topic-input').press('Enter');
    await expectText(ivy.locator('#conv-topic'), 'where the link leads');
    await say(ivy, 'waiting for you');

    // Another key in the fragment is kept, and sent nowhere.
    await join(jon, 'jon', `${baseUrl}#ref=secret-xyz&room=LINKED`);
    await expectTitle(jon, '#linked');
    await expectText(jon.locator('#conv-topic'), 'where the link leads');
    await expectMessage(jon, 'waiting for you', { from: 'ivy' });
    await waitMembers(jon, ['ivy', 'jon']);
    assert.equal(new URL(jon.url()).hash, '#ref=secret-xyz&room=linked');

    await showRoom(jon, '#main');
    assert.equal(new URL(jon.url()).hash, '#ref=secret-xyz&room=main');
    // Changing the fragment by hand switches rooms without a reload.
    await jon.evaluate(() => { location.hash = 'ref=secret-xyz&room=linked'; });
    await expectTitle(jon, '#linked');
    const urls = await jon.evaluate(() => window.__sockets.map((s) => s.url));
    for (const url of urls) assert.doesNotMatch(url, /secret|token/, `the fragment stays in the page: ${url}`);

    // A room name that cannot exist: said in plain words.
    await jon.evaluate(() => { location.hash = 'room=no%20such%20name'; });
    await expectText(jon.locator('#messages li.notice.error .notice-text').last(), /cannot exist/);
    assert.deepEqual([...ivy.pageErrors, ...jon.pageErrors], []);
  } finally {
    await closePage(ivy);
    await closePage(jon);
  }
});

// Keeps `page` offline: its socket is dropped and every new one fails
// (harness.mjs: window.__blockSockets) until `back` is called.
async function dropAndHold(page) {
  await page.evaluate(() => { window.__blockSockets = true; window.__sockets.at(-1).close(); });
  await page.locator('#status[data-state="reconnecting"]').waitFor();
  return async () => {
    await page.evaluate(() => { window.__blockSockets = false; });
    if (await page.locator('#retry-now').isVisible()) await page.locator('#retry-now').click().catch(() => {});
    await waitOnline(page, RECONNECT_WAIT);
  };
}

test('a reconnect resumes two rooms: nothing repeated, nothing missing', { timeout: 90_000 }, async () => {
  const kim = await newPage(DESKTOP);
  const lee = await newPage(DESKTOP);
  try {
    await join(kim, 'kim');
    await join(lee, 'lee');
    await joinByForm(kim, '#two');
    await joinByForm(lee, '#two');
    await say(lee, 'two before');
    await showRoom(lee, '#main');
    await say(lee, 'main before');
    await expectMessage(kim, 'two before');
    await showRoom(kim, '#main');
    await expectMessage(kim, 'main before');

    const back = await dropAndHold(kim);
    const missed = { '#main': [], '#two': [] };
    for (let i = 1; i <= 3; i++) {
      for (const room of ['#main', '#two']) {
        await showRoom(lee, room);
        const text = `${room.slice(1)} missed ${i}`;
        await say(lee, text);
        await expectMessage(lee, text);
        missed[room].push(text);
      }
    }
    await back();
    const resumed = await kim.evaluate(() => window.__sockets.at(-1).url);
    assert.match(resumed, /\?since=\d+&epoch=[0-9a-z_-]+&rooms=main,two$/, `resumed with ${resumed}`);
    await showRoom(lee, '#two');
    await say(lee, 'two after');
    await showRoom(lee, '#main');
    await say(lee, 'main after');

    const want = {
      '#main': ['main before', ...missed['#main'], 'main after'],
      '#two': ['two before', ...missed['#two'], 'two after'],
    };
    for (const room of ['#main', '#two']) {
      await showRoom(kim, room);
      await expectMessage(kim, want[room].at(-1));
      const texts = await shownTexts(kim); // #main also holds earlier tests' messages
      assert.deepEqual(texts.slice(texts.indexOf(want[room][0])), want[room], `${room}: every message once, in order`);
      const ids = await kim.locator('#messages li.msg').evaluateAll((lis) => lis.map((li) => Number(li.dataset.id)));
      assert.deepEqual(ids, [...ids].sort((a, b) => a - b), `${room}: ids in order`);
    }
    assert.equal(await kim.locator('#messages li.notice.restart').count(), 0, 'no gap notice: nothing was lost');
    assert.deepEqual([...kim.pageErrors, ...lee.pageErrors], []);
  } finally {
    await closePage(kim);
    await closePage(lee);
  }
});

test('a reload keeps the rooms of the tab, the room shown and each history once', { timeout: TEST_TIMEOUT }, async () => {
  const uma = await newPage(DESKTOP);
  try {
    await join(uma, 'uma');
    await joinByForm(uma, '#kept-a');
    await say(uma, 'line in a');
    await joinByForm(uma, '#kept-b');
    await say(uma, 'line in b');
    await expectMessage(uma, 'line in b');
    await uma.reload();
    await waitOnline(uma);
    await expectTitle(uma, '#kept-b');
    assert.match(await uma.evaluate(() => window.__sockets.at(-1).url), /\?rooms=main,kept-a,kept-b$/);
    await expectMessage(uma, 'line in b');
    assert.equal(await messageCount(uma, 'line in b'), 1);
    await showRoom(uma, '#kept-a');
    await expectMessage(uma, 'line in a');
    assert.equal(await messageCount(uma, 'line in a'), 1);
    assert.deepEqual(uma.pageErrors, []);
  } finally {
    await closePage(uma);
  }
});

test('kept rooms the server refuses after a reload: the page comes back in #main alone', { timeout: TEST_TIMEOUT }, async () => {
  const s = await startServer('127.0.0.1:0', ['--max-rooms-per-client', '2']);
  const vic = await newPage(DESKTOP);
  try {
    await join(vic, 'vic', `http://127.0.0.1:${s.port}/`);
    await vic.evaluate(() => sessionStorage.setItem('wschat.rooms', '["#main","#one","#two"]'));
    await vic.reload();
    await waitOnline(vic, RECONNECT_WAIT);
    const urls = await vic.evaluate(() => window.__sockets.map((w) => w.url));
    assert.match(urls.at(-2), /\?rooms=main,one,two$/, 'asked for the kept rooms first');
    assert.match(urls.at(-1), /\/$/, 'then for #main alone');
    await expectTitle(vic, '#main');
    assert.equal(await vic.evaluate(() => sessionStorage.getItem('wschat.rooms')), '["#main"]');
  } finally {
    await closePage(vic);
    await stopServer(s);
  }
});

test('a restart with --history-file: both rooms resume without repeats or gaps', { timeout: 90_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wschat-rooms-'));
  const file = path.join(dir, 'history.jsonl');
  let s = await startServer('127.0.0.1:0', ['--history-file', file]);
  const url = `http://127.0.0.1:${s.port}/`;
  const mia = await newPage(DESKTOP);
  try {
    await join(mia, 'mia', url);
    await say(mia, 'kept in main');
    await joinByForm(mia, '#kept');
    await say(mia, 'kept in kept');
    await expectMessage(mia, 'kept in kept');

    await stopServer(s, 'SIGTERM');
    await mia.locator('#status[data-state="reconnecting"]').waitFor();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try { s = await startServer(`127.0.0.1:${s.port}`, ['--history-file', file]); break; } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(250);
      }
    }
    await waitOnline(mia, RECONNECT_WAIT);
    assert.match(await mia.evaluate(() => window.__sockets.at(-1).url), /rooms=main,kept$/);
    await say(mia, 'after restart');
    await expectMessage(mia, 'after restart');
    assert.deepEqual(await shownTexts(mia), ['kept in kept', 'after restart']);
    await showRoom(mia, '#main');
    assert.deepEqual(await shownTexts(mia), ['kept in main']);
    assert.equal(await mia.locator('#messages li.notice.restart').count(), 0);
  } finally {
    await closePage(mia);
    await stopServer(s);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the topic is set and cleared from the page; "//" and "/me" lines in a room', { timeout: TEST_TIMEOUT }, async () => {
  const rae = await newPage(DESKTOP);
  const sam = await newPage(DESKTOP);
  const tia = await newPage(DESKTOP);
  try {
    await join(rae, 'rae');
    await join(sam, 'sam');
    await joinByForm(rae, '#topics');
    await joinByForm(sam, '#topics');
    await expectText(sam.locator('#conv-topic'), 'No topic');
    await rae.locator('#topic-edit').click();
    await rae.locator('#topic-input').fill('first topic');
    await rae.locator('#topic-input').press('Enter');
    await expectText(sam.locator('#conv-topic'), 'first topic');
    await expectText(sam.locator('#messages li.notice.topic .notice-text').last(), 'rae set the topic: first topic');
    // An empty field clears it.
    await rae.locator('#topic-edit').click();
    assert.equal(await rae.locator('#topic-input').inputValue(), 'first topic', 'the field starts from the topic');
    await rae.locator('#topic-input').fill('');
    await rae.locator('#topic-input').press('Enter');
    await expectText(sam.locator('#conv-topic'), 'No topic');
    await expectText(sam.locator('#messages li.notice.topic .notice-text').last(), 'rae cleared the topic.');
    // Typed: "/topic TEXT" sets the topic of the room shown.
    await say(sam, '/topic typed topic');
    await expectText(rae.locator('#conv-topic'), 'typed topic');

    await say(rae, '//etc/passwd is a path');
    await expectMessage(sam, '/etc/passwd is a path', { from: 'rae' });
    await say(rae, '/me waves in topics');
    await sam.locator('#messages li.msg.action').filter({ hasText: 'waves in topics' }).waitFor();

    // #main's topic comes with the welcome: a newcomer sees it at once,
    // without a topic event.
    await say(rae, '/topic #main the front room');
    await showRoom(rae, '#main');
    await expectText(rae.locator('#conv-topic'), 'the front room');
    await tia.goto(baseUrl);
    await waitOnline(tia);
    await expectText(tia.locator('#conv-title'), '#main');
    await expectText(tia.locator('#conv-topic'), 'the front room');
    assert.equal(await tia.locator('#messages li.notice.topic').count(), 0, 'no topic event told it');
    await say(rae, '/topic #main ');
    await expectText(tia.locator('#conv-topic'), 'No topic');
    assert.deepEqual([...rae.pageErrors, ...sam.pageErrors, ...tia.pageErrors], []);
  } finally {
    await closePage(rae);
    await closePage(sam);
    await closePage(tia);
  }
});

test('errors about a room are shown in plain words where they belong', { timeout: TEST_TIMEOUT }, async () => {
  const ned = await newPage(DESKTOP);
  try {
    await join(ned, 'ned');
    // Refused before sending: the note under the box says why.
    await say(ned, '/join #this-name-is-far-too-long-for-a-room');
    await expectText(ned.locator('#composer-note'), /A room name is # and 1 to 32 letters/);
    await ned.locator('#composer-input').fill('');
    // The field beside the list says the same.
    await ned.locator('#join-input').fill('no spaces please');
    await ned.locator('#join-submit').click();
    await expectText(ned.locator('#join-error'), /A room name is # and 1 to 32 letters/);
    // From the server: a room the page is not in.
    await say(ned, '/say #elsewhere hello');
    await expectText(ned.locator('#messages li.notice.error .notice-text').last(), 'You are not in #elsewhere. Join it first.');
    assert.deepEqual(ned.pageErrors, []);
  } finally {
    await closePage(ned);
  }
});

test('at 360 px the lists collapse and nothing scrolls sideways; screenshots at 1280 and 360 px', { timeout: TEST_TIMEOUT }, async () => {
  const oz = await newPage(PHONE);
  const pia = await newPage(DESKTOP);
  try {
    await join(oz, 'oz');
    await join(pia, 'pia-with-a-long-name');
    const long = '#' + 'a-very-long-room-name-for-tests'.slice(0, 31);
    await joinByForm(pia, long);
    await pia.locator('#topic-edit').click();
    await pia.locator('#topic-input').fill('A long topic that says a great deal about what this room is for, and then some more');
    await pia.locator('#topic-input').press('Enter');
    await joinByForm(oz, long);
    await expectText(oz.locator('#conv-topic'), /A long topic/);
    await say(pia, 'a message with a verylongwordthatdoesnotbreakanywhereatallandgoesonandonandonandon');
    await expectMessage(oz, /verylongword/);
    await noHorizontalOverflow(pia);
    await shot(pia, 'rooms-desktop-room', DESKTOP);
    await pia.locator('#user-list button.user-button', { hasText: 'oz' }).click();
    await say(pia, 'hello oz');
    await waitUnread(dmButton(oz, 'pia-with-a-long-name'), 1);

    // The lists are collapsed behind the toggle (they slide away in 0.2 s).
    await oz.locator('#room-list').waitFor({ state: 'hidden', timeout: 2_000 });
    await noHorizontalOverflow(oz);
    await shot(oz, 'rooms-phone-room', PHONE);
    await openPanel(oz);
    await noHorizontalOverflow(oz);
    await shot(oz, 'rooms-phone-lists-open', PHONE);
    await dmButton(oz, 'pia-with-a-long-name').click();
    await expectMessage(oz, 'hello oz');
    // Choosing a conversation closes the lists.
    await oz.locator('#room-list').waitFor({ state: 'hidden', timeout: 2_000 });
    await noHorizontalOverflow(oz);
    await shot(oz, 'rooms-phone-direct', PHONE);

    await shot(pia, 'rooms-desktop-direct-sent', DESKTOP);
    await shot(pia, 'rooms-phone-direct-sent', PHONE);
    await noHorizontalOverflow(pia);
    assert.deepEqual([...oz.pageErrors, ...pia.pageErrors], []);
  } finally {
    await closePage(oz);
    await closePage(pia);
  }
});
