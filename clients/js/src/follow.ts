import { FetchEventSource } from "./eventsource.js";
import { TERMINAL, type EventType, type JobEvent } from "./types.js";

export interface FollowHandlers<Result = unknown> {
  /** every event, in order, each once (replayed first, then live) */
  onEvent?(event: JobEvent<Result>): void;
  /** the terminal event (completed, failed or cancelled), after its onEvent; the stream is closed */
  onEnd?(event: JobEvent<Result>): void;
  /** the stream ended without a terminal event and will not come back (an unknown job, a refused
   * token); a dropped connection is not an error: it reconnects and resumes where it was */
  onError?(error: Error): void;
}

export interface Following {
  /** stop following (nothing is called after this) */
  close(): void;
  readonly closed: boolean;
  /** the seq of the last event handed to onEvent (0: none yet) */
  readonly lastSeq: number;
}

type EventSourceLike = {
  readonly readyState: number;
  onerror: ((event: Event) => void) | null;
  addEventListener(type: string, listener: (event: Event) => void): void;
  close(): void;
};

export interface FollowOptions {
  /** an EventSource constructor; default: the runtime's, else one on fetch (Node 20) */
  EventSource?: new (url: string) => EventSourceLike;
}

const EVENT_TYPES: readonly EventType[] = [
  "created",
  "released",
  "started",
  "progress",
  "retrying",
  "completed",
  "failed",
  "cancelled",
];
const CLOSED = 2;

/**
 * Follow a job's events from its `events_url` (absolute, or resolve it with `client.eventsUrl(job)`;
 * it carries a token for this job, so no API key is needed). Reconnects after a dropped connection
 * and resumes with Last-Event-ID (no gap, no duplicate), and closes its EventSource by itself after
 * the terminal event, so the browser neither reconnects nor reports an error.
 */
export function followJob<Result = unknown>(
  eventsUrl: string,
  handlers: FollowHandlers<Result>,
  options: FollowOptions = {},
): Following {
  const Source: new (url: string) => EventSourceLike =
    options.EventSource ??
    (globalThis as { EventSource?: new (url: string) => EventSourceLike }).EventSource ??
    (FetchEventSource as new (url: string) => EventSourceLike);
  let closed = false;
  let lastSeq = 0;
  const source = new Source(eventsUrl);

  const close = (): void => {
    closed = true;
    source.close();
  };

  const onFrame = (frame: Event): void => {
    if (closed) return;
    let event: JobEvent<Result>;
    try {
      event = JSON.parse(String((frame as MessageEvent).data)) as JobEvent<Result>;
    } catch {
      return; // not an event of ours
    }
    if (event.seq <= lastSeq) return; // already handed out (a replay overlapping what we saw)
    lastSeq = event.seq;
    handlers.onEvent?.(event);
    if (TERMINAL.has(event.type)) {
      close();
      handlers.onEnd?.(event);
    }
  };
  for (const type of EVENT_TYPES) source.addEventListener(type, onFrame);

  source.onerror = () => {
    // CONNECTING: the connection dropped and the source is reconnecting by itself; CLOSED: the
    // server refused the stream (401, 404) or had nothing more to send (204)
    if (closed || source.readyState !== CLOSED) return;
    closed = true;
    handlers.onError?.(
      new Error(
        `the event stream of ${eventsUrl.split("?")[0]} ended before the job did ` +
          "(an unknown job, or a token that is invalid or revoked)",
      ),
    );
  };

  return {
    close,
    get closed() {
      return closed;
    },
    get lastSeq() {
      return lastSeq;
    },
  };
}
