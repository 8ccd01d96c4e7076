// jobwire dashboard: The live connection (one WebSocket, /v1/ws) and its inbox: frames are queued and applied once
// per animation frame, coalesced per job; a reconnect or {"op": "resync"} refetches the view.

import { call } from "./api.js";
import { BACKOFF_BASE_MS, BACKOFF_MAX_MS, INBOX_LIMIT, SILENCE_LIMIT_MS } from "./constants.js";
import { $, h, rememberTenant, setText } from "./format.js";
import { page, session } from "./session.js";
import { onStats } from "./widgets.js";

export const live = {
  ws: null,
  stopped: true,
  attempt: 0,
  timer: 0,
  watchdog: 0,
  lastFrame: 0,
  everSubscribed: false,
  nextAttemptAt: 0,
  followed: new Map(), // job id -> seq of the last event received (resubscribed with `since`)

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.everSubscribed = false;
    this.open();
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.checkSilence(), 5000);
  },

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    this.followed.clear();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000, "signed out");
    }
  },

  open() {
    clearTimeout(this.timer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws?token=${encodeURIComponent(session.key)}`);
    this.ws = ws;
    if (!this.everSubscribed) setConnection("connecting");
    ws.onopen = () => {
      this.lastFrame = Date.now();
      ws.send(JSON.stringify({ op: "subscribe", all: true }));
      for (const [id, seq] of this.followed) {
        ws.send(JSON.stringify({ op: "subscribe", jobs: [id], since: { [id]: seq } }));
      }
    };
    ws.onmessage = (e) => {
      this.lastFrame = Date.now();
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      onLiveMessage(msg);
    };
    ws.onerror = () => {}; // a close event follows
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.stopped) this.reconnectLater(e);
    };
  },

  subscribed() {
    this.attempt = 0;
    this.everSubscribed = true;
    setConnection("live");
  },

  reconnectLater(closeEvent) {
    // exponential backoff with jitter: 0.5-1 × min(max, base × 2^attempt)
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.attempt += 1;
    this.nextAttemptAt = Date.now() + delay;
    setConnection("reconnecting", closeEvent);
    this.timer = setTimeout(() => this.open(), delay);
    if (this.attempt === 3) checkKeyStillValid();
  },

  reconnectNow() {
    if (this.stopped) return;
    if (this.ws) this.drop();
    clearTimeout(this.timer);
    this.open();
  },

  /** Abandon the current socket (dead or silent) and reconnect on the backoff schedule. */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
    try {
      ws.close(4000, "no frames");
    } catch {
      /* already closing */
    }
    if (!this.stopped) this.reconnectLater({ code: 4000, reason: "no frames from the server" });
  },

  checkSilence() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && Date.now() - this.lastFrame > SILENCE_LIMIT_MS) {
      this.drop();
    }
  },

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  },

  follow(id, since = 0) {
    this.followed.set(id, since);
    this.send({ op: "subscribe", jobs: [id], since: { [id]: since } });
  },

  unfollow(id) {
    if (!this.followed.delete(id)) return;
    this.send({ op: "unsubscribe", jobs: [id] });
  },
};

async function checkKeyStillValid() {
  const r = await call("GET", "/v1/jobs?limit=1"); // a 401 signs out (see call)
  return r.status !== 401;
}

function setConnection(state, closeEvent) {
  $("#app").dataset.connection = state;
  const pill = $("#connection");
  pill.dataset.state = state;
  const text = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…" }[state] || state;
  setText($(".conn-text", pill), text);
  pill.title =
    state === "live"
      ? "Receiving live updates over a WebSocket"
      : state === "reconnecting"
        ? "The live connection dropped"
        : "";
  const banner = $("#banner");
  if (state === "reconnecting") {
    const reason = closeEvent && closeEvent.reason ? ` (${closeEvent.reason})` : "";
    banner.hidden = false;
    banner.replaceChildren(
      h("span", { class: "spinner", "aria-hidden": "true" }),
      h("strong", { text: "Connection lost, reconnecting" }),
      h("span", { class: "banner-detail", "data-countdown": "", text: "" }),
      h("span", { class: "muted", text: reason }),
      h("button", {
        type: "button",
        class: "btn btn-small",
        onclick: () => live.reconnectNow(),
        text: "Reconnect now",
      }),
    );
    updateCountdown();
  } else {
    banner.hidden = true;
    banner.replaceChildren();
  }
}

export function updateCountdown() {
  const el = $("#banner [data-countdown]");
  if (!el) return;
  const s = Math.max(0, Math.ceil((live.nextAttemptAt - Date.now()) / 1000));
  setText(
    el,
    live.ws ? "trying now…" : `next attempt ${s > 0 ? `in ${s} s` : "now"} (attempt ${live.attempt})`,
  );
}

// ---- the inbox: frames queued, applied once per animation frame --------------------------------

const inbox = {
  events: new Map(), // job id -> [events], consecutive progress events coalesced
  count: 0,
  stats: null,
  overflow: false,
  frame: 0,
};

function onLiveMessage(msg) {
  switch (msg.op) {
    case "event":
      queueEvent(msg.event, msg.tenant);
      break;
    case "stats":
      // recorded at once (a hidden tab runs no animation frames, and the chart must not have a hole)
      onStats(msg.queues || {});
      inbox.stats = msg.queues || {};
      scheduleFrame();
      break;
    case "subscribed":
      if (msg.all) {
        live.subscribed();
        // the view's first fetch may predate the subscription, and after a reconnect anything could
        // have changed while we were away: fetch again now that the feed covers every change
        resync();
      }
      break;
    case "resync":
      resync();
      break;
    case "error":
      if (!/^no job /.test(msg.detail || "")) console.warn("jobwire websocket:", msg.detail);
      break;
    default:
      break;
  }
}

function queueEvent(event, tenant) {
  if (!event || !event.job_id) return;
  rememberTenant(event.job_id, tenant);
  const id = event.job_id;
  if (live.followed.has(id) && event.seq > live.followed.get(id)) live.followed.set(id, event.seq);
  let list = inbox.events.get(id);
  if (!list) inbox.events.set(id, (list = []));
  const last = list[list.length - 1];
  if (last && last.type === "progress" && event.type === "progress" && !live.followed.has(id)) {
    list[list.length - 1] = event; // only the newest progress matters to a table row
  } else {
    list.push(event);
    inbox.count += 1;
  }
  if (inbox.count > INBOX_LIMIT) {
    // the tab slept through a flood: drop the backlog and fetch the view again instead (but keep the
    // events of followed jobs: their timelines are built from them, and they are few)
    for (const key of [...inbox.events.keys()]) if (!live.followed.has(key)) inbox.events.delete(key);
    inbox.count = [...inbox.events.values()].reduce((n, l) => n + l.length, 0);
    inbox.overflow = true;
  }
  scheduleFrame();
}

function scheduleFrame() {
  if (inbox.frame) return;
  inbox.frame = requestAnimationFrame(flush);
}

function flush() {
  inbox.frame = 0;
  const events = inbox.events;
  const stats = inbox.stats;
  const overflow = inbox.overflow;
  inbox.events = new Map();
  inbox.count = 0;
  inbox.stats = null;
  inbox.overflow = false;
  if (!page.view) return;
  if (events.size) page.view.onEvents(events);
  if (overflow) resync();
  if (stats && page.view.onStats) page.view.onStats(stats);
}

function resync() {
  if (page.view && page.view.resync) page.view.resync();
}
