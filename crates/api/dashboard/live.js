// The live stream: GET /v1/subscribe read through fetch (EventSource cannot
// send the Authorization header), parsed as Server-Sent Events here. After
// a drop it reconnects with Last-Event-ID, the position of the last event
// seen, so no event is lost or repeated; the wait doubles up to 30 s.

const MAX_BACKOFF_MS = 30_000;
/** The server sends a keep-alive comment every 15 s; silence this long means a dead connection. */
const SILENCE_MS = 45_000;

/** Splits a text stream into SSE events: `{ id, event, data }`. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.id = null;
    this.event = "";
    this.data = [];
  }

  push(chunk) {
    this.buffer += chunk;
    let newline;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer[newline] === "\r" && this.buffer[newline + 1] === "\n" ? 2 : 1;
      // A lone \r at the end may be half of \r\n: wait for more.
      if (this.buffer[newline] === "\r" && newline + 1 === this.buffer.length) break;
      this.buffer = this.buffer.slice(newline + width);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.onEvent({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") this.id = value;
    else if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
  }
}

/**
 * Follows the tenant's events. `onEvent(feedEvent)` gets the parsed JSON
 * of each; `onState("live" | "connecting" | "offline", detail)` reports the
 * connection.
 */
export class LiveStream {
  constructor(api, { onEvent, onState }) {
    this.api = api;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastEventId = null;
    this.stopped = true;
    this.backoff = 500;
    this.controller = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    // The browser knows before the socket does: drop at once when it goes
    // offline, and come back without waiting out the back-off.
    this.onOffline = () => this.controller?.abort();
    this.onOnline = () => {
      this.backoff = 500;
      this.wake?.();
    };
    window.addEventListener("offline", this.onOffline);
    window.addEventListener("online", this.onOnline);
    this.run();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.silenceTimer);
    this.controller?.abort();
    window.removeEventListener("offline", this.onOffline);
    window.removeEventListener("online", this.onOnline);
  }

  /** Drops the connection now and reconnects (for tests of the resume path, too). */
  reconnect() {
    this.controller?.abort();
  }

  async run() {
    while (!this.stopped) {
      this.onState("connecting");
      const outcome = await this.connectOnce();
      if (this.stopped) return;
      if (outcome === "unauthorized") {
        this.onState("offline", "the key was refused");
        this.stopped = true;
        return;
      }
      const wait = Math.min(this.backoff, MAX_BACKOFF_MS) * (0.75 + Math.random() * 0.5);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
      this.onState("offline", `reconnecting in ${Math.round(wait / 1000)} s`);
      await new Promise((resolve) => {
        this.wake = resolve;
        this.retryTimer = setTimeout(resolve, navigator.onLine === false ? MAX_BACKOFF_MS : wait);
      });
      this.wake = null;
      clearTimeout(this.retryTimer);
    }
  }

  armSilenceTimer() {
    clearTimeout(this.silenceTimer);
    this.silenceTimer = setTimeout(() => this.controller?.abort(), SILENCE_MS);
  }

  async connectOnce() {
    this.controller = new AbortController();
    const headers = { Authorization: `Bearer ${this.api.key}`, Accept: "text/event-stream" };
    if (this.lastEventId !== null) headers["Last-Event-ID"] = this.lastEventId;
    try {
      const response = await fetch("/v1/subscribe", { headers, signal: this.controller.signal, cache: "no-store" });
      if (response.status === 401) return "unauthorized";
      if (!response.ok || !response.body) return "error";
      this.backoff = 500;
      this.onState("live");
      this.armSilenceTimer();
      const parser = new SseParser((message) => {
        if (message.id !== null && message.id !== "") this.lastEventId = message.id;
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;
        }
        this.onEvent(event);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.armSilenceTimer();
        parser.push(value);
      }
      return "ended";
    } catch {
      return "error";
    } finally {
      clearTimeout(this.silenceTimer);
    }
  }
}
