// wschat browser client (protocol wschat.v1). Vanilla JS, no dependencies.
//
// Safety rule for this file: text that comes from the network or from the
// user is only ever put into the page with textContent / createTextNode.
'use strict';

(function () {
  const PROTOCOL = 'wschat.v1';
  const NICK_KEY = 'wschat.nick';
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
    people: $('people'),
    peopleClose: $('people-close'),
    onlineCount: $('online-count'),
    userList: $('user-list'),
    scroller: $('scroller'),
    messages: $('messages'),
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
  };

  // ---------------------------------------------------------------- state
  const state = {
    ws: null,
    online: false,          // welcome received on the current socket
    everOnline: false,
    onlineSince: 0,
    you: null,              // {id, nick}
    users: new Map(),       // id -> {id, nick}
    seen: new Map(),        // message id -> fingerprint (dedupe across reconnects)
    lastId: 0,              // newest message id seen: a reconnect resumes after it
    epoch: null,            // the server's history the ids belong to (from the welcome)
    attempt: 0,             // consecutive failed connection attempts
    retryTimer: null,
    countdownTimer: null,
    retryAt: 0,
    pendingNick: null,      // {nick, source: 'chooser'|'auto'|'command', tries}
    queuedNick: null,       // chosen while offline, sent on connect
    unread: 0,
    lastItem: null,         // {kind, fromId, ts} of the last rendered list item
    lastDay: null,
    joinNotices: new Map(), // user id -> {li, ts} of a recent join notice
    closeInfo: null,        // why the last connection closed (describeClose)
    lastSent: null,         // the last text sent from the composer
    maxMessageBytes: 0,     // the server's message limit, once a 1009 told us
  };

  // ---------------------------------------------------------------- storage
  function storedNick() {
    try { return localStorage.getItem(NICK_KEY) || ''; } catch (_) { return ''; }
  }
  function storeNick(nick) {
    try { localStorage.setItem(NICK_KEY, nick); } catch (_) { /* private mode */ }
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

  // ---------------------------------------------------------------- scrolling
  function atBottom() {
    const s = el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight <= STICK_THRESHOLD_PX;
  }
  function scrollToBottom() {
    el.scroller.scrollTop = el.scroller.scrollHeight;
    el.jump.hidden = true;
  }
  // Whether the view follows new messages: true until the reader scrolls up.
  let following = true;
  // Appends list items, keeping the view pinned to the bottom if it was.
  function appendItems(items, opts) {
    if (!items.length) return;
    const stick = (opts && opts.forceScroll) || following || atBottom();
    for (const li of items) el.messages.appendChild(li);
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
  function dayDivider(ts) {
    const d = new Date(ts);
    const key = dayKey(d);
    if (key === state.lastDay) return null;
    state.lastDay = key;
    state.lastItem = null;
    const li = node('li', 'day');
    li.appendChild(node('span', null, dayLabel(d)));
    return li;
  }

  function fingerprint(m) {
    return String(m.ts) + '\u0000' + String(m.text) + '\u0000' + String(m.from && m.from.nick);
  }

  // Builds the list item(s) for a chat message; returns [] for a duplicate.
  function renderMessage(m) {
    if (typeof m.id === 'number') {
      if (state.seen.has(m.id)) return [];
      state.seen.set(m.id, fingerprint(m));
      if (m.id > state.lastId) state.lastId = m.id;
    }
    const out = [];
    const ts = validTs(m.ts);
    const divider = dayDivider(ts);
    if (divider) out.push(divider);

    const from = m.from || { id: -1, nick: '?' };
    const own = isYou(from);
    const action = m.action === true;
    const last = state.lastItem;
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
      if (own) meta.appendChild(node('span', 'you-tag', 'you'));
      meta.appendChild(timeNode(ts));
      li.appendChild(meta);
      li.appendChild(node('p', 'body text', m.text));
    }
    out.push(li);
    state.lastItem = { kind: action ? 'action' : 'message', fromId: from.id, nick: from.nick, ts };
    return out;
  }

  // A system notice (join, leave, nick change, errors, /who answers).
  // `parts` is a list of strings and {user} objects.
  function renderNotice(kind, parts, ts) {
    const out = [];
    const t = validTs(ts);
    const divider = dayDivider(t);
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
    state.lastItem = { kind: 'notice', ts: t };
    return out;
  }

  // Screen readers read each line added to the live region.
  function announce(text) {
    el.live.appendChild(node('p', null, text));
    while (el.live.childElementCount > 5) el.live.firstElementChild.remove();
  }

  function bumpUnread() {
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
  function renderUsers() {
    if (state.you) state.users.set(state.you.id, { id: state.you.id, nick: state.you.nick });
    const list = Array.from(state.users.values()).sort((a, b) => {
      if (isYou(a)) return -1;
      if (isYou(b)) return 1;
      return String(a.nick).localeCompare(String(b.nick), undefined, { sensitivity: 'base' });
    });
    el.userList.replaceChildren();
    for (const u of list) {
      const li = node('li', 'user' + (isYou(u) ? ' me' : ''));
      li.dataset.id = String(u.id);
      const avatar = node('span', 'avatar', String(u.nick || '?').slice(0, 1).toUpperCase());
      avatar.setAttribute('aria-hidden', 'true');
      avatar.style.setProperty('--hue', String(nickHue(u.nick || '?')));
      li.appendChild(avatar);
      li.appendChild(nickSpan(u));
      if (isYou(u)) li.appendChild(node('span', 'you-tag', 'you'));
      el.userList.appendChild(li);
    }
    const n = String(list.length);
    el.onlineCount.textContent = n;
    el.peopleToggleCount.textContent = n;
    el.peopleToggle.title = list.length === 1 ? '1 person online' : n + ' people online';
  }

  function setYou(user) {
    state.you = { id: user.id, nick: user.nick };
    el.meNick.textContent = user.nick;
    el.input.placeholder = 'Message as ' + user.nick + '…';
  }

  // ---------------------------------------------------------------- status
  const STATUS_SPOKEN = {
    connecting: 'Connecting to the chat…',
    online: 'Connected to the chat.',
    reconnecting: 'Disconnected. Reconnecting automatically.',
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
    const reason = kind !== 'online' && state.closeInfo ? state.closeInfo.short : '';
    el.statusReason.textContent = reason;
    el.status.title = kind !== 'online' && state.closeInfo ? state.closeInfo.text : '';
    el.retryNow.hidden = kind !== 'reconnecting';
    document.body.dataset.connection = kind;
    updateComposerNote();
  }

  // A problem with the text in the box (too large for the server), shown
  // under it until the text is edited.
  let composerProblem = '';
  function updateComposerNote() {
    if (composerProblem) {
      el.note.textContent = composerProblem;
      el.composer.classList.toggle('offline', !state.online);
    } else if (state.online) {
      el.note.textContent = '';
      el.composer.classList.remove('offline');
    } else {
      el.note.textContent = 'Not connected. Your text stays here and can be sent once you are back online.';
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
    setPeopleOpen(false);
    openChooser({ allowCancel: true, value: state.you ? state.you.nick : storedNick() });
  }
  el.meButton.addEventListener('click', changeNick);
  $('people-nick').addEventListener('click', changeNick);

  function requestNick(nick, source, tries) {
    state.pendingNick = { nick, source, tries: tries || 0 };
    send('/nick ' + nick);
  }

  // ---------------------------------------------------------------- people panel (phones)
  function setPeopleOpen(open) {
    document.body.classList.toggle('people-open', open);
    el.peopleToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) el.peopleClose.focus();
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
    // Once the server has said how large a message may be (a 1009 close),
    // a larger one is stopped here instead of costing the connection.
    const bytes = state.maxMessageBytes ? utf8.encode(raw).length : 0;
    if (bytes > state.maxMessageBytes) {
      composerProblem = 'This message is ' + bytes + ' bytes; the server takes at most ' +
        state.maxMessageBytes + '. Please shorten it.';
      shakeComposer();
      return;
    }
    if (!state.online || !send(raw)) {
      shakeComposer();
      return;
    }
    state.lastSent = raw;
    const m = /^\/nick\s+(\S+)\s*$/.exec(raw);
    if (m) state.pendingNick = { nick: m[1], source: 'command', tries: 0 };
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

  function socketUrl() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // `since` and `epoch`: the server sends only the messages after the
    // last one this page has, so a reconnect neither repeats nor drops a
    // line; if that id belongs to a history the server no longer has (its
    // epoch changed), it says `gap` and sends what it has (chapter 06).
    let query = '';
    if (state.lastId > 0) {
      query = '?since=' + state.lastId;
      if (state.epoch) query += '&epoch=' + encodeURIComponent(state.epoch);
    }
    return scheme + '//' + location.host + '/' + query;
  }

  function connect() {
    clearTimers();
    state.online = false;
    setStatus('connecting', state.everOnline ? 'Reconnecting…' : 'Connecting…');
    let ws;
    try {
      ws = new WebSocket(socketUrl(), [PROTOCOL]);
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
    ws.addEventListener('close', (ev) => {
      clearTimeout(giveUp);
      if (state.ws !== ws) return;
      state.ws = null;
      const wasOnline = state.online;
      // Back off from scratch after a connection that lasted; keep growing
      // the delay if the server keeps dropping us right after the welcome.
      if (wasOnline && Date.now() - state.onlineSince > STABLE_MS) state.attempt = 0;
      state.online = false;
      scheduleReconnect(onClosed(ev.code, ev.reason, wasOnline));
    });
    ws.addEventListener('error', () => { /* a close event follows */ });
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
    const info = describeClose(code, reason);
    // A failed attempt to reconnect (1006 before any welcome) keeps the
    // explanation of the close that started it ("Server restarting").
    if (info === CLOSE_LOST && !wasOnline && state.closeInfo) return 0;
    state.closeInfo = info;
    if (info.reset) state.attempt = 0;
    if (info.limit) state.maxMessageBytes = info.limit;
    if (info.restore) restoreLastSent();
    if (wasOnline || info !== CLOSE_LOST) {
      appendItems(renderNotice('closed', [info.text]), { forceScroll: true });
      announce(info.text);
    }
    return info.pauseMs || 0;
  }

  function connectNow() {
    if (state.ws) return;
    connect();
  }
  el.retryNow.addEventListener('click', () => { state.attempt = 0; connectNow(); });
  window.addEventListener('online', () => { if (!state.ws) { state.attempt = 0; connectNow(); } });

  // ---------------------------------------------------------------- protocol
  function handle(msg) {
    switch (msg.type) {
      case 'welcome': onWelcome(msg); break;
      case 'message': onMessage(msg); break;
      case 'join': onJoin(msg); break;
      case 'leave': onLeave(msg); break;
      case 'nick': onNick(msg); break;
      case 'users': onUsers(msg); break;
      case 'error': onError(msg); break;
      default: break; // unknown event types are ignored
    }
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

    state.users = new Map();
    for (const u of Array.isArray(msg.users) ? msg.users : []) {
      if (u && typeof u.id === 'number') state.users.set(u.id, { id: u.id, nick: u.nick });
    }
    renderUsers();

    const history = (Array.isArray(msg.history) ? msg.history : []).filter((m) => m && typeof m === 'object');
    // A server that lost its history (restarted without a history file, or
    // its Redis lost its data) numbers messages from 1 again, under a new
    // epoch: the ids this page knows mean nothing there any more.
    const epoch = typeof msg.epoch === 'string' ? msg.epoch : null;
    const newEpoch = state.epoch !== null && epoch !== null && epoch !== state.epoch;
    state.epoch = epoch;
    // Without an epoch (an older server): if a known id now carries a
    // different message, or the history is older than what we have, forget
    // the old ids so that new messages show.
    let maxSeen = 0;
    for (const id of state.seen.keys()) if (id > maxSeen) maxSeen = id;
    let maxHist = 0;
    let conflict = false;
    for (const m of history) {
      if (typeof m.id !== 'number') continue;
      if (m.id > maxHist) maxHist = m.id;
      if (state.seen.has(m.id) && state.seen.get(m.id) !== fingerprint(m)) conflict = true;
    }
    // With `since`, the history holds only newer messages (maybe none); a
    // server that no longer knows our last id says `gap`. Older ids than
    // ours in a history, or a gap with nothing newer, mean a new session.
    const gap = msg.gap === true;
    const older = maxHist < maxSeen && (history.length > 0 || gap);
    if (state.seen.size && (newEpoch || conflict || older)) {
      state.seen.clear();
      state.lastId = 0;
      appendItems(renderNotice('restart', ['The server started a new history (it was restarted without keeping its messages). Messages below are from its new session.']));
    } else if (state.seen.size && gap) {
      appendItems(renderNotice('restart', ['Some messages sent while you were away are no longer available.']));
    }
    const items = [];
    for (const m of history) items.push(...renderMessage(m));
    appendItems(items, { forceScroll: el.messages.childElementCount === 0 });

    const queued = state.queuedNick;
    state.queuedNick = null;
    const nick = queued || storedNick();
    if (nick && (!state.you || nick !== state.you.nick)) {
      requestNick(nick, queued ? 'chooser' : 'auto');
    } else if (!nick) {
      state.pendingNick = null;
      openChooser({ value: el.nickInput.value });
    } else {
      state.pendingNick = null;
    }
  }

  function onMessage(m) {
    // Our own line came back: it was delivered, nothing to restore.
    if (isYou(m.from) && state.lastSent && state.lastSent.endsWith(String(m.text))) state.lastSent = null;
    appendItems(renderMessage(m), { forceScroll: isYou(m.from) });
    if (!isYou(m.from)) {
      bumpUnread();
      const who = (m.from && m.from.nick) || '?';
      announce(m.action === true ? '* ' + who + ' ' + m.text : who + ': ' + m.text);
    }
  }

  function onJoin(msg) {
    const u = msg.user;
    if (!u || typeof u.id !== 'number') return;
    state.users.set(u.id, { id: u.id, nick: u.nick });
    renderUsers();
    if (isYou(u)) return;
    const items = renderNotice('join', [{ user: u }, ' joined'], msg.ts);
    state.joinNotices.set(u.id, { li: items[items.length - 1], ts: Date.now() });
    appendItems(items);
    announce(u.nick + ' joined');
  }

  function onLeave(msg) {
    const u = msg.user;
    if (!u || typeof u.id !== 'number') return;
    const known = state.users.get(u.id);
    state.users.delete(u.id);
    state.joinNotices.delete(u.id);
    renderUsers();
    if (isYou(u)) return;
    const shown = { id: u.id, nick: u.nick || (known && known.nick) };
    appendItems(renderNotice('leave', [{ user: shown }, ' left'], msg.ts));
    announce(shown.nick + ' left');
  }

  function onNick(msg) {
    const u = msg.user;
    if (!u || typeof u.id !== 'number') return;
    state.users.set(u.id, { id: u.id, nick: u.nick });
    const mine = isYou(u);
    if (mine) {
      setYou(u);
      storeNick(u.nick);
      state.pendingNick = null;
      closeChooser();
    }
    renderUsers();

    // A guest that names itself right after joining: turn "guest-7 joined"
    // into "ann joined" instead of adding a second line.
    const recent = state.joinNotices.get(u.id);
    state.joinNotices.delete(u.id);
    if (!mine && recent && Date.now() - recent.ts < 15000 && /^guest-\d+$/i.test(String(msg.old))) {
      const p = recent.li.querySelector('.notice-text');
      if (p) p.replaceChildren(nickSpan(u), document.createTextNode(' joined'));
      announce(u.nick + ' joined');
      return;
    }
    // Our own automatic rename after (re)connecting is not worth a line.
    if (mine && /^guest-\d+$/i.test(String(msg.old))) return;
    const parts = mine
      ? ['You are now known as ', { user: u }]
      : [{ user: { id: u.id, nick: msg.old } }, ' is now known as ', { user: u }];
    appendItems(renderNotice('nick', parts, msg.ts));
    if (!mine) announce(msg.old + ' is now known as ' + u.nick);
  }

  function onUsers(msg) {
    state.users = new Map();
    for (const u of Array.isArray(msg.users) ? msg.users : []) {
      if (u && typeof u.id === 'number') state.users.set(u.id, { id: u.id, nick: u.nick });
    }
    renderUsers();
    const list = Array.from(state.users.values());
    const parts = [list.length === 1 ? '1 person online: ' : list.length + ' people online: '];
    list.forEach((u, i) => {
      if (i) parts.push(', ');
      parts.push({ user: u });
    });
    appendItems(renderNotice('who', parts), { forceScroll: true });
  }

  // The server's `error` events carry a stable `code` (chapter 06); the page
  // decides by the code alone. The English `text` is shown only where it
  // says more than the page could (which rule a nickname broke, how a
  // command is used).

  // Answers to a /nick request (`usage`: the request itself was malformed).
  const NICK_ERRORS = new Set(['nick_taken', 'nick_invalid', 'nick_unchanged', 'usage']);

  function errorText(code, serverText, nick) {
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
      default: return serverText; // nick_invalid, usage, and codes this page does not know
    }
  }

  function onError(msg) {
    const code = typeof msg.code === 'string' ? msg.code : '';
    const serverText = String(msg.text || 'Something went wrong.');
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
        showChooserError(errorText(code, serverText, pending.nick));
        el.nickInput.value = pending.nick;
        return;
      }
    }
    // Any other answer while the chooser waits must not leave it waiting.
    if (pending && pending.source === 'chooser') el.nickSubmit.disabled = false;
    const text = errorText(code, serverText, pending && pending.nick);
    appendItems(renderNotice('error', [text]), { forceScroll: true });
    announce(text);
  }

  // ---------------------------------------------------------------- start
  const initialNick = storedNick();
  el.meNick.textContent = initialNick || 'Choose a nickname';
  renderUsers();
  updateComposerNote();
  if (!initialNick) openChooser({});
  connect();
})();
