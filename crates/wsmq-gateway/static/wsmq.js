// wsmq.js: the dependency-free browser client of the wsmq v1 protocol (an ES module served
// by the gateway at /client/wsmq.js; documented in docs/client.md).
//
// It connects with a JWT (query `token`, subprotocol `wsmq.v1`), subscribes to queues (acked
// for you once the handler returns, or by hand) and channels, publishes with promises settled
// by the `ok` / `error` reply, refreshes the token with the `auth` op, and reconnects with
// exponential backoff and jitter according to the close code, resubscribing afterwards.
//
// When the WebSocket upgrade fails (an error or close before the welcome, or no welcome within
// `fallbackTimeout`), it falls back to Server-Sent Events: one `GET /sse` stream for all its
// subscriptions, read with fetch (so the token travels in `Authorization`, a channel position
// in `Last-Event-ID`, and a refusal's status and reason can be read, none of which
// EventSource allows), acks and nacks with `POST /api/ack` / `/api/nack`. Requests the stream
// cannot carry (publish, presence, history, ping) reject with `unsupported` there. While on
// SSE it tries the WebSocket again every `wsRetryInterval` and moves back when it works.

/** The subprotocol of the v1 dialect. */
export const SUBPROTOCOL = 'wsmq.v1';

/** Close codes of the gateway (docs/protocol.md). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  POLICY: 1008,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  RESTARTING: 1012,
  TOKEN_EXPIRED: 4001,
  REVOKED: 4003,
  SLOW_CLIENT: 4008,
  RATE_LIMITED: 4029,
});

/** A refused request: `code` is the wire code (`forbidden`, `invalid`, …) or one of the
 * client's own: `disconnected` (the socket closed before the reply), `timeout`, `closed`,
 * `unsupported` (the request needs the WebSocket and the client is on SSE). */
export class WsmqError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'WsmqError';
    this.code = code;
  }
}

/** The `exp` claim of a JWT in ms, or null when it cannot be read. */
export function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * A v1 connection that survives node restarts and network drops.
 *
 * Events (an EventTarget; `event.detail` holds the data):
 * - `state`: `{state, transport, code?, reason?}`; state is `connecting`, `open`,
 *   `reconnecting`, `stopped` (4001/4003 and no new token yet) or `closed` (by `close()`).
 * - `transport`: `{transport}` when the client moves between `websocket` and `sse` (see
 *   `client.transport`).
 * - `welcome`: the welcome frame `{user, node, token}`.
 * - `error`: `{error}` for problems no promise reports (a failed ack, a handler that threw).
 * - `token`: `{token}` whenever the client starts using a new token.
 * - `reset`: `{channel, offset, epoch}` when publications of a channel with history were lost
 *   to this client (its resubscribe could not recover them, or the server sent `reset`):
 *   reload what you show of the channel (for example with `history()`).
 * - `presence`: `{channel, joined, left}` for channels subscribed with `onPresence` (also
 *   handed to that callback): who joined and who left since the last such frame, at most one
 *   per channel per second. After a reconnect, read the list again with `presence()`.
 */
