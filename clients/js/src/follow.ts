import { FetchEventSource } from "./eventsource.js";
import {
  BATCH_TERMINAL,
  TERMINAL,
  type BatchEvent,
  type BatchEventType,
  type EventType,
  type JobEvent,
} from "./types.js";

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

export interface BatchFollowHandlers {
  /** the batch's state as it changes: `progress` events (coalesced: each is the newest state, so
   * one missed loses nothing), then the terminal one */
  onEvent?(event: BatchEvent): void;
  /** the terminal event (completed or cancelled, with the final counts), after its onEvent; the
   * stream is closed */
  onEnd?(event: BatchEvent): void;
  /** the stream ended without a terminal event and will not come back (an unknown batch, a refused
   * token); a dropped connection is not an error: it reconnects and resumes where it was */
  onError?(error: Error): void;
}

export interface BatchFollowing {
  /** stop following (nothing is called after this) */
  close(): void;
  readonly closed: boolean;
  /** the SSE id of the last event handed to onEvent: the batch's version (0: none yet) */
  readonly lastEventId: number;
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
const BATCH_EVENT_TYPES: readonly BatchEventType[] = ["progress", "completed", "cancelled"];
const CLOSED = 2;

/** What differs between following a job and following a batch. */
interface Stream<E> {
  /** "job" or "batch", for the error message */
  what: string;
  types: readonly string[];
  terminal: ReadonlySet<string>;
  /** where the event stands in its stream (it only grows); null: unknown, hand it out */
  position(event: E, frame: MessageEvent): number | null;
}

interface Handlers<E> {
  onEvent?(event: E): void;
  onEnd?(event: E): void;
  onError?(error: Error): void;
}

/** One stream followed to its terminal event: each position handed out once, in order; closed by
 * itself after the end, so the EventSource neither reconnects nor reports an error. */
function follow<E extends { type: string }>(
  eventsUrl: string,
  stream: Stream<E>,
  handlers: Handlers<E>,
  options: FollowOptions,
): { close(): void; readonly closed: boolean; readonly last: number } {
  const Source: new (url: string) => EventSourceLike =
    options.EventSource ??
    (globalThis as { EventSource?: new (url: string) => EventSourceLike }).EventSource ??
    (FetchEventSource as new (url: string) => EventSourceLike);
  let closed = false;
  let last = 0;
  const source = new Source(eventsUrl);

  const close = (): void => {
    closed = true;
    source.close();
  };

  const onFrame = (frame: Event): void => {
    if (closed) return;
    let event: E;
    try {
      event = JSON.parse(String((frame as MessageEvent).data)) as E;
    } catch {
      return; // not an event of ours
    }
    const position = stream.position(event, frame as MessageEvent);
    if (position !== null) {
      if (position <= last) return; // already handed out (a replay overlapping what we saw)
      last = position;
    }
    handlers.onEvent?.(event);
    if (stream.terminal.has(event.type)) {
      close();
      handlers.onEnd?.(event);
    }
  };
  for (const type of stream.types) source.addEventListener(type, onFrame);

  source.onerror = () => {
    // CONNECTING: the connection dropped and the source is reconnecting by itself; CLOSED: the
    // server refused the stream (401, 404) or had nothing more to send (204)
    if (closed || source.readyState !== CLOSED) return;
    closed = true;
    handlers.onError?.(
      new Error(
        `the event stream of ${eventsUrl.split("?")[0]} ended before the ${stream.what} did ` +
          `(an unknown ${stream.what}, or a token that is invalid or revoked)`,
      ),
    );
  };

  return {
    close,
    get closed() {
      return closed;
    },
    get last() {
      return last;
    },
  };
}

const JOB_STREAM: Stream<JobEvent> = {
  what: "job",
  types: EVENT_TYPES,
  terminal: TERMINAL,
  position: (event) => event.seq,
};

const BATCH_STREAM: Stream<BatchEvent> = {
  what: "batch",
  types: BATCH_EVENT_TYPES,
  terminal: BATCH_TERMINAL,
  // a batch's events carry no seq: the SSE id is its version, which grows with every change
  position: (_event, frame) => (/^\d+$/.test(frame.lastEventId ?? "") ? Number(frame.lastEventId) : null),
};

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
  const following = follow(eventsUrl, JOB_STREAM as Stream<JobEvent<Result>>, handlers, options);
  return {
    close: () => following.close(),
    get closed() {
      return following.closed;
    },
    get lastSeq() {
      return following.last;
    },
  };
}

/**
 * Follow a batch from its `events_url` (absolute, or resolve it with `client.eventsUrl(batch)`; it
 * carries a token for this batch alone): its counts and progress as they change, then its
 * terminal event (completed or cancelled) with the final counts. Reconnects after a dropped
 * connection with Last-Event-ID (it waits for the next change: no repeat of a state already seen),
 * and closes its EventSource by itself after the terminal event.
 */
export function followBatch(
  eventsUrl: string,
  handlers: BatchFollowHandlers,
  options: FollowOptions = {},
): BatchFollowing {
  const following = follow(eventsUrl, BATCH_STREAM, handlers, options);
  return {
    close: () => following.close(),
    get closed() {
      return following.closed;
    },
    get lastEventId() {
      return following.last;
    },
  };
}
