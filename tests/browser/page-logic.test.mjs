// The page's pure helpers (www/app.js exports them under node): the URL
// fragment, room names, the socket URL of a resume, what a line typed
// in the composer becomes, the sign-in token and the operator's commands. No browser, no server: `node --test page-logic.test.mjs`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const page = require('../../www/app.js');
const {
  foldRoom, parseFragment, formatFragment, withFragmentKey, socketUrl, composeLine, ROOM_NAME_MAX,
  takeToken, tokenClaims, socketProtocols, moderationLine,
} = page;

test('room names fold case and fullwidth forms, and are 1 to ROOM_NAME_MAX of a-z 0-9 - _', () => {
  assert.equal(foldRoom('rust'), '#rust');
  assert.equal(foldRoom('#Rust'), '#rust');
  assert.equal(foldRoom('  #go-lang_2 '), '#go-lang_2');
  assert.equal(foldRoom('＃ＲＵＳＴ'), '#rust', 'fullwidth # and letters');
  assert.equal(foldRoom('#' + 'a'.repeat(ROOM_NAME_MAX)), '#' + 'a'.repeat(ROOM_NAME_MAX));
  assert.equal(foldRoom('#' + 'a'.repeat(ROOM_NAME_MAX + 1)), null, 'one over the longest');
  assert.equal(foldRoom('#a'), '#a', 'the shortest');
  for (const bad of ['', '#', '##rust', '#ru st', '#rüst', '#ru.st', '#ru/st', '#\u212Aelvin', null, undefined]) {
    assert.equal(foldRoom(bad), null, `${JSON.stringify(bad)} is not a room name`);
  }
});

test('the fragment is key=value pairs joined by &, decoded, first key wins, bad pairs skipped', () => {
  assert.deepEqual([...parseFragment('#room=rust')], [['room', 'rust']]);
  assert.deepEqual([...parseFragment('')], []);
  assert.deepEqual([...parseFragment('#')], []);
  assert.deepEqual([...parseFragment('room=rust&token=a%2Bb%3D&x')],
    [['room', 'rust'], ['token', 'a+b='], ['x', '']]);
  assert.deepEqual([...parseFragment('#room=go&room=rust')], [['room', 'go']]);
  assert.deepEqual([...parseFragment('#a=%E0%A4&room=rust&&=v')], [['room', 'rust']],
    'a pair that does not decode and an empty key are skipped');
  assert.deepEqual([...parseFragment('#note=a+b')], [['note', 'a+b']], '+ is a plus, not a space');
});

test('changing the room keeps the other keys of the fragment in their place', () => {
  assert.equal(withFragmentKey('#token=abc&room=go', 'room', 'rust'), 'token=abc&room=rust');
  assert.equal(withFragmentKey('#token=abc', 'room', 'rust'), 'token=abc&room=rust');
  assert.equal(withFragmentKey('', 'room', 'rust'), 'room=rust');
  assert.equal(withFragmentKey('#room=go&k=v', 'room', null), 'k=v');
  assert.equal(formatFragment(new Map([['a b', 'c&d=e']])), 'a%20b=c%26d%3De');
  assert.deepEqual([...parseFragment(formatFragment(new Map([['a b', 'c&d=e']])))], [['a b', 'c&d=e']]);
});

test('the socket URL resumes every room after the last id, and is bare for a first #main connection', () => {
  const base = { scheme: 'ws:', host: '127.0.0.1:8080' };
  assert.equal(socketUrl({ ...base, lastId: 0, epoch: null, rooms: ['#main'] }), 'ws://127.0.0.1:8080/');
  assert.equal(socketUrl({ ...base, lastId: 42, epoch: 'k3x9', rooms: ['#main'] }),
    'ws://127.0.0.1:8080/?since=42&epoch=k3x9');
  assert.equal(socketUrl({ ...base, lastId: 42, epoch: 'k3x9', rooms: ['#main', '#rust', '#go'] }),
    'ws://127.0.0.1:8080/?since=42&epoch=k3x9&rooms=main,rust,go');
  assert.equal(socketUrl({ ...base, lastId: 0, epoch: 'k3x9', rooms: ['#rust'] }),
    'ws://127.0.0.1:8080/?rooms=rust', 'no since before any message');
  assert.equal(socketUrl({ ...base, lastId: 7, epoch: null, rooms: [] }),
    'ws://127.0.0.1:8080/?since=7&rooms=', 'in no room: an empty list');
  assert.equal(socketUrl({ scheme: 'wss:', host: 'chat.example', lastId: 1, epoch: 'e', rooms: ['#main'] }),
    'wss://chat.example/?since=1&epoch=e');
});

test('the composer speaks in the room shown: bare text in #main, /say elsewhere, /msg in a direct conversation', () => {
  const main = { kind: 'room', name: '#main' };
  const rust = { kind: 'room', name: '#rust' };
  const ann = { kind: 'dm', name: 'ann', nick: 'ann' };
  const rooms = ['#main', '#rust'];
  assert.deepEqual(composeLine('hello', main, rooms), { line: 'hello' });
  assert.deepEqual(composeLine('hello\nworld', rust, rooms), { line: '/say #rust hello\nworld' });
  assert.deepEqual(composeLine('/me waves', rust, rooms), { line: '/say #rust /me waves' });
  assert.deepEqual(composeLine('/me waves', main, rooms), { line: '/me waves' });
  assert.deepEqual(composeLine('//not a command', rust, rooms), { line: '/say #rust /not a command' },
    '/say takes its text as it is: "//" becomes "/" here, as the server does for bare text');
  assert.deepEqual(composeLine('//not a command', main, rooms), { line: '//not a command' });
  assert.deepEqual(composeLine('//me waves', rust, rooms), { line: '/say #rust //me waves' },
    'not "/say #rust /me waves", which would be an action');
  assert.deepEqual(composeLine('//x', { kind: 'dm', name: 'ann', nick: 'ann' }, rooms), { line: '/msg ann /x', dm: 'ann' });
  assert.deepEqual(composeLine('hi there', ann, rooms), { line: '/msg ann hi there', dm: 'ann' });
  assert.deepEqual(composeLine('/me waves', ann, rooms), { problem: 'action_in_dm' });
  assert.deepEqual(composeLine('hello', null, []), { problem: 'no_conversation' });
});