export class WsmqClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string|string[]} options.url WebSocket URL(s) of the gateway, e.g. `ws://host:3000/ws`;
   *   with several, each reconnect moves on to the next (a page can fail over between nodes).
   * @param {string} options.token a JWT.
   * @param {() => Promise<string>} [options.refreshToken] gives a fresh JWT; called before the
   *   token expires (then sent with the `auth` op) and after a 4001 close.
   * @param {number} [options.minDelay=250] first reconnect delay, ms.
   * @param {number} [options.maxDelay=15000] longest reconnect delay, ms.
   * @param {number} [options.requestTimeout=10000] how long a request waits for its reply
   *   (including time spent waiting for a connection), ms.
   * @param {boolean} [options.connect=true] connect at once.
   * @param {boolean} [options.sse=true] fall back to Server-Sent Events when the WebSocket
   *   upgrade fails.
   * @param {number} [options.fallbackTimeout=3000] how long the upgrade may take before the
   *   client falls back, ms.
   * @param {number} [options.wsRetryInterval=60000] while on SSE, how often to try the
   *   WebSocket again, ms.
   */
  constructor(options) {
    super();
    this.urls = Array.isArray(options.url) ? options.url.slice() : [options.url];
    if (this.urls.length === 0) throw new TypeError('wsmq: give at least one url');
    this.token = options.token;
    this.refreshToken = options.refreshToken || null;
    this.minDelay = options.minDelay ?? 250;
    this.maxDelay = options.maxDelay ?? 15000;
    this.requestTimeout = options.requestTimeout ?? 10000;
    this.sse = options.sse !== false;
    this.fallbackTimeout = options.fallbackTimeout ?? 3000;
    this.wsRetryInterval = options.wsRetryInterval ?? 60000;
    /** `websocket`, or `sse` after a fallback. */
    this.transport = 'websocket';
    this.state = 'idle';
    this.user = null;
    this.node = null;
    this.url = null;
    this._urlIndex = -1;
    this._ws = null;
    this._attempt = 0;
    this._nextRef = 1;
    this._pending = new Map(); // ref → {resolve, reject, timer}
    this._outbox = []; // frames waiting for a connection: {frame, entry}
    this._subs = new Map(); // "queue:q" / "channel:c" → Subscription
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._welcomed = false; // whether this._ws got its welcome (else a close means fallback)
    this._fallbackTimer = null;
    this._stream = null; // the SSE stream: {abort, channels, resuming}
    this._sseUntil = 0; // until then, reconnects go straight to SSE
    this._probe = null; // a WebSocket tried while on SSE
    this._probeTimer = null;
    this._restreamTimer = null;
    if (options.connect !== false) this.connect();
  }

  /** Opens the connection (again after `close()` or a stop). */
  connect() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._ws || this._stream) return;
    this._open();
  }

  /** Closes for good: pending requests are rejected with `closed`; no reconnect. */
  close() {
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._refreshTimer);
    this._reconnectTimer = null;
    this._setState('closed');
    this._failAll('closed', 'the client was closed');
    this._endStream();
    this._endProbe();
    clearTimeout(this._fallbackTimer);
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      ws.close(CloseCode.NORMAL);
    }
  }

  /**
   * Consumes a queue. The handler gets `{queue, id, message, rc, sent, ack(), nack(delay)}`.
   * With `ack: 'auto'` (the default) the message is acked once the handler returns (or its
   * promise resolves) and nacked if it throws; with `ack: 'manual'` call `message.ack()`.
   * Returns a Subscription whose `ready` promise settles with the server's reply and which
   * is renewed after every reconnect.
   */
  subscribeQueue(queue, handler, { ack = 'auto' } = {}) {
    return this._subscribe('queue', queue, handler, ack);
  }

  /**
   * Receives a broadcast channel: the handler gets `{channel, message}`, plus `offset` and
   * `epoch` when the channel keeps history. Then the client remembers the last offset and,
   * after every reconnect (to the same node or another), resubscribes with `since` so that
   * nothing published meanwhile is missed; when that cannot be done it emits `reset`.
   * `since: {offset, epoch}` starts from a position kept elsewhere (say, across a reload).
   * `onPresence({channel, joined, left})` subscribes with `presence: true`: it is called with
   * who joined and who left the channel (at most once a second); start from `presence()`.
   */
  subscribeChannel(channel, handler, { since, onPresence } = {}) {
    const sub = this._subscribe('channel', channel, handler, 'none', since, onPresence);
    return sub;
  }

  /**
   * Who is subscribed to a channel, on all nodes: resolves with `{users: [{user, sessions}],
   * total}` (users sorted by id, at most 10,000 listed; `total` counts them all). Needs the
   * right to subscribe to the channel.
   */
  presence(channel) {
    return this._request({ op: 'presence', channel }).then((ok) => ({
      users: ok.users || [],
      total: ok.total ?? (ok.users || []).length,
    }));
  }

  /**
   * Reads a channel's history: resolves with `{epoch, offset, messages: [{offset, message,
   * sent}]}`, the latest `limit` (1 to 1000) before offset `before`, oldest first.
   */
  history(channel, { limit = 50, before } = {}) {
    const frame = { op: 'history', channel, limit };
    if (before !== undefined) frame.before = before;
    return this._request(frame).then((ok) => ({
      epoch: ok.epoch,
      offset: ok.offset,
      messages: ok.messages || [],
    }));
  }

  /**
   * Publishes to `{queue}` (optionally with `delay` s) or `{channel}`; resolves with the
   * `ok` frame (`id` is the message id for queues) or rejects with a WsmqError.
   */
  publish({ queue, channel, message, delay }) {
    const frame = { op: 'publish', message: String(message) };
    if (queue !== undefined) frame.queue = queue;
    else if (channel !== undefined) frame.channel = channel;
    else return Promise.reject(new WsmqError('invalid', 'publish needs a queue or a channel'));
    if (delay !== undefined) frame.delay = delay;
    return this._request(frame);
  }

  /** Switches to a new token: when connected it is sent with `auth` and taken once the
   * server accepts it (the promise rejects with the server's code otherwise); when not, it
   * is used for the next connection (a client stopped by 4001 or 4003 reconnects with it).
   * On SSE the stream is reopened with it (a stream cannot change its token). */
  setToken(token) {
    if (this.state === 'open' && this.transport === 'sse') {
      this._adoptToken(token);
      this._restream();
      return Promise.resolve();
    }
    if (this.state === 'open') {
      return this._request({ op: 'auth', token }).then((ok) => {
        this._adoptToken(token);
        return ok;
      });
    }
    this._adoptToken(token);
    if (this.state === 'stopped') {
      this._attempt = 0;
      this.connect();
    }
    return Promise.resolve();
  }

  /** An application-level ping; resolves with the pong. */
  ping() {
    return this._request({ op: 'ping' });
  }

  _adoptToken(token) {
    this.token = token;
    this._emit('token', { token });
    this._scheduleRefresh();
  }

  // ---- connection -------------------------------------------------------------------

  _open() {
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    const base = this.urls[this._urlIndex];
    this.url = base;
    this._setState(this._attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    // Fallen back a short while ago: the upgrade would most likely fail again.
    if (this.sse && Date.now() < this._sseUntil) {
      this._openStream();
      return;
    }
    let ws;
    try {
      ws = this._newWebSocket(base);
    } catch (err) {
      this._emit('error', { error: err });
      if (this.sse) this._fallBack();
      else this._scheduleReconnect(null);
      return;
    }
    this._ws = ws;
    this._welcomed = false;
    ws.onmessage = (event) => this._onFrame(ws, event.data);
    ws.onclose = (event) => {
      // Closed before its welcome: the upgrade (or the session's start) failed.
      if (this.sse && ws === this._ws && !this._welcomed) this._fallBack();
      else this._onClose(ws, event.code, event.reason);
    };
    // An `error` event is always followed by `close`, which decides what happens next.
    ws.onerror = () => {};
    if (this.sse) {
      clearTimeout(this._fallbackTimer);
      this._fallbackTimer = setTimeout(() => {
        if (ws === this._ws && !this._welcomed) this._fallBack();
      }, this.fallbackTimeout);
    }
  }

  _newWebSocket(base) {
    const sep = base.includes('?') ? '&' : '?';
    return new WebSocket(`${base}${sep}token=${encodeURIComponent(this.token)}`, SUBPROTOCOL);
  }

  /** The upgrade failed: drop the socket and stream over SSE from the same node. */
  _fallBack() {
    clearTimeout(this._fallbackTimer);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onclose = null;
      ws.onmessage = null;
      try {
        ws.close();
      } catch {
        // Closing a socket that never opened may throw in some browsers; it is gone anyway.
      }
    }
    this._sseUntil = Date.now() + this.wsRetryInterval;
    this._openStream();
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._closed(code, reason);
  }

  /** The connection (socket or stream) is gone: reconnect, refresh, or stop, by its code. */
  _closed(code, reason) {
    this.node = null;
    this._failAll('disconnected', `the connection closed (${code})`);
    if (this.state === 'closed') return;
    if (code === CloseCode.TOKEN_EXPIRED && this.refreshToken) {
      this._setState('reconnecting', code, reason);
      this.refreshToken().then(
        (token) => {
          this.token = token;
          this._emit('token', { token });
          this._scheduleReconnect(code);
        },
        (error) => {
          this._emit('error', { error });
          this._setState('stopped', code, 'could not refresh the token');
        },
      );
      return;
    }
    if (code === CloseCode.TOKEN_EXPIRED || code === CloseCode.REVOKED) {
      // The same token would be refused again: wait for setToken().
      clearTimeout(this._refreshTimer);
      this._setState('stopped', code, reason);
      return;
    }
    this._setState('reconnecting', code, reason);
    this._scheduleReconnect(code);
  }

  /** Exponential backoff with jitter: a random delay in [d/2, d] for d = min·2^attempt,
   * capped. A 1012 (node draining) reconnects at once, to the next URL. */
  _scheduleReconnect(code) {
    clearTimeout(this._reconnectTimer);
    let delay;
    if (code === CloseCode.RESTARTING && this._attempt === 0) {
      delay = Math.random() * 100;
    } else {
      const floor = code === CloseCode.RATE_LIMITED ? 5000 : 0;
      const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this._attempt);
      delay = Math.max(floor, ceiling / 2 + Math.random() * (ceiling / 2));
    }
    this._attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      const expiry = tokenExpiry(this.token);
      if (expiry !== null && expiry < Date.now() + 5000 && this.refreshToken) {
        // Known to be refused: get a new one first.
        this.refreshToken().then(
          (token) => {
            this.token = token;
            this._emit('token', { token });
            this._open();
          },
          () => this._scheduleReconnect(null),
        );
        return;
      }
      this._open();
    }, delay);
  }

  _onFrame(ws, data) {
    if (ws !== this._ws) return;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._emit('error', { error: new WsmqError('invalid', 'the server sent a frame that is not JSON') });
      return;
    }
    switch (frame.op) {
      case 'welcome':
        this._onWelcome(frame);
        break;
      case 'ok':
      case 'pong':
      case 'error':
        this._settle(frame);
        break;
      case 'message':
        this._deliver(frame);
        break;
      case 'reset': {
        const sub = this._subs.get(`channel:${frame.channel}`);
        if (sub) sub._reset(frame.offset, frame.epoch);
        break;
      }
      case 'presence': {
        const sub = this._subs.get(`channel:${frame.channel}`);
        const change = { channel: frame.channel, joined: frame.joined || [], left: frame.left || [] };
        this._emit('presence', change);
        if (sub && sub.onPresence) {
          try {
            sub.onPresence(change);
          } catch (error) {
            this._emit('error', { error });
          }
        }
        break;
      }
      default:
        break;
    }
  }

  _onWelcome(frame) {
    this._welcomed = true;
    clearTimeout(this._fallbackTimer);
    this._setTransport('websocket');
    this.user = frame.user;
    this.node = frame.node;
    this._attempt = 0;
    if (frame.token) {
      // Admitted by access token: the server handed us a JWT for later reconnects.
      this.token = frame.token;
      this._emit('token', { token: frame.token });
    }
    this._setState('open');
    this._emit('welcome', frame);
    for (const sub of this._subs.values()) sub._renew();
    const waiting = this._outbox.splice(0);
    for (const { frame: f } of waiting) this._send(f);
    this._scheduleRefresh();
  }

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    const expiry = tokenExpiry(this.token);
    if (!this.refreshToken || expiry === null) return;
    // Refresh at 80% of the remaining lifetime, at least 5 s before it runs out.
    const left = expiry - Date.now();
    const delay = Math.max(0, Math.min(left * 0.8, left - 5000));
    this._refreshTimer = setTimeout(() => {
      this.refreshToken().then(
        (token) => this.setToken(token).catch((error) => this._emit('error', { error })),
        (error) => {
          this._emit('error', { error });
          // Try again shortly; the server closes with 4001 if the token does run out.
          this._refreshTimer = setTimeout(() => this._scheduleRefresh(), 10000);
        },
      );
    }, Math.min(delay, 2 ** 31 - 1));
  }

  // ---- requests ---------------------------------------------------------------------

  _request(frame) {
    const ref = this._nextRef++;
    frame.ref = ref;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this._pending.delete(ref);
        const i = this._outbox.findIndex((o) => o.entry === entry);
        if (i >= 0) this._outbox.splice(i, 1);
        reject(new WsmqError('timeout', `no reply to ${frame.op} within ${this.requestTimeout} ms`));
      }, this.requestTimeout);
      this._pending.set(ref, entry);
      if (this.state === 'open' && this.transport === 'sse') {
        this._pending.delete(ref);
        clearTimeout(entry.timer);
        reject(unsupported(frame.op));
      } else if (this.state === 'open') this._send(frame);
      else if (this.state === 'closed') {
        this._pending.delete(ref);
        clearTimeout(entry.timer);
        reject(new WsmqError('closed', 'the client was closed'));
      } else this._outbox.push({ frame, entry });
    });
  }

  _send(frame) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(frame));
  }

  _settle(frame) {
    const entry = this._pending.get(frame.ref);
    if (!entry) {
      if (frame.op === 'error') {
        this._emit('error', { error: new WsmqError(frame.code, frame.message) });
      }
      return;
    }
    this._pending.delete(frame.ref);
    clearTimeout(entry.timer);
    if (frame.op === 'error') entry.reject(new WsmqError(frame.code, frame.message));
    else entry.resolve(frame);
  }

  _failAll(code, message) {
    const sent = [...this._pending.entries()];
    // Requests still waiting for a connection survive a reconnect; sent ones may or may not
    // have been applied, so their promises reject and the caller decides.
    const waiting = new Set(this._outbox.map((o) => o.entry));
    for (const [ref, entry] of sent) {
      if (code !== 'closed' && waiting.has(entry)) continue;
      this._pending.delete(ref);
      clearTimeout(entry.timer);
      entry.reject(new WsmqError(code, message));
    }
    if (code === 'closed') this._outbox.length = 0;
  }

  // ---- subscriptions ----------------------------------------------------------------

  _subscribe(kind, name, handler, ack, since, onPresence) {
    const key = `${kind}:${name}`;
    if (this._subs.has(key)) throw new WsmqError('invalid', `already subscribed to ${key}`);
    const sub = new Subscription(this, kind, name, handler, ack);
    sub.onPresence = onPresence || null;
    if (since) sub.position = { offset: since.offset, epoch: since.epoch };
    this._subs.set(key, sub);
    if (this.state === 'open' && this.transport === 'sse') this._restream();
    else if (this.state === 'open') sub._renew();
    return sub;
  }

  /** `stream` is the SSE stream that delivered it (acks then go over HTTP), or null. */
  _deliver(frame, stream = null) {
    const key = frame.queue !== undefined ? `queue:${frame.queue}` : `channel:${frame.channel}`;
    const sub = this._subs.get(key);
    if (!sub) return;
    sub._handle(frame, stream);
  }

  _ackFrame(frame, stream) {
    // A message from a stream is acked over HTTP, through any node, even after the client
    // moved on: the server answers not_found if that stream is gone.
    if (stream) return this._postAck(frame);
    // Acks are only meaningful on the connection that delivered the message: after a
    // reconnect the message is redelivered anyway.
    if (this.state !== 'open' || this.transport !== 'websocket') {
      return Promise.reject(new WsmqError('disconnected', 'not connected'));
    }
    return this._request(frame);
  }

  // ---- Server-Sent Events -----------------------------------------------------------

  /** The HTTP URL of `path` on the node of `this.url` (ws: → http:, `/ws` dropped). */
  _httpUrl(path) {
    const u = new URL(this.url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    u.pathname = u.pathname.replace(/\/(ws)?$/, '') + path;
    u.search = '';
    u.hash = '';
    return u;
  }

  /** Opens the SSE stream for every subscription (none: open, with nothing to stream). */
  _openStream() {
    this._setTransport('sse');
    const subs = [...this._subs.values()].filter((s) => s.active);
    if (subs.length === 0) {
      this._streamOpened(null);
      return;
    }
    const url = this._httpUrl('/sse');
    const stream = { abort: new AbortController(), channels: [], resuming: null, replies: 0 };
    const headers = { accept: 'text/event-stream', authorization: `Bearer ${this.token}` };
    for (const sub of subs) {
      url.searchParams.append(sub.kind, sub.name);
      if (sub.kind !== 'channel') continue;
      stream.channels.push(sub);
      // One position per stream (Last-Event-ID): the first channel with history resumes;
      // the others start live and emit `reset`.
      if (sub.position && !stream.resuming) {
        stream.resuming = sub;
        headers['last-event-id'] = `${sub.position.epoch}:${sub.position.offset}`;
      }
    }
    this._stream = stream;
    fetch(url, { headers, signal: stream.abort.signal, cache: 'no-store' })
      .then(async (response) => {
        if (stream !== this._stream) return;
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          if (stream === this._stream) this._streamRefused(stream, response.status, body);
          return;
        }
        this._streamOpened(stream);
        await this._readEvents(stream, response.body);
        this._streamEnded(stream, stream.closeCode ?? 1006, stream.closeReason ?? 'the stream ended');
      })
      .catch(() => this._streamEnded(stream, 1006, 'the stream failed'));
  }

  _streamOpened(stream) {
    if (stream) stream.opened = true;
    this._attempt = 0;
    this.node = null;
    this._setState('open');
    if (stream) for (const sub of this._subs.values()) if (sub.kind === 'queue') sub._settleReady({ op: 'ok' });
    // Waiting requests need the WebSocket.
    for (const { frame, entry } of this._outbox.splice(0)) {
      for (const [ref, e] of this._pending) if (e === entry) this._pending.delete(ref);
      clearTimeout(entry.timer);
      entry.reject(unsupported(frame.op));
    }
    this._scheduleRefresh();
    this._scheduleProbe();
  }

  /** Reads events until the body ends; bounded, so a stream without newlines cannot grow. */
  async _readEvents(stream, body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let type = '';
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done || stream !== this._stream) return;
      buffer += decoder.decode(value, { stream: true });
      if (buffer.length > MAX_EVENT) throw new Error('an event line over the limit');
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        if (line === '') {
          if (data.length) this._onEvent(stream, type || 'message', data.join('\n'));
          if (stream !== this._stream) return;
          type = '';
          data = [];
        } else if (line.startsWith(':')) {
          // A keep-alive comment.
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') type = value;
          else if (field === 'data') data.push(value);
        }
      }
    }
  }

  _onEvent(stream, type, data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this._emit('error', { error: new WsmqError('invalid', 'the server sent an event that is not JSON') });
      return;
    }
    switch (type) {
      case 'message':
        this._deliver(frame, stream);
        break;
      case 'ok': {
        // Each channel of the stream gets one `ok` or `error` first, in the query's order.
        const sub = stream.channels[stream.replies++];
        if (sub) sub._streamOk(frame, stream.resuming === sub);
        break;
      }
      case 'error': {
        const sub = stream.replies < stream.channels.length ? stream.channels[stream.replies++] : null;
        const error = new WsmqError(frame.code, frame.message);
        if (sub) sub._refused(error);
        else this._emit('error', { error });
        break;
      }
      case 'reset': {
        const sub = this._subs.get(`channel:${frame.channel}`);
        if (sub) sub._reset(frame.offset, frame.epoch);
        break;
      }
      case 'close':
        stream.closeCode = frame.code;
        stream.closeReason = frame.reason;
        break;
      default:
        break;
    }
  }

  _streamEnded(stream, code, reason) {
    if (stream !== this._stream || stream === null) return;
    this._stream = null;
    // Neither transport reached the node: it is down, not blocking upgrades, so the next
    // attempt tries the WebSocket first again.
    if (!stream.opened && code === 1006) this._sseUntil = 0;
    this._endProbe();
    this._closed(code, reason);
  }

  /** A refused `GET /sse`: the status and body say why (which EventSource would hide). */
  _streamRefused(stream, status, body) {
    const reason = body.reason || body.message || `HTTP ${status}`;
    if (status === 401) {
      this._streamEnded(stream, reason === 'expired' ? CloseCode.TOKEN_EXPIRED : CloseCode.REVOKED, reason);
      return;
    }
    if (status === 403 || status === 400) {
      // A subscription the stream may not carry: refuse it (as a v1 subscribe would be) and
      // stream the others. The 403 names it; a 400 blames the ones not yet confirmed.
      const named = /(queue|channel) (\S+)$/.exec(body.message || '');
      const culprits = [...this._subs.values()].filter((sub) =>
        named ? sub.kind === named[1] && sub.name === named[2] : status === 400 && sub._resolveReady,
      );
      if (culprits.length) {
        const error = new WsmqError(body.error || 'invalid', body.message || reason);
        for (const sub of culprits) sub._refused(error);
        this._stream = null;
        this._openStream();
        return;
      }
      this._emit('error', { error: new WsmqError(body.error || 'forbidden', reason) });
    }
    this._streamEnded(stream, status === 503 ? CloseCode.RESTARTING : 1006, reason);
  }

  /** Reopens the stream (subscriptions changed, or a new token): soon, once for a batch. */
  _restream() {
    if (this._restreamTimer) return;
    this._restreamTimer = setTimeout(() => {
      this._restreamTimer = null;
      if (this.state !== 'open' || this.transport !== 'sse') return;
      this._endStream();
      this._openStream();
    }, 0);
  }

  _endStream() {
    clearTimeout(this._restreamTimer);
    this._restreamTimer = null;
    if (!this._stream) return;
    const stream = this._stream;
    this._stream = null;
    stream.abort.abort();
  }

  _postAck(frame) {
    const body = { queue: frame.queue, id: frame.id };
    if (frame.op === 'nack' && frame.delay) body.delay = frame.delay;
    const init = {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}` },
      body: JSON.stringify(body),
    };
    if (typeof AbortSignal.timeout === 'function') init.signal = AbortSignal.timeout(this.requestTimeout);
    return fetch(this._httpUrl(`/api/${frame.op}`), init).then(
      async (response) => {
        const reply = await response.json().catch(() => ({}));
        if (response.ok) return { op: 'ok' };
        throw new WsmqError(reply.error || `http_${response.status}`, reply.message || reply.reason);
      },
      (err) => {
        throw new WsmqError(err && err.name === 'TimeoutError' ? 'timeout' : 'disconnected', String(err));
      },
    );
  }

  /** While on SSE: every wsRetryInterval, try a WebSocket; once welcomed, move to it. */
  _scheduleProbe() {
    clearTimeout(this._probeTimer);
    this._probeTimer = setTimeout(() => this._tryWebSocket(), this.wsRetryInterval);
  }

  _tryWebSocket() {
    if (this.state !== 'open' || this.transport !== 'sse' || this._probe) return;
    let ws;
    try {
      ws = this._newWebSocket(this.url);
    } catch {
      this._scheduleProbe();
      return;
    }
    this._probe = ws;
    const failed = () => {
      if (this._probe !== ws) return;
      this._endProbe();
      this._scheduleProbe();
    };
    const timer = setTimeout(failed, this.fallbackTimeout);
    ws.onerror = () => {};
    ws.onclose = () => {
      clearTimeout(timer);
      failed();
    };
    ws.onmessage = (event) => {
      clearTimeout(timer);
      let frame = null;
      try {
        frame = JSON.parse(event.data);
      } catch {
        // Not a welcome.
      }
      if (this._probe !== ws || !frame || frame.op !== 'welcome') return failed();
      // The WebSocket works again: the stream's unacked messages come back on it.
      this._probe = null;
      this._endStream();
      this._sseUntil = 0;
      this._ws = ws;
      ws.onmessage = (e) => this._onFrame(ws, e.data);
      ws.onclose = (e) => this._onClose(ws, e.code, e.reason);
      this._onWelcome(frame);
    };
  }

  _endProbe() {
    clearTimeout(this._probeTimer);
    this._probeTimer = null;
    if (!this._probe) return;
    const ws = this._probe;
    this._probe = null;
    ws.onclose = null;
    ws.onmessage = null;
    try {
      ws.close();
    } catch {
      // Never opened: nothing to close.
    }
  }

  // ---- events -----------------------------------------------------------------------

  _setState(state, code, reason) {
    if (this.state === state && code === undefined) return;
    this.state = state;
    this._emit('state', { state, transport: this.transport, code, reason });
  }

  _setTransport(transport) {
    if (this.transport === transport) return;
    this.transport = transport;
    this._emit('transport', { transport });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** One queue or channel subscription; renewed after each reconnect until `unsubscribe()`. */
export class Subscription {
  constructor(client, kind, name, handler, ack) {
    this.client = client;
    this.kind = kind;
    this.name = name;
    this.handler = handler;
    this.ackMode = ack;
    this.active = true;
    /** Channels with history: `{offset, epoch}` of the last publication handled. */
    this.position = null;
    this._setReady();
  }

  /** Stops it: the server hands unacked queue messages back at once. */
  unsubscribe() {
    if (!this.active) return Promise.resolve();
    this.active = false;
    this.client._subs.delete(`${this.kind}:${this.name}`);
    if (this.client.state !== 'open') return Promise.resolve();
    if (this.client.transport === 'sse') {
      this.client._restream();
      return Promise.resolve();
    }
    return this.client._request({ op: 'unsubscribe', [this.kind]: this.name }).then(() => undefined);
  }

  _setReady() {
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    // Nobody has to look at `ready`: an unobserved refusal is reported as an `error` event.
    this.ready.catch(() => {});
  }

  _renew() {
    const first = this._resolveReady !== null;
    const resolve = this._resolveReady;
    const reject = this._rejectReady;
    this._resolveReady = null;
    this._rejectReady = null;
    const frame = { op: 'subscribe', [this.kind]: this.name };
    const since = this.position;
    if (since) frame.since = since;
    if (this.onPresence) frame.presence = true;
    this.client._request(frame).then(
      (ok) => {
        if (ok.epoch !== undefined && (!since || ok.recovered !== true)) {
          // Live from the channel's current position; with `since` not recovered, what was
          // published meanwhile is lost to us: say so.
          this.position = { offset: ok.offset, epoch: ok.epoch };
          if (since) this._reset(ok.offset, ok.epoch);
        }
        if (first) resolve(ok);
      },
      (error) => {
        if (error.code === 'disconnected' || error.code === 'closed') {
          // The next welcome renews it.
          if (first) {
            this._resolveReady = resolve;
            this._rejectReady = reject;
          }
          return;
        }
        this.active = false;
        this.client._subs.delete(`${this.kind}:${this.name}`);
        if (first) reject(error);
        this.client._emit('error', { error });
      },
    );
  }

  _settleReady(ok) {
    const resolve = this._resolveReady;
    this._resolveReady = null;
    this._rejectReady = null;
    if (resolve) resolve(ok);
  }

  /** Refused by the server: it ends, and says so. */
  _refused(error) {
    this.active = false;
    this.client._subs.delete(`${this.kind}:${this.name}`);
    const reject = this._rejectReady;
    this._resolveReady = null;
    this._rejectReady = null;
    if (reject) reject(error);
    this.client._emit('error', { error });
  }

  /** A channel's `ok` on an SSE stream; `resumed`: the stream was given its position. */
  _streamOk(ok, resumed) {
    const since = this.position;
    if (ok.epoch !== undefined && !(resumed && ok.recovered === true)) {
      this.position = { offset: ok.offset, epoch: ok.epoch };
      if (since) this._reset(ok.offset, ok.epoch);
    }
    this._settleReady(ok);
  }

  _reset(offset, epoch) {
    this.position = { offset, epoch };
    this.client._emit('reset', { channel: this.name, offset, epoch });
  }

  async _handle(frame, stream) {
    if (this.kind === 'channel') {
      const message = { channel: frame.channel, message: frame.message };
      if (frame.offset !== undefined) {
        // Noted before the handler runs: a reconnect during it recovers from the next one.
        this.position = { offset: frame.offset, epoch: frame.epoch };
        message.offset = frame.offset;
        message.epoch = frame.epoch;
      }
      try {
        await this.handler(message);
      } catch (error) {
        this.client._emit('error', { error });
      }
      return;
    }
    const client = this.client;
    let settled = false;
    const settle = (f) => {
      if (settled) return Promise.resolve();
      settled = true;
      return client._ackFrame(f, stream);
    };
    const message = {
      queue: frame.queue,
      id: frame.id,
      message: frame.message,
      rc: frame.rc,
      sent: frame.sent,
      ack: () => settle({ op: 'ack', queue: frame.queue, id: frame.id }),
      nack: (delay = 0) => settle({ op: 'nack', queue: frame.queue, id: frame.id, delay }),
    };
    if (this.ackMode === 'manual') {
      try {
        await this.handler(message);
      } catch (error) {
        client._emit('error', { error });
      }
      return;
    }
    try {
      await this.handler(message);
    } catch (error) {
      client._emit('error', { error });
      message.nack().catch(() => {});
      return;
    }
    message.ack().catch((error) => client._emit('error', { error }));
  }
}

/** The longest SSE event line the client buffers (the server's frames are far smaller). */
const MAX_EVENT = 16 * 1024 * 1024;

const unsupported = (op) =>
  new WsmqError(
    'unsupported',
    `${op} needs the WebSocket; on SSE (the upgrade failed) only receiving and acking work`,
  );

/** `new WsmqClient(options)`. */
export function connect(options) {
  return new WsmqClient(options);
}
