// wschat browser client (protocol wschat.v1). Vanilla JS, no dependencies.
//
// Safety rule for this file: text that comes from the network or from the
// user is only ever put into the page with textContent / createTextNode.
'use strict';

(function () {
  // ================================================================ pure helpers
  // No DOM and no state: the URL fragment, room names, the socket URL and
  // what a line typed in the composer becomes on the wire. Node loads them
  // too (tests/browser/page-logic.test.mjs), through module.exports below.
  const ROOM_NAME_MAX = 32;
  // Where every connection starts, and where bare text goes.
  const MAIN = '#main';

  // A room name as the server writes it ("#rust"), or null if `input` is
  // not one: fullwidth forms folded to ASCII first, then ASCII case (only
  // ASCII: "K", the Kelvin sign, is not "k"), then 1–32 of a-z 0-9 - _.
  // The leading "#" is optional here; the page adds it.
  function foldRoom(input) {
    let s = String(input === undefined || input === null ? '' : input).trim();
    s = s.replace(/[\uFF01-\uFF5E]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xFEE0));
    if (s.startsWith('#')) s = s.slice(1);
    s = s.replace(/[A-Z]/g, (c) => c.toLowerCase());
    const re = new RegExp('^[a-z0-9_-]{1,' + ROOM_NAME_MAX + '}$');
    return re.test(s) ? '#' + s : null;
  }

  // A nickname folded the way the server compares them (ignoring ASCII
  // case and fullwidth forms): the key of a direct-message conversation.
  function foldNick(nick) {
    return String(nick)
      .replace(/[\uFF01-\uFF5E]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xFEE0))
      .replace(/[A-Z]/g, (c) => c.toLowerCase());
  }

  function decodePart(s) {
    try { return decodeURIComponent(s); } catch (_) { return null; }
  }

  // The URL fragment as `key=value` pairs joined by "&" ("#room=rust"), in
  // order; the first of a repeated key wins; a pair that does not decode
  // is skipped. Other keys than `room` are kept as they are, so that later
  // features can add theirs. The fragment never leaves the browser.
  function parseFragment(hash) {
    let s = String(hash || '');
    if (s.startsWith('#')) s = s.slice(1);
    const out = new Map();
    for (const pair of s.split('&')) {
      if (!pair) continue;
      const eq = pair.indexOf('=');
      const key = decodePart(eq < 0 ? pair : pair.slice(0, eq));
      const value = decodePart(eq < 0 ? '' : pair.slice(eq + 1));
      if (!key || value === null || out.has(key)) continue;
      out.set(key, value);
    }
    return out;
  }

  function formatFragment(pairs) {
    const parts = [];
    for (const [key, value] of pairs) {
      parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(value));
    }
    return parts.join('&');
  }

  // The fragment with `key` set to `value` (removed when value is null),
  // every other pair kept in its place.
  function withFragmentKey(hash, key, value) {
    const pairs = parseFragment(hash);
    if (value === null || value === undefined) pairs.delete(key);
    else pairs.set(key, String(value));
    return formatFragment(pairs);
  }

  // The chat socket's URL. `since` and `epoch`: the server sends only the
  // messages after the last one this page has, in every room it lists, so
  // a reconnect neither repeats nor drops a line; if that id belongs to a
  // history the server no longer has (its epoch changed), it says `gap`
  // and sends what it has (chapter 06). `rooms`: the rooms to be back in;
  // left out when it is only #main, the server's default.
  function socketUrl(o) {
    const params = [];
    if (o.lastId > 0) {
      params.push('since=' + o.lastId);
      if (o.epoch) params.push('epoch=' + encodeURIComponent(o.epoch));
    }
    const rooms = (o.rooms || ['#main']).map((r) => String(r).replace(/^#/, ''));
    if (!(rooms.length === 1 && rooms[0] === 'main')) {
      params.push('rooms=' + rooms.map(encodeURIComponent).join(','));
    }
    return o.scheme + '//' + o.host + '/' + (params.length ? '?' + params.join('&') : '');
  }

  // What a line typed in the composer becomes, given the conversation it
  // was typed in (`{kind: 'room', name: '#rust'}` or `{kind: 'dm', nick}`)
  // and the rooms the page is in. Returns one of
  //   {line}                the text to send (plus `dm`: the nickname of a /msg)
  //   {show: '#rust'}       a /join of a room the page is already in
  //   {problem: 'code'}     refused here, in the words of `onError`'s codes
  // Another room than #main speaks with `/say #room TEXT`. In #main the
  // page sends what every wschat.v1 client sends there (bare text, `/me`,
  // `//text`), which the server takes as #main's by definition.
  function composeLine(raw, conv, inRooms) {
    const text = String(raw);
    const cmd = /^\/(\S+)(?:[ \t]+([\s\S]*))?$/.exec(text);
    const name = cmd ? cmd[1].toLowerCase() : '';
    const arg = cmd && cmd[2] !== undefined ? cmd[2] : '';
    const here = conv && conv.kind === 'room' ? conv.name : null;
    const isIn = (room) => !!inRooms && (inRooms.has ? inRooms.has(room) : inRooms.includes(room));
    if (cmd && name !== '/' && !text.startsWith('//')) {
      switch (name) {
        case 'join': {
          const room = foldRoom(arg.trim());
          if (!room) return { problem: 'room_invalid' };
          if (isIn(room)) return { show: room };
          return { line: '/join ' + room, join: room };
        }
        case 'part': {
          const target = arg.trim() ? foldRoom(arg.trim()) : here;
          if (!target) return { problem: arg.trim() ? 'room_invalid' : 'not_a_room' };
          return { line: '/part ' + target };
        }
        case 'topic': {
          // "/topic #rust TEXT" names its room; "/topic TEXT" is the shown one.
          if (/^[#\uFF03]/.test(arg)) {
            const m = /^(\S+)(?:[ \t]+([\s\S]*))?$/.exec(arg);
            const room = foldRoom(m[1]);
            if (!room) return { problem: 'room_invalid' };
            // "/topic #rust" asks; "/topic #rust " (a space, no text) clears.
            return { line: '/topic ' + room + (m[2] !== undefined ? ' ' + m[2] : '') };
          }
          if (!here) return { problem: 'not_a_room' };
          return { line: '/topic ' + here + (arg ? ' ' + arg : '') };
        }
        case 'who': {
          const target = arg.trim() ? foldRoom(arg.trim()) : (here || MAIN);
          if (!target) return { problem: 'room_invalid' };
          return { line: target === MAIN && !arg.trim() ? '/who' : '/who ' + target };
        }
        case 'me':
          if (!conv) return { problem: 'no_conversation' };
          if (!here) return { problem: 'action_in_dm' };
          return { line: here === MAIN ? text : '/say ' + here + ' ' + text };
        case 'msg': {
          const m = /^(\S+)[ \t]+([\s\S]*\S[\s\S]*)$/.exec(arg);
          return m ? { line: text, dm: m[1] } : { line: text };
        }
        default:
          return { line: text }; // /nick, /rooms, /say and what the server knows better
      }
    }
    if (!conv) return { problem: 'no_conversation' };
    if (here === MAIN) return { line: text };
    // "//text" means the literal "/text" in #main; /say and /msg take their
    // text as it is, so one slash goes. (Except "//me …": after /say that
    // would be an action, so it keeps both.)
    const said = text.startsWith('//') && !/^\/\/me(\s|$)/.test(text) ? text.slice(1) : text;
    if (here) return { line: '/say ' + here + ' ' + said };
    return { line: '/msg ' + conv.nick + ' ' + said, dm: conv.nick };
  }

  // ---------------------------------------------------------------- sign-in
  // The subprotocol that carries a sign-in token beside wschat.v1: browsers
  // cannot set headers on a WebSocket, and a query parameter would land in
  // access logs (chapter 07).
  const AUTH_PROTOCOL_PREFIX = 'wschat.auth.';

  // The sign-in token of a fragment ("#room=rust&token=eyJ…") and the
  // fragment without it, every other pair kept in its place. `token` is
  // null when there is none (or it is empty).
  function takeToken(hash) {
    const pairs = parseFragment(hash);
    const token = pairs.get('token');
    pairs.delete('token');
    return { token: token ? token : null, hash: formatFragment(pairs) };
  }

  // The claims of a JWT (RFC 7519), read without checking the signature:
  // the page only uses `exp` to say "expired" without asking the server,
  // and the server checks everything. null when it is not a readable JWT.
  function tokenClaims(token) {
    const parts = String(token || '').split('.');
    if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1])) return null;
    try {
      const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
      const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
    } catch (_) {
      return null;
    }
  }

  // The subprotocols to offer: wschat.v1 first (the one the server selects),
  // then the token, if any.
  function socketProtocols(token) {
    return token ? ['wschat.v1', AUTH_PROTOCOL_PREFIX + token] : ['wschat.v1'];
  }

  // The moderation command for what the operator chose in the menu
  // (chapter 06): `/kick NICK [#room] [REASON]`,
  // `/ban NICK [#room] [DURATION] [REASON]`, `/mute NICK [#room] DURATION`.
  // `room` null: the whole server. `duration` like "10m", or '' (a ban
  // until lifted). Whitespace in the reason becomes single spaces.
  function moderationLine(o) {
    const parts = ['/' + o.action, o.nick];
    if (o.room) parts.push(o.room);
    if ((o.action === 'ban' || o.action === 'mute') && o.duration) parts.push(o.duration);
    const reason = String(o.reason || '').replace(/\s+/g, ' ').trim();
    if (reason && (o.action === 'kick' || o.action === 'ban')) parts.push(reason);
    return parts.join(' ');
  }

  const pure = {
    ROOM_NAME_MAX, foldRoom, foldNick, parseFragment, formatFragment, withFragmentKey,
    socketUrl, composeLine, takeToken, tokenClaims, socketProtocols, moderationLine,
  };
  if (typeof module === 'object' && module && module.exports) module.exports = pure;
  if (typeof document === 'undefined') return;

  // ================================================================ the page
  const PROTOCOL = 'wschat.v1';
  const NICK_KEY = 'wschat.nick';
  // The rooms this tab is in, kept across a reload (sessionStorage: one
  // tab's, gone with the tab).
  const ROOMS_KEY = 'wschat.rooms';
  // At most this many kept rooms are asked for on load (the server's
  // default --max-rooms-per-client).
  const STORED_ROOMS_MAX = 32;
  const BACKOFF_START_MS = 750;
  const BACKOFF_CAP_MS = 12000;
  const CONNECT_TIMEOUT_MS = 10000;
  const STABLE_MS = 10000;
  const STICK_THRESHOLD_PX = 48;
  const GROUP_WINDOW_MS = 5 * 60 * 1000;
  // After a rate-limit close, wait at least this long: the server's token
  // bucket (twice --rate-limit messages) is full again well within it.
  const RATE_LIMIT_PAUSE_MS = 5000;
  // Automatic /nick retries when the name is still held by our own previous
  // connection (the server has not yet noticed it is gone).
  const NICK_RETRIES = 3;
  // Unread counts above this show as "99+".
  const UNREAD_SHOWN_MAX = 99;
  const BASE_TITLE = document.title || 'wschat';

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $('status'),
    statusText: $('status-text'),
    statusReason: $('status-reason'),
    statusLive: $('status-live'),
    retryNow: $('retry-now'),
    meButton: $('me-button'),
    meNick: $('me-nick'),
    peopleToggle: $('people-toggle'),
    peopleToggleCount: $('people-toggle-count'),
    toggleUnread: $('toggle-unread'),
    people: $('people'),
    peopleClose: $('people-close'),
    onlineCount: $('online-count'),
    peopleHeading: $('people-heading-text'),
    userList: $('user-list'),
    roomList: $('room-list'),
    dmList: $('dm-list'),
    dmEmpty: $('dm-empty'),
    joinForm: $('join-form'),
    joinInput: $('join-input'),
    joinError: $('join-error'),
    convTitle: $('conv-title'),
    convTopic: $('conv-topic'),
    topicEdit: $('topic-edit'),
    topicForm: $('topic-form'),
    topicInput: $('topic-input'),
    topicCancel: $('topic-cancel'),
    convLeave: $('conv-leave'),
    scroller: $('scroller'),
    jump: $('jump'),
    composer: $('composer'),
    input: $('composer-input'),
    note: $('composer-note'),
    live: $('live'),
    nickDialog: $('nick-dialog'),
    nickForm: $('nick-form'),
    nickInput: $('nick-input'),
    nickError: $('nick-error'),
    nickCancel: $('nick-cancel'),
    nickSubmit: $('nick-submit'),
    peopleNick: $('people-nick'),
    nickHint: $('nick-hint'),
    modMenu: $('mod-menu'),
    modDialog: $('mod-dialog'),
    modForm: $('mod-form'),
    modTitle: $('mod-title'),
    modHelp: $('mod-help'),
    modScope: $('mod-scope'),
    modScopeRoomLabel: $('mod-scope-room-label'),
    modScopeRoom: $('mod-scope-room'),
    modDurationRow: $('mod-duration-row'),
    modDuration: $('mod-duration'),
    modReasonRow: $('mod-reason-row'),
    modReason: $('mod-reason'),
    modCancel: $('mod-cancel'),
    modSubmit: $('mod-submit'),
  };

  // ---------------------------------------------------------------- state
  const state = {
    ws: null,
    online: false,          // welcome received on the current socket
    everOnline: false,
    onlineSince: 0,
    you: null,              // {id, nick}
    // Conversations by key: a room by its name ("#rust"), direct messages
    // with someone by "@" and their folded nickname. Each has its own
    // message list, members, unread count and seen ids (see makeConv).
    convs: new Map(),
    current: null,          // key of the conversation shown
    rooms: [],              // the rooms this page is in, in the server's order
    wantShow: null,         // a room the user asked to open, shown once joined
    roomsAvailable: true,   // false: this server has no rooms (an older one)
    lastId: 0,              // newest message id seen in any room: a reconnect resumes after it
    epoch: null,            // the server's history the ids belong to (from the welcome)
    attempt: 0,             // consecutive failed connection attempts
    retryTimer: null,
    countdownTimer: null,
    retryAt: 0,
    pendingNick: null,      // {nick, source: 'chooser'|'auto'|'command', tries}
    queuedNick: null,       // chosen while offline, sent on connect
    lastDmTarget: null,     // the nickname of the last /msg sent (for no_such_user)
    unread: 0,              // messages while the tab was hidden (the title)
    closeInfo: null,        // why the last connection closed (describeClose)
    lastSent: null,         // the last text sent from the composer
    maxMessageBytes: 0,     // the server's message limit, once a 1009 told us
    tokenExp: null,         // the sign-in token's `exp` (seconds), if it has one
    stopped: null,          // {text, short, guest}: not reconnecting, and why (ban, sign-in)
    removal: null,          // {kind: 'kick'|'ban', until}: the moderation event before the close
    roomRemovals: new Map(),// room -> text: why the next `parted` of that room happens
    mutedUntil: 0,          // ms; 0: not muted (Infinity: until lifted)
    refused: 0,             // consecutive connections refused at the handshake
  };

  // ---------------------------------------------------------------- the sign-in token
  // `#token=…` in the address: taken out of the address bar at once
  // (history.replaceState: it stays out of the history list, bookmarks
  // and a copied address) and kept only in this variable, never stored.
  let signInToken = null;
  function takeTokenFromAddress() {
    const got = takeToken(location.hash);
    if (!got.token) return false;
    const rest = location.pathname + location.search + (got.hash ? '#' + got.hash : '');
    try { history.replaceState(history.state, '', rest); } catch (_) { location.hash = got.hash; }
    signInToken = got.token;
    const claims = tokenClaims(got.token);
    state.tokenExp = claims && typeof claims.exp === 'number' ? claims.exp : null;
    return true;
  }
  takeTokenFromAddress();

  function tokenExpired() {
    return state.tokenExp !== null && state.tokenExp * 1000 <= Date.now();
  }

  // ---------------------------------------------------------------- storage
  function storedNick() {
    try { return localStorage.getItem(NICK_KEY) || ''; } catch (_) { return ''; }
  }
  function storeNick(nick) {
    try { localStorage.setItem(NICK_KEY, nick); } catch (_) { /* private mode */ }
  }
  function storedRooms() {
    let list = [];
    try { list = JSON.parse(sessionStorage.getItem(ROOMS_KEY) || '[]'); } catch (_) { return []; }
    const out = [];
    for (const r of Array.isArray(list) ? list : []) {
      const name = foldRoom(r);
      if (name && !out.includes(name) && out.length < STORED_ROOMS_MAX) out.push(name);
    }
    return out;
  }
  function storeRooms() {
    try { sessionStorage.setItem(ROOMS_KEY, JSON.stringify(state.rooms)); } catch (_) { /* private mode */ }
  }
  // A ban of this page (from its moderation event), kept across a reload
  // so that the page says so instead of knocking at the door again.
  const BAN_KEY = 'wschat.banned';
  function storedBan() {
    try {
      const b = JSON.parse(localStorage.getItem(BAN_KEY) || 'null');
      if (!b || typeof b !== 'object') return null;
      if (typeof b.until === 'number' && b.until <= Date.now()) { forgetBan(); return null; }
      return b;
    } catch (_) { return null; }
  }
  function storeBan(until) {
    try { localStorage.setItem(BAN_KEY, JSON.stringify({ until: until === Infinity ? null : until })); } catch (_) { /* private mode */ }
  }
  function forgetBan() {
    try { localStorage.removeItem(BAN_KEY); } catch (_) { /* private mode */ }
  }
  function forgetRooms() {
    try { sessionStorage.removeItem(ROOMS_KEY); } catch (_) { /* private mode */ }
  }

  // ---------------------------------------------------------------- helpers
  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function nickHue(nick) {
    let h = 0;
    const s = String(nick).toLowerCase();
    for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
    return h % 360;
  }

  function nickSpan(user, extraClass) {
    const span = node('span', 'nick' + (extraClass ? ' ' + extraClass : ''), user && user.nick);
    if (user && user.nick) span.style.setProperty('--hue', String(nickHue(user.nick)));
    return span;
  }

  function avatar(nick) {
    const a = node('span', 'avatar', String(nick || '?').slice(0, 1).toUpperCase());
    a.setAttribute('aria-hidden', 'true');
    a.style.setProperty('--hue', String(nickHue(nick || '?')));
    return a;
  }

  function validTs(ts) {
    return typeof ts === 'number' && isFinite(ts) && ts > 0 ? ts : Date.now();
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

  function timeNode(ts) {
    const d = new Date(ts);
    const t = node('time', 'time', timeFmt.format(d));
    t.dateTime = d.toISOString();
    t.title = fullFmt.format(d);
    return t;
  }

  function dayKey(d) {
    return d.getFullYear() + '-' + d.getMonth() + '-' + d.getDate();
  }

  function dayLabel(d) {
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    if (dayKey(d) === dayKey(today)) return 'Today';
    if (dayKey(d) === dayKey(yesterday)) return 'Yesterday';
    return dayFmt.format(d);
  }

  function isYou(user) {
    return !!(user && state.you && user.id === state.you.id);
  }

  function validUser(u) {
    return !!(u && typeof u.id === 'number');
  }

  // The user objects the page keeps: a guest is {id, nick}; a signed-in
  // user adds `verified`, an operator `op` (the server's user objects).
  function userOf(u) {
    const out = { id: u.id, nick: u.nick };
    if (u.verified === true) out.verified = true;
    if (u.op === true) out.op = true;
    return out;
  }

  // The mark beside a signed-in user's or an operator's name: a symbol
  // for the eye, words for screen readers and a tooltip. Guests get none.
  function userMark(user) {
    if (!user || (user.op !== true && user.verified !== true)) return null;
    const op = user.op === true;
    const mark = node('span', 'user-mark ' + (op ? 'op' : 'verified'));
    mark.title = op ? 'Operator (signed in)' : 'Signed in';
    const sym = node('span', null, op ? '★' : '✓');
    sym.setAttribute('aria-hidden', 'true');
    mark.appendChild(sym);
    mark.appendChild(node('span', 'visually-hidden', op ? ' (operator)' : ' (signed in)'));
    return mark;
  }

  // ---------------------------------------------------------------- conversations
  // A room ("#rust") or the direct messages with one person. Each keeps its
  // own <ol> of list items; the one shown is in the scroller with the id
  // "messages", the others wait detached.
  function makeConv(key, kind, name) {
    return {
      key,
      kind,                   // 'room' | 'dm'
      name,                   // '#rust', or the other person's nickname
      nick: kind === 'dm' ? name : null,
      list: node('ol', 'messages'),
      users: new Map(),       // id -> {id, nick}: the room's members
      topic: undefined,       // a string, null (none), or undefined (not known yet)
      unread: 0,
      seen: new Map(),        // message id -> fingerprint (dedupe across reconnects)
      lastItem: null,         // {kind, fromId, ts} of the last rendered list item
      lastDay: null,
      joinNotices: new Map(), // user id -> {li, ts} of a recent join notice
      following: true,        // the view follows new messages (kept while hidden)
      scrollTop: 0,
    };
  }

  function current() {
    return state.current ? state.convs.get(state.current) || null : null;
  }

  function roomConv(name) {
    const key = foldRoom(name);
    if (!key) return null;
    let conv = state.convs.get(key);
    if (!conv) {
      conv = makeConv(key, 'room', key);
      state.convs.set(key, conv);
    }
    return conv;
  }

  function dmKey(nick) {
    return '@' + foldNick(nick);
  }

  function dmConv(user) {
    const key = dmKey(user.nick);
    let conv = state.convs.get(key);
    if (!conv) {
      conv = makeConv(key, 'dm', user.nick);
      state.convs.set(key, conv);
    }
    conv.peer = userOf(user);
    conv.name = conv.nick = user.nick;
    return conv;
  }

  function inRoom(name) {
    return state.rooms.includes(name);
  }

  // The conversation an event about `room` belongs to: events from a
  // server without rooms carry none, and are about #main.
  function convFor(room) {
    const name = room === undefined || room === null ? MAIN : foldRoom(room);
    return name && inRoom(name) ? state.convs.get(name) || null : null;
  }

  function dropConv(key) {
    const conv = state.convs.get(key);
    if (!conv) return;
    state.convs.delete(key);
    if (state.current === key) {
      state.current = null;
      const next = inRoom(MAIN) ? MAIN : state.rooms[0] || firstDm();
      if (next) showConv(next, { keepFocus: true });
      else showNothing();
    }
    renderConvs();
  }

  function firstDm() {
    for (const conv of state.convs.values()) if (conv.kind === 'dm') return conv.key;
    return null;
  }

  // Shows conversation `key`: its messages, members, topic and composer;
  // its unread count goes back to zero; a room goes into the URL fragment.
  function showConv(key, opts) {
    const conv = state.convs.get(key);
    if (!conv) return;
    const before = current();
    if (before && before !== conv) {
      before.following = following;
      before.scrollTop = el.scroller.scrollTop;
      before.list.removeAttribute('id');
    }
    state.current = key;
    conv.list.id = 'messages';
    if (el.scroller.firstElementChild !== conv.list) el.scroller.replaceChildren(conv.list);
    conv.unread = 0;
    following = conv.following;
    if (following) scrollToBottom();
    else { el.scroller.scrollTop = conv.scrollTop; el.jump.hidden = true; }
    closeTopicForm();
    renderHeader();
    renderUsers();
    renderConvs();
    updateComposerNote();
    if (conv.kind === 'room' && !(opts && opts.keepFragment)) setFragmentRoom(conv.name);
    if (!(opts && opts.keepFocus)) setPeopleOpen(false);
  }

  // No conversation at all (the page left every room).
  function showNothing() {
    state.current = null;
    const empty = node('ol', 'messages none');
    empty.id = 'messages';
    el.scroller.replaceChildren(empty);
    renderHeader();
    renderUsers();
    updateComposerNote();
  }

  function renderHeader() {
    const conv = current();
    if (!conv) {
      el.convTitle.textContent = 'No room';
      el.convTopic.textContent = 'Join a room from the list to start talking.';
      el.topicEdit.hidden = true;
      el.convLeave.hidden = true;
      el.input.placeholder = 'Join a room first…';
      return;
    }
    const room = conv.kind === 'room';
    el.convTitle.replaceChildren();
    if (room) el.convTitle.textContent = conv.name;
    else {
      el.convTitle.appendChild(node('span', 'visually-hidden', 'Direct messages with '));
      el.convTitle.appendChild(nickSpan({ nick: conv.nick }));
    }
    el.convTopic.classList.toggle('empty', room && !conv.topic);
    el.convTopic.textContent = !room ? 'Direct messages: only the two of you see them, and they are not kept.'
      : conv.topic ? conv.topic : conv.topic === null ? 'No topic' : '';
    el.convTopic.title = room && conv.topic ? conv.topic : '';
    el.topicEdit.hidden = !room;
    el.topicEdit.setAttribute('aria-label', room ? 'Set the topic of ' + conv.name : 'Set the topic');
    el.convLeave.hidden = false;
    el.convLeave.setAttribute('aria-label', room ? 'Leave ' + conv.name : 'Close the conversation with ' + conv.nick);
    el.convLeave.textContent = room ? 'Leave' : 'Close';
    el.input.placeholder = 'Message ' + (room ? conv.name : conv.nick) + '…';
  }

  function unreadBadge(n) {
    const b = node('span', 'badge', n > UNREAD_SHOWN_MAX ? UNREAD_SHOWN_MAX + '+' : String(n));
    b.setAttribute('aria-hidden', 'true');
    return b;
  }

  function convButton(conv) {
    const b = node('button', 'conv');
    b.type = 'button';
    b.dataset.key = conv.key;
    if (conv.key === state.current) b.setAttribute('aria-current', 'true');
    if (conv.kind === 'room') {
      b.appendChild(node('span', 'conv-mark', '#'));
      b.appendChild(node('span', 'conv-name', conv.name.slice(1)));
    } else {
      b.appendChild(avatar(conv.nick));
      b.appendChild(node('span', 'conv-name', conv.nick));
    }
    if (conv.unread > 0) {
      b.classList.add('has-unread');
      b.appendChild(unreadBadge(conv.unread));
      b.appendChild(node('span', 'visually-hidden', ', ' + conv.unread + ' unread'));
    }
    b.addEventListener('click', () => { showConv(conv.key); el.input.focus(); });
    return b;
  }

  // The room list (rooms this page is in, in the server's order) and the
  // direct-message list, each with its unread count.
  function renderConvs() {
    // The lists are rebuilt whole: keep the keyboard focus on the same entry.
    const focused = document.activeElement;
    const focusKey = focused && focused.classList && focused.classList.contains('conv') ? focused.dataset.key : null;
    el.roomList.replaceChildren();
    el.dmList.replaceChildren();
    let elsewhere = 0;
    for (const name of state.rooms) {
      const conv = state.convs.get(name);
      if (!conv) continue;
      const li = node('li');
      li.appendChild(convButton(conv));
      el.roomList.appendChild(li);
      if (conv.key !== state.current) elsewhere += conv.unread;
    }
    for (const conv of state.convs.values()) {
      if (conv.kind !== 'dm') continue;
      const li = node('li');
      li.appendChild(convButton(conv));
      el.dmList.appendChild(li);
      if (conv.key !== state.current) elsewhere += conv.unread;
    }
    el.dmEmpty.hidden = el.dmList.childElementCount > 0;
    if (focusKey !== null) {
      for (const b of el.people.querySelectorAll('button.conv')) if (b.dataset.key === focusKey) b.focus();
    }
    el.toggleUnread.hidden = elsewhere === 0;
    el.toggleUnread.textContent = elsewhere > UNREAD_SHOWN_MAX ? UNREAD_SHOWN_MAX + '+' : String(elsewhere);
    toggleUnreadLabel = elsewhere ? ', ' + elsewhere + ' unread in other conversations' : '';
    labelToggle();
  }

  // The toggle's name for screen readers: what it opens, how many people
  // are in the room shown, and the unread messages elsewhere.
  let toggleUnreadLabel = '';
  function labelToggle() {
    el.peopleToggle.setAttribute('aria-label', 'Rooms and people (' + el.peopleToggle.title + ')' + toggleUnreadLabel);
  }

  // ---------------------------------------------------------------- the URL fragment
  function fragmentRoom() {
    const value = parseFragment(location.hash).get('room');
    return value === undefined ? null : value;
  }

  // replaceState: switching rooms adds no entry to the back button's list
  // and fires no hashchange.
  function setFragmentRoom(name) {
    const want = withFragmentKey(location.hash, 'room', name.slice(1));
    if (location.hash.replace(/^#/, '') === want) return;
    try { history.replaceState(history.state, '', '#' + want); } catch (_) { /* sandboxed */ }
  }

  // Opens the room the fragment names: shown if the page is in it, joined
  // (and shown once joined) if not.
  function openFragmentRoom() {
    const value = fragmentRoom();
    if (value === null) return;
    const name = foldRoom(value);
    if (!name) {
      const conv = current();
      if (conv) addNotice(conv, 'error', ['The link names a room that cannot exist (“' + value + '”). ' + errorText('room_invalid')]);
      return;
    }
    if (inRoom(name)) { if (state.current !== name) showConv(name, { keepFocus: true }); return; }
    requestJoin(name);
  }
  // A new `#token=…` while the page is open (a site refreshing the
  // sign-in): taken out of the address like the first, then sent on the
  // open connection (`/auth TOKEN`), or used to connect again.
  window.addEventListener('hashchange', () => {
    if (!takeTokenFromAddress()) return;
    if (state.online && state.you && state.you.verified === true) { send('/auth ' + signInToken); return; }
    if (state.stopped) { resume(); return; }
    if (state.ws) { state.switching = true; state.ws.close(1000); } // reconnects with it
  });
  window.addEventListener('hashchange', () => { if (state.online) openFragmentRoom(); });

  function requestJoin(name) {
    if (inRoom(name)) { showConv(name); return; }
    state.wantShow = name;
    send('/join ' + name);
  }

  // ---------------------------------------------------------------- scrolling
  function atBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight <= STICK_THRESHOLD_PX;
  }
  function scrollToBottom() {
    el.scroller.scrollTop = el.scroller.scrollHeight;
    el.jump.hidden = true;
  }
  // Whether the shown list follows new messages: true until the reader
  // scrolls up. Each conversation keeps its own while hidden.
  let following = true;
  // Appends list items to a conversation; if it is the one shown, keeps the
  // view pinned to the bottom if it was.
  function appendItems(conv, items, opts) {
    if (!items.length || !conv) return;
    if (conv.key !== state.current) {
      for (const li of items) conv.list.appendChild(li);
      if (opts && opts.forceScroll) conv.following = true;
      return;
    }
    const stick = (opts && opts.forceScroll) || following || atBottom();
    for (const li of items) conv.list.appendChild(li);
    if (stick) scrollToBottom();
    else el.jump.hidden = false;
  }
  el.scroller.addEventListener('scroll', () => {
    following = atBottom();
    if (following) el.jump.hidden = true;
  });
  el.jump.addEventListener('click', () => { scrollToBottom(); el.input.focus(); });
  // The list area shrinks when the composer grows (more lines, the offline
  // note) or the window changes: stay at the bottom if we were there.
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => { if (following) scrollToBottom(); }).observe(el.scroller);
  } else {
    window.addEventListener('resize', () => { if (following) scrollToBottom(); });
  }

  // ---------------------------------------------------------------- list items
  function dayDivider(conv, ts) {
    const d = new Date(ts);
    const key = dayKey(d);
    if (key === conv.lastDay) return null;
    conv.lastDay = key;
    conv.lastItem = null;
    const li = node('li', 'day');
    li.appendChild(node('span', null, dayLabel(d)));
    return li;
  }

  function fingerprint(m) {
    return String(m.ts) + '\u0000' + String(m.text) + '\u0000' + String(m.from && m.from.nick);
  }

  // Builds the list item(s) for a chat message in `conv`; returns [] for a
  // duplicate (an id this conversation already shows).
  function renderMessage(conv, m) {
    if (typeof m.id === 'number') {
      if (conv.seen.has(m.id)) return [];
      conv.seen.set(m.id, fingerprint(m));
      if (m.id > state.lastId) state.lastId = m.id;
    }
    const out = [];
    const ts = validTs(m.ts);
    const divider = dayDivider(conv, ts);
    if (divider) out.push(divider);

    const from = m.from || { id: -1, nick: '?' };
    const own = isYou(from);
    const action = m.action === true;
    const last = conv.lastItem;
    const continued = !action && last && last.kind === 'message' && last.fromId === from.id &&
      last.nick === from.nick && ts - last.ts < GROUP_WINDOW_MS;

    const li = node('li', 'msg');
    if (own) li.classList.add('own');
    if (action) li.classList.add('action');
    if (continued) li.classList.add('cont');
    if (typeof m.id === 'number') li.dataset.id = String(m.id);
    li.dataset.from = String(from.id);

    if (action) {
      const body = node('p', 'body');
      body.appendChild(node('span', 'action-mark', '*'));
      body.appendChild(document.createTextNode(' '));
      body.appendChild(nickSpan(from));
      body.appendChild(document.createTextNode(' '));
      body.appendChild(node('span', 'text', m.text));
      li.appendChild(body);
      li.appendChild(timeNode(ts));
    } else {
      const meta = node('div', 'meta');
      meta.appendChild(nickSpan(from));
      const mark = userMark(from);
      if (mark) meta.appendChild(mark);
      if (own) meta.appendChild(node('span', 'you-tag', 'you'));
      meta.appendChild(timeNode(ts));
      li.appendChild(meta);
      li.appendChild(node('p', 'body text', m.text));
    }
    out.push(li);
    conv.lastItem = { kind: action ? 'action' : 'message', fromId: from.id, nick: from.nick, ts };
    return out;
  }

  // A system notice (join, leave, nick change, errors, /who answers).
  // `parts` is a list of strings and {user} objects.
  function renderNotice(conv, kind, parts, ts) {
    const out = [];
    const t = validTs(ts);
    const divider = dayDivider(conv, t);
    if (divider) out.push(divider);
    const li = node('li', 'notice ' + kind);
    const p = node('p', 'notice-text');
    for (const part of parts) {
      if (typeof part === 'string') p.appendChild(document.createTextNode(part));
      else if (part && part.user) p.appendChild(nickSpan(part.user));
    }
    li.appendChild(p);
    li.appendChild(timeNode(t));
    out.push(li);
    conv.lastItem = { kind: 'notice', ts: t };
    return out;
  }

  function addNotice(conv, kind, parts, opts) {
    if (!conv) return [];
    const items = renderNotice(conv, kind, parts, opts && opts.ts);
    appendItems(conv, items, { forceScroll: !!(opts && opts.forceScroll) });
    return items;
  }

  // Screen readers read each line added to the live region.
  function announce(text) {
    el.live.appendChild(node('p', null, text));
    while (el.live.childElementCount > 5) el.live.firstElementChild.remove();
  }

  // A message from someone else: counted as unread in its conversation if
  // that is not the one shown, and in the tab's title while it is hidden.
  function countUnread(conv) {
    if (conv.key !== state.current) {
      conv.unread += 1;
      renderConvs();
    }
    if (document.visibilityState === 'hidden') {
      state.unread += 1;
      document.title = '(' + state.unread + ') ' + BASE_TITLE;
    }
  }
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') {
      state.unread = 0;
      document.title = BASE_TITLE;
      if (!state.ws && state.retryTimer) connectNow();
    }
  });

  // ---------------------------------------------------------------- presence
  // The people of the shown conversation: a room's members, or the two
  // people of a direct conversation. Everyone but you is a button that
  // opens direct messages with them.
  function renderUsers() {
    const conv = current();
    let users = [];
    if (conv && conv.kind === 'room') {
      if (state.you && inRoom(conv.key)) conv.users.set(state.you.id, userOf(state.you));
      users = Array.from(conv.users.values());
    } else if (conv) {
      if (state.you) users.push(state.you);
      if (conv.peer && !isYou(conv.peer)) users.push(conv.peer);
    }
    const list = users.sort((a, b) => {
      if (isYou(a)) return -1;
      if (isYou(b)) return 1;
      return String(a.nick).localeCompare(String(b.nick), undefined, { sensitivity: 'base' });
    });
    const focused = document.activeElement;
    const focusClass = focused && focused.classList
      ? ['user-button', 'mod-button'].find((c) => focused.classList.contains(c)) : null;
    const focusId = focusClass ? focused.parentElement.dataset.id : null;
    // The operator's menu lives in the item of the person it is open for.
    const menuFocus = el.modMenu.contains(focused) ? focused : null;
    const moderate = canModerate();
    el.userList.replaceChildren();
    for (const u of list) {
      const li = node('li', 'user' + (isYou(u) ? ' me' : ''));
      li.dataset.id = String(u.id);
      let holder = li;
      if (!isYou(u) && state.roomsAvailable) {
        holder = node('button', 'user-button');
        holder.type = 'button';
        holder.title = 'Send ' + u.nick + ' a direct message';
        holder.addEventListener('click', () => { openDm(u); el.input.focus(); });
        li.appendChild(holder);
      }
      holder.appendChild(avatar(u.nick));
      holder.appendChild(nickSpan(u));
      const mark = userMark(u);
      if (mark) holder.appendChild(mark);
      if (isYou(u)) holder.appendChild(node('span', 'you-tag', 'you'));
      else if (holder !== li) holder.appendChild(node('span', 'visually-hidden', ': send a direct message'));
      if (moderate && !isYou(u)) {
        li.classList.add('moderatable');
        const b = node('button', 'mod-button', '⋯');
        b.type = 'button';
        b.setAttribute('aria-label', 'Moderate ' + u.nick);
        b.title = 'Kick, ban or mute ' + u.nick;
        b.setAttribute('aria-haspopup', 'menu');
        b.setAttribute('aria-controls', 'mod-menu');
        b.setAttribute('aria-expanded', modMenu.forId === u.id ? 'true' : 'false');
        b.addEventListener('click', () => {
          if (modMenu.forId === u.id) closeModMenu(true);
          else openModMenu(u.id, b);
        });
        li.appendChild(b);
        if (modMenu.forId === u.id) { modMenu.trigger = b; li.appendChild(el.modMenu); }
      }
      el.userList.appendChild(li);
      if (focusId !== null && li.dataset.id === focusId) {
        const again = li.querySelector('.' + focusClass);
        if (again) again.focus();
      }
    }
    // The person the menu was open for has gone (or this page is no longer
    // an operator): the menu closes.
    if (modMenu.forId !== null && !el.modMenu.isConnected) closeModMenu(false);
    else if (menuFocus) menuFocus.focus();
    const n = String(list.length);
    el.onlineCount.textContent = n;
    el.peopleToggleCount.textContent = n;
    el.peopleHeading.textContent = conv && conv.kind === 'room' ? 'In ' + conv.name : 'People';
    el.peopleToggle.title = (list.length === 1 ? '1 person' : n + ' people') +
      (conv && conv.kind === 'room' ? ' in ' + conv.name : '');
    labelToggle();
  }

  // ---------------------------------------------------------------- the operator's menu
  // On each person but you, for operators (token role "op"): Kick…, Ban…,
  // Mute…, each opening a dialog for the scope, duration and reason. The
  // server decides; a room's creator is an operator there too and uses the
  // typed commands. The menu follows the WAI-ARIA menu button pattern:
  // arrows move, Escape closes and returns to the button.
  const modMenu = { forId: null, trigger: null, user: null };

  function canModerate() {
    return !!(state.you && state.you.op === true);
  }

  function menuItems() {
    return Array.from(el.modMenu.querySelectorAll('[role="menuitem"]'));
  }

  function openModMenu(id, trigger) {
    if (modMenu.trigger) modMenu.trigger.setAttribute('aria-expanded', 'false');
    modMenu.forId = id;
    modMenu.trigger = trigger;
    trigger.parentElement.appendChild(el.modMenu);
    el.modMenu.setAttribute('aria-label', trigger.getAttribute('aria-label'));
    el.modMenu.hidden = false;
    trigger.setAttribute('aria-expanded', 'true');
    menuItems()[0].focus();
  }

  function closeModMenu(refocus) {
    const trigger = modMenu.trigger;
    modMenu.forId = null;
    modMenu.trigger = null;
    el.modMenu.hidden = true;
    document.body.appendChild(el.modMenu);
    if (trigger) {
      trigger.setAttribute('aria-expanded', 'false');
      if (refocus && trigger.isConnected) trigger.focus();
    }
  }

  el.modMenu.addEventListener('keydown', (e) => {
    const items = menuItems();
    const at = items.indexOf(document.activeElement);
    let next = null;
    if (e.key === 'ArrowDown') next = items[(at + 1) % items.length];
    else if (e.key === 'ArrowUp') next = items[(at - 1 + items.length) % items.length];
    else if (e.key === 'Home') next = items[0];
    else if (e.key === 'End') next = items[items.length - 1];
    else if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); closeModMenu(true); return; }
    else if (e.key === 'Tab') { closeModMenu(false); return; }
    if (next) { e.preventDefault(); next.focus(); }
  });
  el.modMenu.addEventListener('click', (e) => {
    const item = e.target.closest('[role="menuitem"]');
    if (!item) return;
    const id = modMenu.forId;
    const trigger = modMenu.trigger;
    closeModMenu(false);
    openModDialog(item.dataset.action, id, trigger);
  });
  document.addEventListener('pointerdown', (e) => {
    if (modMenu.forId === null) return;
    if (el.modMenu.contains(e.target) || (modMenu.trigger && modMenu.trigger.contains(e.target))) return;
    closeModMenu(false);
  });

  // The choices of duration (the wire's DURATION: a number and s, m, h or d).
  const BAN_DURATIONS = [['', 'Until lifted'], ['10m', '10 minutes'], ['1h', '1 hour'], ['1d', '1 day'], ['7d', '7 days']];
  const MUTE_DURATIONS = [['5m', '5 minutes'], ['1m', '1 minute'], ['1h', '1 hour'], ['1d', '1 day']];
  const MOD_WORDS = {
    kick: { verb: 'Kick', help: 'They are disconnected and can come back after a few seconds.' },
    ban: { verb: 'Ban', help: 'They cannot come back until the ban ends: a signed-in user by their account, a guest by their address.' },
    mute: { verb: 'Mute', help: 'Their messages are refused until the time is up.' },
  };
  const modDialog = { action: null, id: null, nick: null, room: null, trigger: null };

  // The person `id` as the page knows them now (a nickname may have changed).
  function knownUser(id) {
    const conv = current();
    if (conv && conv.users.has(id)) return conv.users.get(id);
    for (const c of state.convs.values()) if (c.users.has(id)) return c.users.get(id);
    return null;
  }

  function openModDialog(action, id, trigger) {
    const u = knownUser(id);
    const words = MOD_WORDS[action];
    if (!u || !words) return;
    const conv = current();
    const room = conv && conv.kind === 'room' ? conv.name : null;
    Object.assign(modDialog, { action, id, nick: u.nick, room, trigger });
    el.modTitle.textContent = words.verb + ' ' + u.nick;
    el.modHelp.textContent = words.help;
    el.modSubmit.textContent = words.verb;
    el.modScopeRoomLabel.hidden = !room;
    el.modScopeRoom.textContent = room ? room + ' only' : '';
    el.modScope.querySelector('input[value="server"]').checked = true;
    const durations = action === 'ban' ? BAN_DURATIONS : action === 'mute' ? MUTE_DURATIONS : [];
    el.modDurationRow.hidden = !durations.length;
    el.modDuration.replaceChildren(...durations.map(([value, label]) => {
      const o = node('option', null, label);
      o.value = value;
      return o;
    }));
    el.modReasonRow.hidden = action === 'mute';
    el.modReason.value = '';
    if (typeof el.modDialog.showModal === 'function') el.modDialog.showModal();
    else el.modDialog.setAttribute('open', '');
    (action === 'mute' ? el.modDuration : el.modReason).focus();
  }

  function closeModDialog() {
    if (el.modDialog.open) el.modDialog.close();
  }
  el.modCancel.addEventListener('click', closeModDialog);
  el.modDialog.addEventListener('close', () => {
    const t = modDialog.trigger;
    if (t && t.isConnected) t.focus();
    else el.input.focus();
    modDialog.trigger = null;
  });
  el.modForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const scope = el.modScope.querySelector('input:checked');
    const line = moderationLine({
      action: modDialog.action,
      nick: modDialog.nick,
      room: scope && scope.value === 'room' ? modDialog.room : null,
      duration: el.modDuration.value,
      reason: el.modReason.value,
    });
    if (!send(line)) { shakeComposer(); return; }
    closeModDialog();
  });

  function openDm(user) {
    const conv = dmConv(user);
    renderConvs();
    showConv(conv.key);
  }

  function setYou(user) {
    state.you = userOf(user);
    el.meNick.textContent = user.nick;
    const old = el.meButton.querySelector('.user-mark');
    if (old) old.remove();
    const mark = userMark(state.you);
    if (mark) el.meNick.after(mark);
    // A signed-in name comes from the sign-in: there is nothing to change.
    const signedIn = state.you.verified === true;
    el.meButton.title = signedIn ? 'Signed in as ' + user.nick : 'Change your nickname';
    el.meButton.setAttribute('aria-disabled', signedIn ? 'true' : 'false');
    el.peopleNick.hidden = signedIn;
    el.nickHint.hidden = signedIn;
    renderHeader();
  }

  // ---------------------------------------------------------------- status
  const STATUS_SPOKEN = {
    connecting: 'Connecting to the chat…',
    online: 'Connected to the chat.',
    reconnecting: 'Disconnected. Reconnecting automatically.',
    stopped: 'Disconnected. Not reconnecting.',
  };
  function setStatus(kind, text) {
    // The countdown changes every second; only a change of state is spoken
    // (the reason for a disconnection is announced with its notice).
    if (el.status.dataset.state !== kind || !el.statusLive.textContent) {
      if (kind !== 'connecting' || !state.everOnline) el.statusLive.textContent = STATUS_SPOKEN[kind] || text;
    }
    el.status.dataset.state = kind;
    el.statusText.textContent = text;
    // While offline, the status also says why, in a word or two.
    const why = kind === 'stopped' ? state.stopped : kind !== 'online' ? state.closeInfo : null;
    el.statusReason.textContent = why ? why.short : '';
    el.status.title = why ? why.text : '';
    el.retryNow.hidden = kind !== 'reconnecting' && kind !== 'stopped';
    el.retryNow.textContent = kind === 'stopped' ? 'Try again' : 'Retry now';
    document.body.dataset.connection = kind;
    updateComposerNote();
  }

  // A problem with the text in the box (too large for the server), shown
  // under it until the text is edited.
  let composerProblem = '';
  function updateComposerNote() {
    el.composer.classList.toggle('muted-now', isMuted());
    if (composerProblem) {
      el.note.textContent = composerProblem;
      el.composer.classList.toggle('offline', !state.online);
    } else if (state.online) {
      el.note.textContent = isMuted() ? 'You are muted' + untilWords(state.mutedUntil) + ': the server refuses your messages until then.' : '';
      el.composer.classList.remove('offline');
    } else {
      el.note.textContent = state.stopped
        ? 'Not connected (the reason is above). Your text stays here.'
        : 'Not connected. Your text stays here and can be sent once you are back online.';
      el.composer.classList.add('offline');
    }
  }

  // ---------------------------------------------------------------- nickname chooser
  function openChooser(opts) {
    const o = opts || {};
    const firstTime = !storedNick() && !o.allowCancel;
    el.nickCancel.hidden = firstTime;
    el.nickSubmit.textContent = firstTime ? 'Join chat' : 'Save';
    el.nickError.textContent = o.error || '';
    el.nickInput.setAttribute('aria-invalid', o.error ? 'true' : 'false');
    if (o.value !== undefined) el.nickInput.value = o.value;
    else if (!el.nickDialog.open) el.nickInput.value = storedNick() || '';
    if (!el.nickDialog.open) {
      if (typeof el.nickDialog.showModal === 'function') el.nickDialog.showModal();
      else el.nickDialog.setAttribute('open', '');
    }
    el.nickInput.focus();
    el.nickInput.select();
  }

  function closeChooser() {
    el.nickError.textContent = '';
    el.nickInput.setAttribute('aria-invalid', 'false');
    el.nickSubmit.disabled = false;
    if (el.nickDialog.open) el.nickDialog.close();
  }

  function showChooserError(text) {
    if (!el.nickDialog.open) openChooser({ error: text, value: el.nickInput.value || storedNick() });
    el.nickError.textContent = text;
    el.nickInput.setAttribute('aria-invalid', 'true');
    el.nickSubmit.disabled = false;
    el.nickInput.focus();
    el.nickInput.select();
  }

  el.nickForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = el.nickInput.value.trim();
    if (!nick) { showChooserError('Please enter a nickname.'); return; }
    if (/\s/.test(nick)) { showChooserError('Nicknames cannot contain spaces.'); return; }
    if (state.you && nick === state.you.nick) { storeNick(nick); closeChooser(); return; }
    if (!state.online) {
      // Sent (and checked by the server) as soon as we are connected.
      state.queuedNick = nick;
      el.meNick.textContent = nick;
      closeChooser();
      return;
    }
    el.nickError.textContent = '';
    el.nickSubmit.disabled = true;
    requestNick(nick, 'chooser');
  });

  el.nickDialog.addEventListener('cancel', (e) => {
    // Escape: only allowed once a nickname has been chosen.
    if (el.nickCancel.hidden) e.preventDefault();
  });
  el.nickCancel.addEventListener('click', () => { state.pendingNick = null; closeChooser(); });
  el.nickDialog.addEventListener('close', () => {
    el.nickSubmit.disabled = false;
    const active = document.activeElement;
    if (!active || active === document.body || el.nickDialog.contains(active)) el.input.focus();
  });
  function changeNick() {
    if (state.you && state.you.verified === true) {
      addNotice(current(), 'who', ['You are signed in as ', { user: state.you }, ': your name comes from your sign-in.'], { forceScroll: true });
      return;
    }
    setPeopleOpen(false);
    openChooser({ allowCancel: true, value: state.you ? state.you.nick : storedNick() });
  }
  el.meButton.addEventListener('click', changeNick);
  $('people-nick').addEventListener('click', changeNick);

  function requestNick(nick, source, tries) {
    state.pendingNick = { nick, source, tries: tries || 0 };
    send('/nick ' + nick);
  }

  // ---------------------------------------------------------------- the side panel (phones)
  // On a narrow screen the rooms, direct messages and people are one panel
  // behind the toggle in the top bar.
  function setPeopleOpen(open) {
    const was = document.body.classList.contains('people-open');
    document.body.classList.toggle('people-open', open);
    el.peopleToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) el.peopleClose.focus();
    else if (was && el.people.contains(document.activeElement)) el.peopleToggle.focus();
  }
  el.peopleToggle.addEventListener('click', () => {
    const open = !document.body.classList.contains('people-open');
    setPeopleOpen(open);
    if (!open) el.peopleToggle.focus();
  });
  el.peopleClose.addEventListener('click', () => { setPeopleOpen(false); el.peopleToggle.focus(); });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.body.classList.contains('people-open')) {
      setPeopleOpen(false);
      el.peopleToggle.focus();
    }
  });

  // ---------------------------------------------------------------- joining, leaving, the topic
  function showJoinError(text) {
    el.joinError.textContent = text;
    el.joinInput.setAttribute('aria-invalid', text ? 'true' : 'false');
  }
  el.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const raw = el.joinInput.value.trim();
    if (!raw) { showJoinError('Type the name of a room, like #rust.'); el.joinInput.focus(); return; }
    const name = foldRoom(raw);
    if (!name) { showJoinError(errorText('room_invalid')); el.joinInput.focus(); return; }
    if (!inRoom(name) && !state.online) { showJoinError('Not connected. Try again once you are back online.'); return; }
    showJoinError('');
    el.joinInput.value = '';
    requestJoin(name);
  });
  el.joinInput.addEventListener('input', () => { if (el.joinError.textContent) showJoinError(''); });

  el.convLeave.addEventListener('click', () => {
    const conv = current();
    if (!conv) return;
    if (conv.kind === 'dm') { dropConv(conv.key); return; }
    if (!send('/part ' + conv.name)) shakeComposer();
  });

  function closeTopicForm() {
    el.topicForm.hidden = true;
    el.topicEdit.setAttribute('aria-expanded', 'false');
  }
  el.topicEdit.addEventListener('click', () => {
    const conv = current();
    if (!conv || conv.kind !== 'room') return;
    el.topicForm.hidden = false;
    el.topicEdit.setAttribute('aria-expanded', 'true');
    el.topicInput.value = conv.topic || '';
    el.topicInput.focus();
    el.topicInput.select();
  });
  el.topicCancel.addEventListener('click', () => { closeTopicForm(); el.topicEdit.focus(); });
  el.topicForm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.stopPropagation(); closeTopicForm(); el.topicEdit.focus(); }
  });
  el.topicForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const conv = current();
    if (!conv || conv.kind !== 'room') return;
    // An empty topic clears it.
    const topic = el.topicInput.value.replace(/\s+/g, ' ').trim();
    // "/topic #room " with nothing after the space clears it.
    if (!send('/topic ' + conv.name + ' ' + topic)) { shakeComposer(); return; }
    closeTopicForm();
    el.input.focus();
  });

  // ---------------------------------------------------------------- composer
  function autoGrow() {
    el.input.style.height = 'auto';
    el.input.style.height = Math.min(el.input.scrollHeight, 180) + 'px';
  }
  el.input.addEventListener('input', () => {
    autoGrow();
    if (composerProblem) { composerProblem = ''; updateComposerNote(); }
  });
  el.input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitComposer();
    }
  });
  el.composer.addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });

  const utf8 = new TextEncoder();

  function submitComposer() {
    const raw = el.input.value;
    if (!raw.trim()) return;
    const conv = current();
    const out = composeLine(raw, conv && { kind: conv.kind, name: conv.name, nick: conv.nick }, state.rooms);
    if (out.show) {
      showConv(out.show);
      clearComposer();
      return;
    }
    if (out.problem) {
      composerProblem = errorText(out.problem);
      shakeComposer();
      return;
    }
    // Once the server has said how large a message may be (a 1009 close),
    // a larger one is stopped here instead of costing the connection.
    const bytes = state.maxMessageBytes ? utf8.encode(out.line).length : 0;
    if (bytes > state.maxMessageBytes) {
      composerProblem = 'This message is ' + bytes + ' bytes; the server takes at most ' +
        state.maxMessageBytes + '. Please shorten it.';
      shakeComposer();
      return;
    }
    if (!state.online || !send(out.line)) {
      shakeComposer();
      return;
    }
    state.lastSent = raw;
    if (out.join) state.wantShow = out.join;
    if (out.dm) state.lastDmTarget = out.dm;
    const m = /^\/nick\s+(\S+)\s*$/.exec(raw);
    if (m) state.pendingNick = { nick: m[1], source: 'command', tries: 0 };
    clearComposer();
  }

  function clearComposer() {
    el.input.value = '';
    autoGrow();
    scrollToBottom();
  }

  function shakeComposer() {
    el.composer.classList.remove('shake');
    void el.composer.offsetWidth; // restart the animation
    el.composer.classList.add('shake');
    updateComposerNote();
  }

  // Puts the last sent text back in an empty box: after a rate-limit or
  // too-large close it was not delivered (the server closes on the message
  // that broke the limit and reads nothing after it).
  function restoreLastSent() {
    if (!state.lastSent || el.input.value.trim()) return;
    el.input.value = state.lastSent;
    state.lastSent = null;
    autoGrow();
  }

  // ---------------------------------------------------------------- socket
  function send(text) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    try { ws.send(text); return true; } catch (_) { return false; }
  }

  function connect() {
    clearTimers();
    state.online = false;
    setStatus('connecting', state.everOnline ? 'Reconnecting…' : 'Connecting…');
    let ws;
    try {
      // Back in every room this page is in, after the last message it has.
      // Only the host is taken from the page's address: the fragment stays here.
      ws = new WebSocket(socketUrl({
        scheme: location.protocol === 'https:' ? 'wss:' : 'ws:',
        host: location.host,
        lastId: state.lastId,
        epoch: state.epoch,
        rooms: state.rooms,
      }), socketProtocols(signInToken));
    } catch (_) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    // A connection attempt that hangs (no welcome) is given up and retried.
    const giveUp = setTimeout(() => {
      if (state.ws === ws && !state.online) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.addEventListener('message', (ev) => {
      if (state.ws !== ws || typeof ev.data !== 'string') return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch (_) { return; }
      if (msg && typeof msg === 'object') handle(msg);
    });
    let opened = false;
    ws.addEventListener('open', () => { opened = true; });
    ws.addEventListener('close', (ev) => {
      clearTimeout(giveUp);
      if (state.ws !== ws) return;
      state.ws = null;
      const wasOnline = state.online;
      // Refused at the handshake (a 401 for the sign-in, a 403 for a ban):
      // the browser only sees a failed connection (1006), the same as a
      // server that is down. See refusedOrDown.
      if (!opened) { refusedOrDown(ev); return; }
      state.refused = 0;
      // The rooms kept from before a reload were never confirmed by this
      // server: if it refused them (a bad list is a 400), ask for #main
      // alone next time rather than the same list forever.
      if (!state.everOnline && (state.rooms.length !== 1 || state.rooms[0] !== MAIN)) {
        state.rooms = [MAIN];
        forgetRooms();
      }
      // Back off from scratch after a connection that lasted; keep growing
      // the delay if the server keeps dropping us right after the welcome.
      if (wasOnline && Date.now() - state.onlineSince > STABLE_MS) state.attempt = 0;
      state.online = false;
      const delay = onClosed(ev.code, ev.reason, wasOnline);
      if (delay !== null) scheduleReconnect(delay);
    });
    ws.addEventListener('error', () => { /* a close event follows */ });
  }

  // A connection that failed before it opened. With an expired token the
  // answer is known; otherwise a plain HTTP request tells a server that is
  // up (so it refused this handshake: the sign-in, or a ban) from one that
  // is down (reconnect as usual). A refused sign-in does not improve by
  // retrying, so the page stops and says so.
  function refusedOrDown(ev) {
    state.online = false;
    if (signInToken && tokenExpired()) { stopSignIn('expired'); return; }
    setStatus('connecting', state.everOnline ? 'Reconnecting…' : 'Connecting…');
    const probe = typeof fetch === 'function'
      ? fetch(location.pathname || '/', { method: 'HEAD', cache: 'no-store' }).then((r) => r.status < 500, () => false)
      : Promise.resolve(false);
    probe.then((up) => {
      if (state.ws || state.stopped) return;
      if (up) state.refused += 1;
      if (up && signInToken) { stopSignIn(tokenExpired() ? 'expired' : 'refused'); return; }
      const ban = up ? storedBan() : null;
      if (ban) { stopBanned(ban); return; }
      if (up && state.refused >= 2) {
        if (state.closeInfo !== CLOSE_REFUSED) {
          addNotice(current(), 'closed', [CLOSE_REFUSED.text], { forceScroll: true });
          announce(CLOSE_REFUSED.text);
        }
        state.closeInfo = CLOSE_REFUSED;
      }
      // The rooms kept from before a reload were never confirmed by this
      // server: it may have refused them (a bad list is a 400).
      if (!state.everOnline && (state.rooms.length !== 1 || state.rooms[0] !== MAIN)) {
        state.rooms = [MAIN];
        forgetRooms();
      }
      scheduleReconnect(onClosed(ev.code, ev.reason, false) || 0);
    });
  }

  const CLOSE_REFUSED = {
    text: 'The server refuses this page’s connection: it may need a sign-in link, or this address may be banned.',
    short: 'Refused',
  };

  // Stops reconnecting, with a notice and the status saying why; the
  // status offers "Try again" (and "Continue as guest" after a sign-in
  // problem).
  function stopReconnecting(info) {
    clearTimers();
    state.stopped = info;
    state.online = false;
    if (info.notice !== false) {
      const items = addNotice(current(), info.kind || 'closed', [info.text], { forceScroll: true });
      // After a sign-in problem: the way on without it.
      if (info.guest && signInToken && items.length) {
        const old = document.getElementById('as-guest');
        if (old) old.remove();
        const b = node('button', 'button secondary', 'Continue as guest');
        b.type = 'button';
        b.id = 'as-guest';
        b.addEventListener('click', () => {
          b.remove();
          signInToken = null;
          state.tokenExp = null;
          resume();
          el.input.focus();
        });
        items[items.length - 1].querySelector('.notice-text').appendChild(b);
      }
      announce(info.text);
    }
    setStatus('stopped', 'Disconnected');
  }

  // A ban this page remembers (storedBan), after a reload or a refused
  // "Try again".
  function stopBanned(ban) {
    const until = untilWords(untilMs(ban.until));
    stopReconnecting({
      text: 'This page was banned from the chat' + until + '. Try again to check whether the ban still holds.',
      short: 'Banned' + until, kind: 'moderation',
    });
  }

  function stopSignIn(why) {
    const text = why === 'expired'
      ? 'Your sign-in has expired, so the page is no longer connected. Open the chat again from the site that signed you in, or continue as a guest.'
      : 'Sign-in failed: the server refused this sign-in link (it may be invalid or expired, or this account is banned). Open the chat again from the site that signed you in, or continue as a guest.';
    stopReconnecting({ text, short: why === 'expired' ? 'Sign-in expired' : 'Sign-in failed', guest: true, kind: 'signin' });
  }

  function resume() {
    state.stopped = null;
    state.attempt = 0;
    state.refused = 0;
    connectNow();
  }

  function clearTimers() {
    if (state.retryTimer) { clearTimeout(state.retryTimer); state.retryTimer = null; }
    if (state.countdownTimer) { clearInterval(state.countdownTimer); state.countdownTimer = null; }
  }

  // `minDelayMs`: wait at least this long (after a rate-limit close).
  function scheduleReconnect(minDelayMs) {
    clearTimers();
    // Exponential backoff with jitter: 0.75 s, 1.5 s, 3 s, … capped at 12 s,
    // each multiplied by a random factor in [0.5, 1).
    const base = Math.min(BACKOFF_CAP_MS, BACKOFF_START_MS * Math.pow(2, state.attempt));
    const delay = Math.max(minDelayMs || 0, Math.round(base * (0.5 + Math.random() * 0.5)));
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus('reconnecting', 'Reconnecting in ' + s + ' s');
    };
    tick();
    state.countdownTimer = setInterval(tick, 250);
    state.retryTimer = setTimeout(connect, delay);
  }

  // ---------------------------------------------------------------- why a connection closed
  // The server puts a stable token in the reason of every Close frame it
  // starts (chapter 06); the numeric code is the fallback for closes
  // without one (1009 and protocol errors carry a description instead, and
  // a vanished server or network gives the browser's 1006).
  //   text:    the notice in the message list, for people
  //   short:   a word or two beside the status while offline
  //   reset:   back off from scratch: the connection itself was fine
  //   pauseMs: wait at least this long before reconnecting
  //   restore: put the undelivered last message back in the box
  const CLOSE_BY_TOKEN = {
    shutting_down: { text: 'The server is restarting.', short: 'Server restarting', reset: true },
    ping_timeout: {
      text: 'The server stopped hearing from this page and closed the connection.',
      short: 'Timed out', reset: true,
    },
    rate_limited: {
      text: 'You were disconnected for sending messages too fast.',
      short: 'Sending too fast', pauseMs: RATE_LIMIT_PAUSE_MS, restore: true,
    },
    slow_consumer: { text: 'Your connection fell too far behind the chat.', short: 'Fell behind' },
    // Cluster mode: this page's server was cut off long enough for the
    // others to count this page as gone; reconnecting (with `since`)
    // puts it back and fetches what it missed.
    rejoin: {
      text: 'The chat lost track of this connection for a moment; reconnecting.',
      short: 'Reconnecting', reset: true, restore: true,
    },
    internal_error: { text: 'The server ran into a problem and closed the connection.', short: 'Server error' },
  };
  // After a kick, the page waits this long before it reconnects: long
  // enough to read why, short enough not to look broken.
  const KICK_PAUSE_MS = 5000;
  const CLOSE_LOST = { text: 'Connection lost.', short: 'Connection lost' };

  function describeClose(code, reason) {
    if (Object.prototype.hasOwnProperty.call(CLOSE_BY_TOKEN, reason)) return CLOSE_BY_TOKEN[reason];
    switch (code) {
      case 1009: {
        // The reason reads "message over N bytes": take N if it is there.
        const m = /(\d+) bytes/.exec(String(reason));
        const limit = m ? Number(m[1]) : 0;
        return {
          text: limit
            ? 'Your last message was too large for the server (limit ' + limit + ' bytes).'
            : 'Your last message was too large for the server.',
          short: 'Message too large', reset: true, restore: true, limit,
        };
      }
      case 1001: return { text: 'The server went away.', short: 'Server went away', reset: true };
      case 1002:
      case 1007:
        return {
          text: 'The server closed the connection after a protocol error (code ' + code + ').',
          short: 'Protocol error',
        };
      case 1008: return { text: 'The server closed the connection: ' + (reason || 'policy violation') + '.', short: 'Closed by server' };
      case 1011: return CLOSE_BY_TOKEN.internal_error;
      default: return CLOSE_LOST; // 1006 and anything unexplained
    }
  }

  // Explains a close to the user and returns the least delay before the
  // next attempt.
  function onClosed(code, reason, wasOnline) {
    // Removed by an operator: its moderation event (just before the close)
    // has already said by whom, why and until when.
    const removal = state.removal;
    state.removal = null;
    if (state.switching) { state.switching = false; state.attempt = 0; return 0; }
    if (code === 1008 && reason === 'banned') {
      const until = removal && removal.kind === 'ban' ? removal.until : Infinity;
      storeBan(until);
      stopReconnecting({
        text: removal ? '' : 'You were banned from the chat' + untilWords(until) + '. This page will not reconnect.',
        short: 'Banned' + untilWords(until), notice: !removal, kind: 'moderation',
      });
      return null;
    }
    if (code === 1008 && reason === 'token_expired') { stopSignIn('expired'); return null; }
    if (code === 1008 && reason === 'kicked') {
      state.closeInfo = { text: 'You were kicked from the chat.', short: 'Kicked', pauseMs: KICK_PAUSE_MS };
      state.attempt = 0;
      if (!removal) addNotice(current(), 'moderation', [state.closeInfo.text + ' Reconnecting in a few seconds.'], { forceScroll: true });
      return KICK_PAUSE_MS;
    }
    const info = describeClose(code, reason);
    // A failed attempt to reconnect (1006 before any welcome) keeps the
    // explanation of the close that started it ("Server restarting").
    if (info === CLOSE_LOST && !wasOnline && state.closeInfo) return 0;
    state.closeInfo = info;
    if (info.reset) state.attempt = 0;
    if (info.limit) state.maxMessageBytes = info.limit;
    if (info.restore) restoreLastSent();
    if (wasOnline || info !== CLOSE_LOST) {
      addNotice(current(), 'closed', [info.text], { forceScroll: true });
      announce(info.text);
    }
    return info.pauseMs || 0;
  }

  function connectNow() {
    if (state.ws) return;
    connect();
  }
  el.retryNow.addEventListener('click', resume);
  window.addEventListener('online', () => { if (!state.ws && !state.stopped) { state.attempt = 0; connectNow(); } });

  // ---------------------------------------------------------------- protocol
  function handle(msg) {
    switch (msg.type) {
      case 'welcome': onWelcome(msg); break;
      case 'joined': onJoined(msg); break;
      case 'parted': onParted(msg); break;
      case 'message': onMessage(msg); break;
      case 'direct': onDirect(msg); break;
      case 'join': onJoin(msg); break;
      case 'leave': onLeave(msg); break;
      case 'nick': onNick(msg); break;
      case 'users': onUsers(msg); break;
      case 'rooms': onRooms(msg); break;
      case 'topic': onTopic(msg); break;
      case 'error': onError(msg); break;
      case 'moderation': onModeration(msg); break;
      case 'auth': onAuth(msg); break;
      default: break; // unknown event types are ignored
    }
  }

  function historyOf(msg) {
    return (Array.isArray(msg.history) ? msg.history : []).filter((m) => m && typeof m === 'object');
  }

  // The rooms a welcome says the page is in; a server without rooms sends
  // no list, and everyone there is in #main.
  function welcomeRooms(msg) {
    if (!Array.isArray(msg.rooms)) return [MAIN];
    const out = [];
    for (const r of msg.rooms) {
      const name = foldRoom(r);
      if (name && !out.includes(name)) out.push(name);
    }
    return out;
  }

  function setMembers(conv, users) {
    conv.users = new Map();
    for (const u of Array.isArray(users) ? users : []) {
      if (validUser(u)) conv.users.set(u.id, userOf(u));
    }
    if (conv.key === state.current) renderUsers();
  }

  // A room's history (the welcome's for #main, a `joined` for the others):
  // each message shown once, after a notice if some are no longer kept.
  function showHistory(conv, history, gap) {
    if (gap && conv.seen.size) {
      addNotice(conv, 'restart', ['Some messages sent while you were away are no longer available.']);
    }
    const items = [];
    for (const m of history) items.push(...renderMessage(conv, m));
    appendItems(conv, items, { forceScroll: conv.list.childElementCount === 0 });
  }

  function onWelcome(msg) {
    state.online = true;
    state.everOnline = true;
    state.onlineSince = Date.now();
    state.closeInfo = null;
    state.lastSent = null; // what was sent before belongs to the old connection
    clearTimers();
    setStatus('online', 'Online');
    if (msg.you) setYou(msg.you);

    const rooms = welcomeRooms(msg);
    const inMain = rooms.includes(MAIN);
    const history = inMain ? historyOf(msg) : [];
    // A server that lost its history (restarted without a history file, or
    // its Redis lost its data) numbers messages from 1 again, under a new
    // epoch: the ids this page knows mean nothing there any more.
    const epoch = typeof msg.epoch === 'string' ? msg.epoch : null;
    const newEpoch = state.epoch !== null && epoch !== null && epoch !== state.epoch;
    state.epoch = epoch;
    // Without an epoch (an older server): if a known id now carries a
    // different message, or the history is older than what we have, forget
    // the old ids so that new messages show.
    const main = state.convs.get(MAIN);
    let maxSeen = 0;
    if (main) for (const id of main.seen.keys()) if (id > maxSeen) maxSeen = id;
    let maxHist = 0;
    let conflict = false;
    for (const m of history) {
      if (typeof m.id !== 'number') continue;
      if (m.id > maxHist) maxHist = m.id;
      if (main && main.seen.has(m.id) && main.seen.get(m.id) !== fingerprint(m)) conflict = true;
    }
    // With `since`, the history holds only newer messages (maybe none); a
    // server that no longer knows our last id says `gap`. Older ids than
    // ours in a history, or a gap with nothing newer, mean a new session.
    const gap = msg.gap === true;
    const older = maxHist < maxSeen && (history.length > 0 || gap);
    if (newEpoch || conflict || older) {
      state.lastId = 0;
      for (const conv of state.convs.values()) {
        if (!conv.seen.size) continue;
        conv.seen.clear();
        addNotice(conv, 'restart', ['The server started a new history (it was restarted without keeping its messages). Messages below are from its new session.']);
      }
    }

    // The rooms the server has this page in now: normally the ones it asked
    // for. A room it is no longer in leaves the list.
    state.rooms = rooms;
    storeRooms();
    for (const name of rooms) roomConv(name);
    for (const conv of Array.from(state.convs.values())) {
      if (conv.kind === 'room' && !rooms.includes(conv.key)) dropConv(conv.key);
    }
    if (inMain) {
      const conv = roomConv(MAIN);
      setMembers(conv, msg.users);
      showHistory(conv, history, gap);
      // The welcome carries #main's topic, as `joined` does a room's (a
      // server without rooms sends none: unknown until a `topic` event).
      if (typeof msg.topic === 'string' || msg.topic === null) {
        conv.topic = msg.topic || null;
        if (conv.key === state.current) renderHeader();
      }
    }
    // A server without rooms (an older one) sends no `rooms`, and answers
    // a /join with unknown_command: onError.
    setRoomsAvailable(Array.isArray(msg.rooms));
    if (!current()) {
      const first = inMain ? MAIN : rooms[0] || firstDm();
      if (first) showConv(first, { keepFocus: true, keepFragment: true });
      else showNothing();
    }
    renderConvs();
    renderUsers();
    // Connected: whatever ban this page remembered is over.
    forgetBan();
    state.refused = 0;
    state.stopped = null;
    if (msg.auth && typeof msg.auth.exp === 'number') state.tokenExp = msg.auth.exp;
    // Direct messages kept for a signed-in user (those after `since`).
    if (Array.isArray(msg.direct)) for (const d of msg.direct) if (d && typeof d === 'object') onDirect(d, { quiet: true });

    const queued = state.queuedNick;
    state.queuedNick = null;
    const nick = queued || storedNick();
    if (state.you && state.you.verified === true) {
      // Signed in: the name is the sign-in's, not the one typed here.
      state.pendingNick = null;
      closeChooser();
    } else if (nick && (!state.you || nick !== state.you.nick)) {
      requestNick(nick, queued ? 'chooser' : 'auto');
    } else if (!nick) {
      state.pendingNick = null;
      openChooser({ value: el.nickInput.value });
    } else {
      state.pendingNick = null;
    }
    // After the nickname, so that the room sees the chosen name join.
    openFragmentRoom();
  }

  function onJoined(msg) {
    const name = foldRoom(msg.room);
    if (!name) return;
    if (!inRoom(name)) { state.rooms.push(name); storeRooms(); }
    const conv = roomConv(name);
    conv.topic = typeof msg.topic === 'string' && msg.topic !== '' ? msg.topic : null;
    setMembers(conv, msg.users);
    showHistory(conv, historyOf(msg), msg.gap === true);
    if (state.wantShow === name) {
      state.wantShow = null;
      showConv(name);
      if (!el.nickDialog.open) el.input.focus();
      announce('You joined ' + name);
    } else if (!current()) {
      showConv(name, { keepFocus: true });
    } else if (conv.key === state.current) {
      renderHeader();
    }
    renderConvs();
  }

  function onParted(msg) {
    const name = foldRoom(msg.room);
    if (!name) return;
    state.rooms = state.rooms.filter((r) => r !== name);
    storeRooms();
    dropConv(name);
    const removal = state.roomRemovals.get(name);
    state.roomRemovals.delete(name);
    if (removal) {
      addNotice(current(), 'moderation', removal.parts, { ts: removal.ts, forceScroll: true });
      announce(removal.spoken);
      return;
    }
    addNotice(current(), 'part', ['You left ' + name + '.']);
    announce('You left ' + name);
  }

  function onMessage(m) {
    const conv = convFor(m.room);
    if (!conv) return; // a room this page is not in: nothing to show it in
    // Our own line came back: it was delivered, nothing to restore.
    if (isYou(m.from) && state.lastSent && state.lastSent.endsWith(String(m.text))) state.lastSent = null;
    const items = renderMessage(conv, m);
    if (!items.length) return;
    appendItems(conv, items, { forceScroll: isYou(m.from) });
    if (!isYou(m.from)) {
      countUnread(conv);
      const who = (m.from && m.from.nick) || '?';
      if (conv.key === state.current) announce(m.action === true ? '* ' + who + ' ' + m.text : who + ': ' + m.text);
    }
  }

  // A direct message, or the server's copy of one we sent: it goes into the
  // conversation with the other person, opened if need be.
  // `opts.quiet`: from the welcome's kept direct messages (not new, not
  // unread, not announced).
  function onDirect(msg, opts) {
    const from = msg.from;
    const to = msg.to;
    if (!validUser(from) || !validUser(to)) return;
    const mine = isYou(from);
    const conv = dmConv(mine ? to : from);
    if (mine && state.lastSent && state.lastSent.endsWith(String(msg.text))) state.lastSent = null;
    const m = { from, text: msg.text, ts: msg.ts };
    // Kept direct messages carry ids: a reconnect does not show one twice.
    if (typeof msg.id === 'number') m.id = msg.id;
    const items = renderMessage(conv, m);
    appendItems(conv, items, { forceScroll: mine });
    if (opts && opts.quiet) { renderConvs(); return; }
    if (!items.length) return;
    if (mine) {
      // A /msg typed in another conversation: show where it went.
      if (state.lastDmTarget !== null && foldNick(state.lastDmTarget) === foldNick(to.nick)) {
        state.lastDmTarget = null;
        if (state.current !== conv.key) showConv(conv.key, { keepFocus: true });
      }
    } else {
      countUnread(conv);
      announce((conv.key === state.current ? '' : 'Direct message from ') + from.nick + ': ' + msg.text);
    }
    renderConvs();
  }

  function onJoin(msg) {
    const u = msg.user;
    const conv = convFor(msg.room);
    if (!validUser(u) || !conv) return;
    conv.users.set(u.id, userOf(u));
    if (conv.key === state.current) renderUsers();
    if (isYou(u)) return;
    const items = addNotice(conv, 'join', [{ user: u }, ' joined'], { ts: msg.ts });
    conv.joinNotices.set(u.id, { li: items[items.length - 1], ts: Date.now() });
    if (conv.key === state.current) announce(u.nick + ' joined');
  }

  function onLeave(msg) {
    const u = msg.user;
    const conv = convFor(msg.room);
    if (!validUser(u) || !conv) return;
    const known = conv.users.get(u.id);
    conv.users.delete(u.id);
    conv.joinNotices.delete(u.id);
    if (conv.key === state.current) renderUsers();
    if (isYou(u)) return;
    const shown = { id: u.id, nick: u.nick || (known && known.nick) };
    addNotice(conv, 'leave', [{ user: shown }, ' left'], { ts: msg.ts });
    if (conv.key === state.current) announce(shown.nick + ' left');
  }

  // Direct messages with someone who changed their nickname continue
  // under the new one.
  function renameDm(old, u) {
    const oldKey = dmKey(old);
    const newKey = dmKey(u.nick);
    const conv = state.convs.get(oldKey);
    if (!conv || oldKey === newKey || state.convs.has(newKey)) {
      if (conv) conv.peer = userOf(u);
      return conv || null;
    }
    const entries = Array.from(state.convs.entries()).map(([k, c]) => (k === oldKey ? [newKey, c] : [k, c]));
    state.convs = new Map(entries);
    conv.key = newKey;
    conv.name = conv.nick = u.nick;
    conv.peer = userOf(u);
    if (state.current === oldKey) { state.current = newKey; renderHeader(); }
    return conv;
  }

  function onNick(msg) {
    const u = msg.user;
    if (!validUser(u)) return;
    const mine = isYou(u);
    const guestRename = /^guest-\d+$/i.test(String(msg.old));
    // Our name, taken back by the signed-in user it belongs to: the server
    // renamed us to guest-N.
    const displaced = mine && !guestRename && /^guest-\d+$/i.test(String(u.nick)) && !state.pendingNick;
    if (mine) {
      setYou(u);
      if (!displaced) storeNick(u.nick);
      state.pendingNick = null;
      closeChooser();
    }
    if (displaced) {
      const text = '“' + msg.old + '” belongs to a signed-in user who just arrived, so you are now ' + u.nick + '. Choose another nickname.';
      addNotice(current(), 'error', [text], { ts: msg.ts, forceScroll: true });
      announce(text);
    }
    const dm = mine ? null : renameDm(msg.old, u);
    if (dm) addNotice(dm, 'nick', [{ user: { id: u.id, nick: msg.old } }, ' is now known as ', { user: u }], { ts: msg.ts });
    let spoken = false;
    for (const name of state.rooms) {
      const conv = state.convs.get(name);
      if (!conv || !conv.users.has(u.id)) continue;
      conv.users.set(u.id, userOf(u));
      if (mine) continue;
      // A guest that names itself right after joining: turn "guest-7 joined"
      // into "ann joined" instead of adding a second line.
      const recent = conv.joinNotices.get(u.id);
      conv.joinNotices.delete(u.id);
      if (recent && Date.now() - recent.ts < 15000 && guestRename) {
        const p = recent.li.querySelector('.notice-text');
        if (p) p.replaceChildren(nickSpan(u), document.createTextNode(' joined'));
        if (conv.key === state.current && !spoken) { announce(u.nick + ' joined'); spoken = true; }
        continue;
      }
      addNotice(conv, 'nick', [{ user: { id: u.id, nick: msg.old } }, ' is now known as ', { user: u }], { ts: msg.ts });
      if (conv.key === state.current && !spoken) { announce(msg.old + ' is now known as ' + u.nick); spoken = true; }
    }
    // Our own automatic rename after (re)connecting is not worth a line.
    if (mine && !guestRename && !displaced) addNotice(current(), 'nick', ['You are now known as ', { user: u }], { ts: msg.ts });
    renderUsers();
    renderConvs();
  }

  function onUsers(msg) {
    const conv = convFor(msg.room);
    if (!conv) return;
    setMembers(conv, msg.users);
    const list = Array.from(conv.users.values());
    const parts = [(list.length === 1 ? '1 person in ' : list.length + ' people in ') + conv.name + ': '];
    list.forEach((u, i) => {
      if (i) parts.push(', ');
      parts.push({ user: u });
    });
    addNotice(conv, 'who', parts, { forceScroll: true });
  }

  // The answer to /rooms: every room there is, with its members and topic.
  function onRooms(msg) {
    const rooms = (Array.isArray(msg.rooms) ? msg.rooms : []).filter((r) => r && typeof r.room === 'string');
    const parts = [rooms.length === 1 ? '1 room: ' : rooms.length + ' rooms: '];
    rooms.forEach((r, i) => {
      const n = typeof r.members === 'number' ? r.members : 0;
      parts.push((i ? '; ' : '') + r.room + ' (' + (n === 1 ? '1 person' : n + ' people') + ')' +
        (typeof r.topic === 'string' && r.topic ? ' — ' + r.topic : ''));
    });
    addNotice(current(), 'who', parts, { forceScroll: true });
  }

  function onTopic(msg) {
    const name = foldRoom(msg.room);
    if (!name) return;
    const conv = convFor(name);
    const topic = typeof msg.topic === 'string' && msg.topic !== '' ? msg.topic : null;
    const by = validUser(msg.by) ? msg.by : null;
    if (conv) conv.topic = topic;
    let parts;
    if (!by) { // the answer to "/topic #room" alone
      parts = topic ? ['The topic of ' + name + ' is: ' + topic] : [name + ' has no topic.'];
    } else if (topic) {
      parts = [isYou(by) ? 'You' : { user: by }, ' set the topic: ' + topic];
    } else {
      parts = [isYou(by) ? 'You' : { user: by }, ' cleared the topic.'];
    }
    addNotice(conv || current(), 'topic', parts, { ts: msg.ts, forceScroll: !by });
    if (conv && conv.key === state.current) {
      renderHeader();
      if (by && !isYou(by)) announce(by.nick + ' set the topic of ' + name);
    }
  }

  // ---------------------------------------------------------------- moderation and sign-in events
  // A time from the server (ms since the epoch; seconds are accepted too)
  // as a number of ms, Infinity for null (until lifted).
  function untilMs(until) {
    if (typeof until !== 'number' || !isFinite(until) || until <= 0) return Infinity;
    return until < 1e11 ? until * 1000 : until;
  }

  // " until 14:05" (today), " until Mon 7 Dec, 14:05", or "" (no end).
  const untilDayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  function untilWords(ms) {
    if (ms === Infinity || ms === null || ms === undefined) return '';
    const d = new Date(ms);
    return ' until ' + (dayKey(d) === dayKey(new Date()) ? timeFmt.format(d) : untilDayFmt.format(d));
  }

  const MOD_DONE = { kick: 'kicked', ban: 'banned', unban: 'unbanned', mute: 'muted' };

  // `{"type":"moderation","action","room","target","by","reason","until","ts"}`:
  // a line in the room for everyone; for its target, what happens next
  // (a kick: back in a few seconds; a ban: not back, and until when; a
  // mute: until when its messages are refused).
  function onModeration(msg) {
    const action = String(msg.action);
    const done = MOD_DONE[action];
    if (!done || !validUser(msg.target)) return;
    const target = msg.target;
    const by = validUser(msg.by) ? msg.by : null;
    const room = typeof msg.room === 'string' ? foldRoom(msg.room) : null;
    const until = untilMs(msg.until);
    const reason = typeof msg.reason === 'string' && msg.reason.trim() ? msg.reason.trim() : null;
    const where = room ? ' from ' + room : action === 'kick' || action === 'ban' ? ' from the chat' : '';
    const when = action === 'ban' || action === 'mute' ? untilWords(until) : '';
    const because = reason ? ': “' + reason + '”' : '';
    const conv = (room && convFor(room)) || current();
    if (!isYou(target)) {
      const parts = by ? [{ user: by }, ' ' + done + ' ', { user: target }] : [{ user: target }, ' was ' + done];
      parts.push(where + when + because + '.');
      addNotice(conv, 'moderation about-other', parts, { ts: msg.ts });
      if (!conv || conv.key === state.current) announce((by ? by.nick + ' ' + done + ' ' : '') + target.nick + (by ? '' : ' was ' + done) + where + when + because);
      return;
    }
    const head = ['You were ' + done + where + (by ? ' by ' : '')];
    if (by) head.push({ user: by });
    let next = '';
    if (action === 'kick' && !room) next = ' This page reconnects in a few seconds.';
    if (action === 'kick' && room) next = ' You can join it again.';
    if (action === 'ban' && !room) next = ' This page will not reconnect' + (until === Infinity ? ' unless the ban is lifted.' : ' before then.');
    if (action === 'ban' && room) next = ' You cannot join it again' + (until === Infinity ? ' unless the ban is lifted.' : ' before then.');
    if (action === 'mute') next = ' Your messages' + (room ? ' in ' + room : '') + ' are refused' + (until === Infinity ? ' until it is lifted.' : ' until then.');
    head.push(when + because + '.' + next);
    const spoken = 'You were ' + done + where + (by ? ' by ' + by.nick : '') + when + because + '.' + next;
    if (!room && (action === 'kick' || action === 'ban')) state.removal = { kind: action, until };
    if (action === 'mute' && !room) setMuted(until);
    if (action === 'unban' && !room) forgetBan();
    // Out of a room: the `parted` that follows says it, in the room the
    // reader is moved to.
    if (room && (action === 'kick' || action === 'ban') && inRoom(room)) {
      state.roomRemovals.set(room, { parts: head, spoken, ts: msg.ts });
      return;
    }
    addNotice(current(), 'moderation', head, { ts: msg.ts, forceScroll: true });
    announce(spoken);
  }

  // Muted: the composer says until when (the server refuses the messages;
  // the page only explains).
  let muteTimer = null;
  function setMuted(until) {
    state.mutedUntil = until;
    if (muteTimer) { clearTimeout(muteTimer); muteTimer = null; }
    const left = until - Date.now();
    if (until !== Infinity && left > 0 && left < 0x7fffffff) {
      muteTimer = setTimeout(() => { state.mutedUntil = 0; updateComposerNote(); }, left);
    }
    updateComposerNote();
  }
  function isMuted() {
    return state.mutedUntil > Date.now();
  }

  // The answer to `/auth TOKEN` (a fresh token on this connection).
  function onAuth(msg) {
    if (typeof msg.exp === 'number') state.tokenExp = msg.exp;
  }

  // The server's `error` events carry a stable `code` (chapter 06); the page
  // decides by the code alone. The English `text` is shown only where it
  // says more than the page could (which rule a nickname broke, how a
  // command is used).

  // Answers to a /nick request (`usage`: the request itself was malformed).
  const NICK_ERRORS = new Set(['nick_taken', 'nick_invalid', 'nick_unchanged', 'usage']);

  // `about`: {nick, room} the error concerns, when the page knows them.
  // Also the words for what the composer refuses before sending
  // (composeLine's problems: not_a_room, action_in_dm, no_conversation).
  function errorText(code, serverText, about) {
    const nick = about && about.nick;
    const room = about && about.room;
    switch (code) {
      case 'nick_taken':
        return nick ? '“' + nick + '” is already taken. Please choose another nickname.'
          : 'That nickname is already taken. Please choose another.';
      case 'nick_unchanged': return nick ? 'You are already “' + nick + '”.' : 'That is already your nickname.';
      case 'unknown_command': return serverText + '. To send a line that starts with /, begin it with //.';
      case 'empty_message': return 'Empty messages are not sent.';
      case 'bad_text': return 'That message was not sent: it contains control characters.';
      case 'text_only': return 'The chat takes text messages only.';
      case 'unavailable': return 'That message was not sent: the chat server has lost its connection to the other servers. Try again in a moment.';
      case 'not_member': return 'That message was not sent: the chat lost track of this connection. Reconnecting…';
      case 'room_invalid':
        return 'A room name is # and 1 to ' + ROOM_NAME_MAX + ' letters, digits, “-” or “_”, like #rust.';
      case 'not_in_room':
        return room ? 'You are not in ' + room + '. Join it first.' : 'You are not in that room. Join it first.';
      case 'no_such_user':
        return nick ? 'Nobody here is called “' + nick + '”.' : 'Nobody here has that nickname.';
      case 'too_many_rooms':
        return 'You are in as many rooms as the server allows. Leave one to join another.';
      case 'room_limit':
        return 'The server cannot open another room right now. Join an existing room, or try again later.';
      case 'room_full': return (room || 'That room') + ' is full. Try again later.';
      case 'already_in_room': return room ? 'You are already in ' + room + '.' : 'You are already in that room.';
      case 'not_a_room': return 'That works in a room; this is a direct conversation.';
      case 'action_in_dm': return '/me works in rooms. Here, just write what you do.';
      case 'no_conversation': return 'Join a room first: type its name in the list of rooms.';
      case 'not_allowed':
        return room ? 'You are not allowed to do that in ' + room + ' (' + serverText + ').'
          : 'You are not allowed to do that: ' + serverText;
      case 'muted':
        return 'You are muted' + (isMuted() ? untilWords(state.mutedUntil) : '') + ': your message was not sent.';
      case 'name_claimed': return serverText + ' (Another account already has that name.)';
      case 'auth_mismatch': return 'That sign-in belongs to another account than this connection’s.';
      default: return serverText; // nick_invalid, usage, and codes this page does not know
    }
  }

  // Without rooms the page hides what would only earn errors: joining,
  // the topic, leaving, direct messages.
  function setRoomsAvailable(yes) {
    state.roomsAvailable = yes;
    document.body.classList.toggle('no-rooms', !yes);
    renderUsers();
  }

  function onError(msg) {
    const code = typeof msg.code === 'string' ? msg.code : '';
    const serverText = String(msg.text || 'Something went wrong.');
    // A /join this server does not know: it has no rooms (an older
    // server). The page stops offering them.
    if (code === 'unknown_command' && state.wantShow) {
      state.wantShow = null;
      setRoomsAvailable(false);
      const conv = current();
      if (conv && conv.kind === 'room') setFragmentRoom(conv.name);
    }
    const pending = state.pendingNick;
    if (NICK_ERRORS.has(code) && pending) {
      state.pendingNick = null;
      // After a reload the server may not have noticed yet that our previous
      // connection (holding the same nickname) is gone: retry a few times.
      if (pending.source === 'auto' && code === 'nick_taken' && pending.tries < NICK_RETRIES) {
        const nick = pending.nick;
        const tries = pending.tries + 1;
        setTimeout(() => {
          if (state.online && (!state.you || state.you.nick !== nick)) requestNick(nick, 'auto', tries);
        }, 700 * tries);
        return;
      }
      if (pending.source === 'chooser' || pending.source === 'auto') {
        if (code === 'nick_unchanged') { closeChooser(); return; }
        showChooserError(errorText(code, serverText, { nick: pending.nick }));
        el.nickInput.value = pending.nick;
        return;
      }
    }
    // Any other answer while the chooser waits must not leave it waiting.
    if (pending && pending.source === 'chooser') el.nickSubmit.disabled = false;

    const room = typeof msg.room === 'string' ? foldRoom(msg.room) : null;
    const wanted = room !== null && state.wantShow === room;
    if (wanted) state.wantShow = null;
    // Joining a room the page is in already: just show it.
    if (code === 'already_in_room' && room && inRoom(room)) {
      if (wanted) showConv(room);
      return;
    }
    let nick = pending ? pending.nick : null;
    if (code === 'no_such_user') { nick = state.lastDmTarget; state.lastDmTarget = null; }
    // Refused while muted: the text goes back in the box.
    if (code === 'muted') restoreLastSent();
    const text = errorText(code, serverText, { nick, room });
    // Shown in the room it concerns if the page is in it, else where the
    // reader is; a failed join also under the field it was typed in.
    const target = (room && convFor(room)) || current();
    addNotice(target, 'error', [text], { forceScroll: true });
    if (wanted || !target) showJoinError(text);
    if (wanted) {
      const conv = current();
      if (conv && conv.kind === 'room') setFragmentRoom(conv.name);
    }
    announce(text);
  }

  // ---------------------------------------------------------------- start
  const initialNick = storedNick();
  el.meNick.textContent = initialNick || 'Choose a nickname';
  // A connection starts in #main, or in the rooms this tab was in before a
  // reload; the fragment's room is joined once the welcome has arrived
  // (openFragmentRoom), so the fragment is left as it is until then.
  const kept = storedRooms();
  state.rooms = kept.length ? kept : [MAIN];
  roomConv(state.rooms[0]);
  showConv(state.rooms[0], { keepFocus: true, keepFragment: true });
  updateComposerNote();
  // With a sign-in token the name comes from it: no chooser.
  if (!initialNick && !signInToken) openChooser({});
  // Banned before (and not signing in now): say so rather than knock again.
  const ban = signInToken ? null : storedBan();
  if (ban) stopBanned(ban);
  else connect();
})();
