// The frame inspector: opens /inspect/ws (the inspected connection), reads
// the one-time key from its first message, opens /inspect/feed with it,
// and draws every report the feed sends. Everything shown comes from the
// bytes the server read and wrote; the page works out the fields itself
// (bits, length, unmasking) so the learner sees each step.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const log = $('log');
  const OPCODES = { 0: 'continuation', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' };
  const CLOSE_CODES = {
    1000: 'normal closure', 1001: 'going away', 1002: 'protocol error', 1003: 'unsupported data',
    1005: 'no status code', 1006: 'closed abnormally', 1007: 'invalid payload', 1008: 'policy violation',
    1009: 'message too big', 1010: 'extension expected', 1011: 'internal error',
  };

  let ws = null;    // the inspected connection
  let feed = null;  // the reports
  let generation = 0;
  let acted = false; // the learner used a control since connecting
  // Whether the message now open in each direction is compressed: RSV1 is
  // set on its first frame only (RFC 7692 §6.1), not on continuations.
  const opened = { in: { compressed: false, opcode: 1 }, out: { compressed: false, opcode: 1 } };

  // ------------------------------------------------------------ helpers

  const bytesOf = (hex) => (hex ? hex.split(' ').map((h) => parseInt(h, 16)) : []);
  const hexOf = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'class') node.className = v;
      else if (k.includes('-') || k === 'role') node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function setStatus(state, text) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function notice(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = !text;
  }

  function add(node) {
    // Follows new frames once the learner asks for some: the page
    // opens at the top, on the explanation and the handshake.
    const follow = $('follow').checked && acted;
    log.append(el('li', {}, node));
    if (follow) node.scrollIntoView({ block: 'end' });
  }

  // A labelled row of the diagram: a name, the bytes (or a value), a note.
  function field(cls, name, value, note) {
    return el('div', { class: `field ${cls}` },
      el('span', { class: 'name' }, name),
      el('code', { class: 'value' }, value),
      note ? el('span', { class: 'note' }, note) : null);
  }

  function utf8(bytes) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(new Uint8Array(bytes));
    } catch {
      return null; // a fragment may end inside a character
    }
  }

  // ------------------------------------------------------------ reports

  function renderHandshake(r) {
    const accept = /Sec-WebSocket-Accept: *(\S+)/i.exec(r.response)?.[1] || '';
    const computed = btoa(String.fromCharCode(...bytesOf(r.sha1)));
    const ok = computed === accept;
    return el('article', { class: 'card handshake', id: 'handshake' },
      el('h3', {}, 'The opening handshake ', el('span', { class: 'ref' }, 'RFC 6455 §4')),
      el('p', { class: 'muted' }, 'The request head exactly as the server received it (credentials redacted), and the answer it wrote:'),
      el('div', { class: 'heads' },
        el('figure', {}, el('figcaption', {}, '→ request'), el('pre', { class: 'request-head' }, r.request.replace(/\r\n/g, '⏎\n'))),
        el('figure', {}, el('figcaption', {}, '← response'), el('pre', { class: 'response-head' }, r.response.replace(/\r\n/g, '⏎\n')))),
      el('h4', {}, 'The accept key, step by step ', el('span', { class: 'ref' }, '§4.2.2')),
      el('ol', { class: 'steps' },
        el('li', {}, 'the client\'s key: ', el('code', { class: 'accept-key' }, r.key)),
        el('li', {}, 'followed by the GUID: ', el('code', { class: 'guid' }, r.guid)),
        el('li', {}, 'SHA-1 of those ', String(r.key.length + r.guid.length), ' bytes: ', el('code', { class: 'sha1' }, r.sha1)),
        el('li', {}, 'in base64: ', el('code', { class: 'accept-result' }, computed))),
      el('p', { class: ok ? 'check ok' : 'check bad', 'data-ok': String(ok) },
        ok ? `✓ the page's own base64 of the SHA-1 equals the response's Sec-WebSocket-Accept (${accept})`
          : `✗ computed ${computed}, response says ${accept}`));
  }

  // The fields of a frame, worked out from its bytes (RFC 6455 §5.2).
  function parseFrame(r) {
    const h = bytesOf(r.header);
    const f = {
      fin: h[0] >> 7, rsv1: (h[0] >> 6) & 1, rsv2: (h[0] >> 5) & 1, rsv3: (h[0] >> 4) & 1,
      opcode: h[0] & 0x0f, mask: h[1] >> 7, len7: h[1] & 0x7f, ext: [], key: [],
    };
    let at = 2;
    if (f.len7 === 126) { f.ext = h.slice(2, 4); at = 4; }
    if (f.len7 === 127) { f.ext = h.slice(2, 10); at = 10; }
    if (f.mask) f.key = h.slice(at, at + 4);
    f.payload = bytesOf(r.payload);
    f.unmasked = f.mask ? f.payload.map((b, i) => b ^ f.key[i % 4]) : f.payload;
    return f;
  }

  function bitGrid(f, h) {
    const bits = [...h[0].toString(2).padStart(8, '0'), ...h[1].toString(2).padStart(8, '0')];
    const groups = [
      ['FIN', 1, 'fin'], ['RSV1', 1, 'rsv1'], ['RSV2', 1, 'rsv'], ['RSV3', 1, 'rsv'],
      ['opcode', 4, 'opcode'], ['MASK', 1, 'mask'], ['payload len', 7, 'len'],
    ];
    const grid = el('div', { class: 'bits', role: 'img', 'aria-label': `first two bytes ${hexOf(h.slice(0, 2))}` });
    let i = 0;
    for (const [name, width, cls] of groups) {
      const cell = el('div', { class: `bit-group ${cls}` });
      cell.style.gridColumn = `span ${width}`;
      cell.append(el('span', { class: 'bit-name' }, name),
        el('span', { class: 'bit-values' }, bits.slice(i, i + width).join('')));
      grid.append(cell);
      i += width;
    }
    return grid;
  }

  function lengthNote(f, total) {
    if (f.len7 < 126) return `7-bit form: ${f.len7}`;
    if (f.len7 === 126) return `126, then a 16-bit length: ${total}`;
    return `127, then a 64-bit length: ${total}`;
  }

  function renderFrame(r) {
    const f = parseFrame(r);
    const h = bytesOf(r.header);
    const name = OPCODES[f.opcode] || `reserved ${f.opcode}`;
    const into = r.dir === 'in' ? 'browser → server' : 'server → browser';
    const more = r.payload_len - f.payload.length;
    const card = el('article', {
      class: `card frame ${r.dir}`, 'data-n': r.n, 'data-dir': r.dir, 'data-fin': f.fin,
      'data-rsv1': f.rsv1, 'data-opcode': f.opcode, 'data-masked': f.mask, 'data-len': r.payload_len,
    });
    card.append(el('h3', {},
      el('span', { class: 'arrow' }, r.dir === 'in' ? '→' : '←'), ` frame #${r.n} `,
      el('span', { class: 'muted' }, `${into} · ${name}${f.fin ? '' : ' · FIN 0 (more to come)'}${f.rsv1 ? ' · RSV1: compressed' : ''} · ${r.payload_len} bytes · ${r.ms} ms`)));
    card.append(bitGrid(f, h));
    card.append(field('f-header', 'header bytes', r.header));
    card.append(field('f-opcode', 'opcode', `${f.opcode} = ${name}`, f.opcode === 0 ? 'continues the open message (§5.4)' : null));
    card.append(field('f-len', 'payload length', String(r.payload_len), lengthNote(f, r.payload_len)));
    if (f.mask) card.append(field('f-key', 'masking key', hexOf(f.key), 'chosen by the browser for this frame (§5.3)'));
    const payloadNote = more > 0 ? `… and ${more} more bytes, not shown (the inspector shows ${f.payload.length})` : null;
    if (f.mask) {
      card.append(field('f-masked', 'payload as sent', hexOf(f.payload), payloadNote));
      card.append(field('f-unmasked', 'unmasked', hexOf(f.unmasked), 'byte i XOR key[i mod 4]'));
    } else {
      card.append(field('f-payload', 'payload', hexOf(f.payload) || '(none)', payloadNote || (r.dir === 'out' ? 'a server never masks' : null)));
    }
    if (f.opcode === 1 || f.opcode === 2) opened[r.dir] = { compressed: f.rsv1 === 1, opcode: f.opcode };
    const compressed = f.opcode === 0 ? opened[r.dir].compressed : f.rsv1 === 1;
    const isText = f.opcode === 1 || (f.opcode === 0 && opened[r.dir].opcode === 1);
    if (compressed && f.opcode !== 1 && f.opcode !== 2) {
      card.append(field('f-note', 'compressed', 'this continuation carries compressed bytes: see the message below'));
    }
    const text = isText && !compressed ? utf8(f.unmasked) : null;
    if (text !== null && f.unmasked.length) card.append(field('f-text', 'as UTF-8', text));
    return card;
  }

  function renderMessage(r) {
    const frames = r.frames.map((n) => `#${n}`).join(', ');
    const card = el('article', {
      class: `card message ${r.dir}`, 'data-kind': r.kind, 'data-dir': r.dir,
      'data-frames': r.frames.join(','), 'data-compressed': String(r.compressed),
    });
    const how = r.frames.length > 1 ? `${r.frames.length} frames (${frames})` : `frame ${frames}`;
    card.append(el('h3', {}, el('span', { class: 'arrow' }, r.dir === 'in' ? '→' : '←'),
      ` ${r.kind} message `, el('span', { class: 'muted' }, `from ${how}`)));
    if (r.frames.length > 1) {
      const gap = r.frames.some((n, i) => i > 0 && n !== r.frames[i - 1] + 1);
      card.append(el('p', { class: 'muted' }, gap
        ? 'Fragments, with other frames between them (control frames may come between fragments, §5.4).'
        : 'Fragments: the first frame has the opcode, the others are continuations; FIN 1 ends the message (§5.4).'));
    }
    if (r.compressed) {
      card.append(field('m-wire', 'compressed bytes', r.wire, r.wire_len > r.wire.split(' ').length ? `of ${r.wire_len}` : 'the frames\' payloads, joined'));
      card.append(field('m-tail', 'removed tail', r.tail, 'the sender cut these 4 bytes (RFC 7692 §7.2.1); the receiver appends them before inflating'));
    }
    if (r.kind === 'close') {
      card.append(field('m-code', 'close code', r.code === undefined ? '(none)' : String(r.code),
        r.code === undefined ? 'an empty Close: 1005 (§7.1.5)' : (CLOSE_CODES[r.code] || (r.code >= 4000 ? 'private use (§7.4.2)' : ''))));
      if (r.code !== undefined) card.append(field('m-reason', 'reason', r.reason || '(empty)'));
    } else if (r.kind === 'binary') {
      card.append(field('m-data', 'data', r.data || '(empty)', `${r.len} bytes`));
    } else {
      card.append(field('m-text', r.compressed ? 'inflated' : 'text', r.text, r.compressed ? `${r.len} bytes from ${r.wire_len}` : `${r.len} bytes`));
    }
    return card;
  }

  function renderNote(cls, text) {
    return el('article', { class: `card note-card ${cls}` }, el('p', {}, text));
  }

  function render(r) {
    switch (r.type) {
      case 'hello': {
        const l = r.limits;
        $('limits').textContent = `Limits: ${l.inspected_at_once} inspected connections at once; ` +
          `${l.frames_per_second} frames a second shown (more are counted); ${l.frame_shown} payload bytes ` +
          `shown per frame; messages up to ${l.message} bytes. Compression: ${r.deflate || 'off'}.`;
        return;
      }
      case 'handshake': add(renderHandshake(r)); return;
      case 'frame': add(renderFrame(r)); return;
      case 'message': add(renderMessage(r)); return;
      case 'skipped':
        add(renderNote('skipped', `${r.frames} frames not shown: over ${r.limit} a second.`));
        return;
      case 'error': notice(`The server refused that: ${r.message}`); return;
      case 'closed':
        add(renderNote('closed', `The inspected connection closed: ${r.code} ${r.reason}`));
        return;
      default:
    }
  }

  // ------------------------------------------------------------ sockets

  function base() {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
  }

  function connect() {
    generation += 1;
    const mine = generation;
    for (const s of [ws, feed]) if (s && s.readyState <= 1) s.close(1000);
    log.replaceChildren();
    notice('');
    acted = false;
    opened.in = { compressed: false, opcode: 1 };
    opened.out = { compressed: false, opcode: 1 };
    const deflate = $('deflate').checked;
    setStatus('connecting', 'Connecting…');
    ws = new WebSocket(`${base()}/inspect/ws${deflate ? '' : '?deflate=off'}`);
    ws.binaryType = 'arraybuffer';
    let first = true;
    ws.onmessage = (e) => {
      if (!first || mine !== generation) return;
      first = false;
      const hello = JSON.parse(e.data).inspect;
      openFeed(hello.conn, hello.key, mine);
    };
    ws.onclose = (e) => {
      if (mine !== generation) return;
      setStatus('closed', `Closed (${e.code}${e.reason ? ` ${e.reason}` : ''}). Reconnect to start again.`);
    };
    ws.onerror = () => {
      if (mine === generation) notice('The inspected connection failed (is the inspector busy or off?).');
    };
  }

  function openFeed(conn, key, mine) {
    feed = new WebSocket(`${base()}/inspect/feed?conn=${conn}&key=${encodeURIComponent(key)}`);
    feed.onopen = () => {
      if (mine === generation) setStatus('online', `Inspecting connection ${conn}`);
    };
    feed.onmessage = (e) => {
      if (mine === generation) render(JSON.parse(e.data));
    };
  }

  function request(body) {
    if (!feed || feed.readyState !== 1) { notice('Not connected: reconnect first.'); return; }
    notice('');
    acted = true;
    feed.send(JSON.stringify(body));
  }

  function sendOnInspected(data) {
    if (!ws || ws.readyState !== 1) { notice('Not connected: reconnect first.'); return; }
    notice('');
    acted = true;
    ws.send(data);
  }

  // ------------------------------------------------------------ controls

  $('reconnect').onclick = connect;
  $('deflate').onchange = connect;
  $('clear').onclick = () => log.replaceChildren();
  $('send-text').onclick = () => sendOnInspected($('text').value);
  $('text').onkeydown = (e) => { if (e.key === 'Enter') sendOnInspected($('text').value); };
  $('send-empty').onclick = () => sendOnInspected('');
  $('send-binary').onclick = () => {
    const hex = $('hex').value.replace(/[\s,]+/g, '');
    if (!/^([0-9a-f]{2})*$/i.test(hex)) { notice('Binary: give bytes as pairs of hex digits, like 00 ff 10.'); return; }
    sendOnInspected(new Uint8Array(hex.match(/../g)?.map((b) => parseInt(b, 16)) || []));
  };
  $('send-fragments').onclick = () => request({ send: 'fragments', count: Number($('fragments').value), text: $('server-text').value });
  $('send-ping').onclick = () => request({ send: 'ping', text: 'ping' });
  $('send-both').onclick = () => request({ send: 'both', text: $('server-text').value });
  $('send-close').onclick = () => request({ send: 'close', code: Number($('close-code').value), text: $('close-reason').value });

  connect();
})();
