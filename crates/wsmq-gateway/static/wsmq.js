// wsmq.js: the dependency-free browser client of the wsmq v1 protocol (an ES module served
// by the gateway at /client/wsmq.js; documented in docs/client.md).
//
// It connects with a JWT (query `token`, subprotocol `wsmq.v1`), subscribes to queues (acked
// for you once the handler returns, or by hand) and channels, publishes with promises settled
// by the `ok` / `error` reply, refreshes the token with the `auth` op, and reconnects with
// exponential backoff and jitter according to the close code, resubscribing afterwards.

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
 * client's own: `disconnected` (the socket closed before the reply), `timeout`, `closed`. */
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
 * - `state`: `{state, code?, reason?}`; state is `connecting`, `open`, `reconnecting`,
 *   `stopped` (4001/4003 and no new token yet) or `closed` (by `close()`).
 * - `welcome`: the welcome frame `{user, node, token}`.
 * - `error`: `{error}` for problems no promise reports (a failed ack, a handler that threw).
 * - `token`: `{token}` whenever the client starts using a new token.
 * - `reset`: `{channel, offset, epoch}` when publications of a channel with history were lost
 *   to this client (its resubscribe could not recover them, or the server sent `reset`):
 *   reload what you show of the channel (for example with `history()`).
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
    if (options.connect !== false) this.connect();
  }

  /** Opens the connection (again after `close()` or a stop). */
  connect() {
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    if (this._ws) return;
    this._open();
  }

  /** Closes for good: pending requests are rejected with `closed`; no reconnect. */
  close() {
    clearTimeout(this._reconnectTimer);
    clearTimeout(this._refreshTimer);
    this._reconnectTimer = null;
    this._setState('closed');
    this._failAll('closed', 'the client was closed');
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
   */
  subscribeChannel(channel, handler, { since } = {}) {
    return this._subscribe('channel', channel, handler, 'none', since);
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
   * is used for the next connection (a client stopped by 4001 or 4003 reconnects with it). */
  setToken(token) {
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
    const sep = base.includes('?') ? '&' : '?';
    let ws;
    try {
      ws = new WebSocket(`${base}${sep}token=${encodeURIComponent(this.token)}`, SUBPROTOCOL);
    } catch (err) {
      this._emit('error', { error: err });
      this._scheduleReconnect(null);
      return;
    }
    this._ws = ws;
    ws.onmessage = (event) => this._onFrame(ws, event.data);
    ws.onclose = (event) => this._onClose(ws, event.code, event.reason);
    // An `error` event is always followed by `close`, which decides what happens next.
    ws.onerror = () => {};
  }

  _onClose(ws, code, reason) {
    if (ws !== this._ws) return;
    this._ws = null;
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
      default:
        break;
    }
  }

  _onWelcome(frame) {
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
      if (this.state === 'open') this._send(frame);
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

  _subscribe(kind, name, handler, ack, since) {
    const key = `${kind}:${name}`;
    if (this._subs.has(key)) throw new WsmqError('invalid', `already subscribed to ${key}`);
    const sub = new Subscription(this, kind, name, handler, ack);
    if (since) sub.position = { offset: since.offset, epoch: since.epoch };
    this._subs.set(key, sub);
    if (this.state === 'open') sub._renew();
    return sub;
  }

  _deliver(frame) {
    const key = frame.queue !== undefined ? `queue:${frame.queue}` : `channel:${frame.channel}`;
    const sub = this._subs.get(key);
    if (!sub) return;
    sub._handle(frame);
  }

  _ackFrame(frame) {
    // Acks are only meaningful on the connection that delivered the message: after a
    // reconnect the message is redelivered anyway.
    if (this.state !== 'open') return Promise.reject(new WsmqError('disconnected', 'not connected'));
    return this._request(frame);
  }

  // ---- events -----------------------------------------------------------------------

  _setState(state, code, reason) {
    if (this.state === state && code === undefined) return;
    this.state = state;
    this._emit('state', { state, code, reason });
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

  _reset(offset, epoch) {
    this.position = { offset, epoch };
    this.client._emit('reset', { channel: this.name, offset, epoch });
  }

  async _handle(frame) {
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
      return client._ackFrame(f);
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

/** `new WsmqClient(options)`. */
export function connect(options) {
  return new WsmqClient(options);
}