test('commands typed in the composer name the room shown when they name none', () => {
  const rust = { kind: 'room', name: '#rust' };
  const main = { kind: 'room', name: '#main' };
  const ann = { kind: 'dm', name: 'ann', nick: 'ann' };
  const rooms = ['#main', '#rust'];
  assert.deepEqual(composeLine('/join Go', rust, rooms), { line: '/join #go', join: '#go' });
  assert.deepEqual(composeLine('/join #go', rust, rooms), { line: '/join #go', join: '#go' });
  assert.deepEqual(composeLine('/join #RUST', main, rooms), { show: '#rust' }, 'already in it: just show it');
  assert.deepEqual(composeLine('/join #no way', main, rooms), { problem: 'room_invalid' });
  assert.deepEqual(composeLine('/part', rust, rooms), { line: '/part #rust' });
  assert.deepEqual(composeLine('/part #go', rust, rooms), { line: '/part #go' });
  assert.deepEqual(composeLine('/part', ann, rooms), { problem: 'not_a_room' });
  assert.deepEqual(composeLine('/topic Rust and friends', rust, rooms), { line: '/topic #rust Rust and friends' });
  assert.deepEqual(composeLine('/topic', rust, rooms), { line: '/topic #rust' }, 'asks');
  assert.deepEqual(composeLine('/topic #go ', rust, rooms), { line: '/topic #go ' }, 'clears: the room then a space');
  assert.deepEqual(composeLine('/topic #go gophers', rust, rooms), { line: '/topic #go gophers' });
  assert.deepEqual(composeLine('/who', rust, rooms), { line: '/who #rust' });
  assert.deepEqual(composeLine('/who', main, rooms), { line: '/who' });
  assert.deepEqual(composeLine('/msg bob hi', rust, rooms), { line: '/msg bob hi', dm: 'bob' });
  assert.deepEqual(composeLine('/nick ann', rust, rooms), { line: '/nick ann' });
  assert.deepEqual(composeLine('/rooms', rust, rooms), { line: '/rooms' });
});

// A JWT-shaped string with these claims (the signature is not checked here).
const jwt = (claims) => ['{"alg":"HS256"}', JSON.stringify(claims)]
  .map((part) => Buffer.from(part).toString('base64url')).join('.') + '.c2lnbmF0dXJl';

test('the sign-in token is taken out of the fragment, every other key kept in its place', () => {
  assert.deepEqual(takeToken('#room=rust&token=aaa.bbb.ccc&x=1'), { token: 'aaa.bbb.ccc', hash: 'room=rust&x=1' });
  assert.deepEqual(takeToken('#token=aaa.bbb.ccc'), { token: 'aaa.bbb.ccc', hash: '' });
  assert.deepEqual(takeToken('#room=rust'), { token: null, hash: 'room=rust' });
  assert.deepEqual(takeToken('#token=&room=go'), { token: null, hash: 'room=go' }, 'an empty token is none');
  assert.deepEqual(takeToken(''), { token: null, hash: '' });
});

test('the token is offered as a second subprotocol after wschat.v1', () => {
  assert.deepEqual(socketProtocols(null), ['wschat.v1']);
  assert.deepEqual(socketProtocols('aaa.bbb.ccc'), ['wschat.v1', 'wschat.auth.aaa.bbb.ccc']);
});

test('the claims of a token are read without its signature, and anything else is null', () => {
  assert.deepEqual(tokenClaims(jwt({ sub: 'u-1', exp: 1700000000, name: 'Zoë' })), { sub: 'u-1', exp: 1700000000, name: 'Zoë' });
  for (const bad of ['', 'a.b', 'a.b.c.d', 'a.!!.c', jwt([1, 2]), 'e30.bm90IGpzb24.c2ln', null, undefined]) {
    assert.equal(tokenClaims(bad), null, `${JSON.stringify(bad)} has no claims`);
  }
});

test('the operator\'s menu makes /kick, /ban and /mute lines in the server\'s argument order', () => {
  assert.equal(moderationLine({ action: 'kick', nick: 'gus', room: null, reason: 'too loud' }), '/kick gus too loud');
  assert.equal(moderationLine({ action: 'kick', nick: 'gus', room: '#rust', reason: '' }), '/kick gus #rust');
  assert.equal(moderationLine({ action: 'ban', nick: 'gus', room: null, duration: '1h', reason: ' spam\n links ' }),
    '/ban gus 1h spam links', 'whitespace in the reason becomes single spaces');
  assert.equal(moderationLine({ action: 'ban', nick: 'gus', room: '#rust', duration: '', reason: '' }), '/ban gus #rust',
    'no duration: until lifted');
  assert.equal(moderationLine({ action: 'mute', nick: 'gus', room: null, duration: '5m', reason: 'ignored' }), '/mute gus 5m',
    'a mute has no reason');
});
