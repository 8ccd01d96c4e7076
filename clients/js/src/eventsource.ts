// EventSource for runtimes without one (Node 20): the parts of the WHATWG EventSource that
// followJob uses, on fetch. Reconnects after a dropped connection with Last-Event-ID and the
// server's `retry:` delay; a non-200 answer (401, 404, 204) closes it for good, as in browsers.

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

export class FetchEventSource extends EventTarget {
  static readonly CONNECTING = CONNECTING;
  static readonly OPEN = OPEN;
  static readonly CLOSED = CLOSED;
  readonly CONNECTING = CONNECTING;
  readonly OPEN = OPEN;
  readonly CLOSED = CLOSED;

  readonly url: string;
  readonly withCredentials = false;
  readyState: number = CONNECTING;
  onopen: ((event: Event) => void) | null = null;
  onmessage: ((event: MessageEvent) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;

  private lastEventId = "";
  private retryMs = 3000;
  private readonly abort = new AbortController();

  constructor(url: string | URL) {
    super();
    this.url = String(url);
    void this.run();
  }

  close(): void {
    this.readyState = CLOSED;
    this.abort.abort();
  }

  private emit(event: Event): void {
    if (event.type === "open") this.onopen?.(event);
    else if (event.type === "error") this.onerror?.(event);
    else if (event.type === "message") this.onmessage?.(event as MessageEvent);
    this.dispatchEvent(event);
  }

  private async run(): Promise<void> {
    while (this.readyState !== CLOSED) {
      let response: Response;
      try {
        const headers: Record<string, string> = { Accept: "text/event-stream" };
        if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
        response = await fetch(this.url, { headers, signal: this.abort.signal, cache: "no-store" });
      } catch {
        if (!(await this.lost())) return;
        continue;
      }
      const type = response.headers.get("Content-Type") ?? "";
      if (response.status !== 200 || !type.startsWith("text/event-stream") || !response.body) {
        // as a browser does: an answer that is not a stream ends it for good
        this.readyState = CLOSED;
        await response.body?.cancel().catch(() => undefined);
        this.emit(new Event("error"));
        return;
      }
      this.readyState = OPEN;
      this.emit(new Event("open"));
      try {
        await this.read(response.body);
      } catch {
        // a dropped connection: reconnect below
      }
      if (!(await this.lost())) return;
    }
  }

  /** After a lost connection: announce it, wait the retry delay; false once closed. */
  private async lost(): Promise<boolean> {
    if (this.readyState === CLOSED) return false;
    this.readyState = CONNECTING;
    this.emit(new Event("error"));
    await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    return this.readyState !== CLOSED;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = "";
    let data: string[] = [];
    let eventType = "";
    const reader = body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (data.length && this.readyState !== CLOSED) {
            const event = new MessageEvent(eventType || "message", {
              data: data.join("\n"),
              lastEventId: this.lastEventId,
              origin: new URL(this.url).origin,
            });
            this.emit(event);
          }
          data = [];
          eventType = "";
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: the server's heartbeat
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") eventType = value;
        else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
        else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
      }
    }
  }
}
