import { useEffect, useState } from "react";

import { followBatch, followJob, type FollowOptions } from "./follow.js";
import {
  BATCH_TERMINAL,
  TERMINAL,
  type BatchCounts,
  type BatchEvent,
  type BatchStatus,
  type JobError,
  type JobEvent,
  type Status,
} from "./types.js";

export interface JobState<Result = unknown> {
  /** null until the first event arrives */
  status: Status | null;
  progress: number;
  message: string | null;
  /** what the job returned, once completed */
  result: Result | null;
  /** why the last attempt failed (on retrying and failed; cleared when it starts again) */
  error: JobError | null;
  /** the last event, as the stream sent it */
  lastEvent: JobEvent<Result> | null;
  /** the job ended (completed, failed or cancelled) and the stream is closed */
  done: boolean;
  /** the stream was refused for good (an unknown job, a bad token); dropped connections resume */
  streamError: Error | null;
}

const INITIAL: JobState<never> = {
  status: null,
  progress: 0,
  message: null,
  result: null,
  error: null,
  lastEvent: null,
  done: false,
  streamError: null,
};

function next<Result>(state: JobState<Result>, event: JobEvent<Result>): JobState<Result> {
  let error = state.error;
  if (event.type === "retrying" || event.type === "failed" || event.type === "cancelled") {
    error = event.error ?? error;
  } else if (event.type === "started" || event.type === "completed") {
    error = null;
  }
  return {
    ...state,
    status: event.status,
    progress: event.progress,
    message: event.message,
    result: event.type === "completed" ? (event.result ?? null) : state.result,
    error,
    lastEvent: event,
    done: TERMINAL.has(event.type),
  };
}

/**
 * A job's live state in a React component, from its `events_url` (hand it over from your server,
 * which submitted the job with its API key; the URL carries a token for this job alone). Follows the
 * job's events (resuming after dropped connections) until it ends, and stops when the component
 * unmounts or the URL changes. Pass null while there is no job yet.
 */
export function useJob<Result = unknown>(
  eventsUrl: string | null | undefined,
  options: FollowOptions = {},
): JobState<Result> {
  const [state, setState] = useState<JobState<Result>>(INITIAL);
  const { EventSource } = options;
  useEffect(() => {
    setState(INITIAL);
    if (!eventsUrl) return undefined;
    const following = followJob<Result>(
      eventsUrl,
      {
        onEvent: (event) => setState((current) => next(current, event)),
        onError: (error) => setState((current) => ({ ...current, streamError: error })),
      },
      EventSource ? { EventSource } : {},
    );
    return () => following.close();
  }, [eventsUrl, EventSource]);
  return state;
}

export interface BatchState {
  /** null until the first event arrives */
  status: BatchStatus | null;
  /** how many jobs the batch holds (0 until the first event) */
  total: number;
  /** its jobs by status (null until the first event) */
  counts: BatchCounts | null;
  /** 0-100, the mean of its jobs' progress */
  progress: number;
  /** the last event, as the stream sent it */
  lastEvent: BatchEvent | null;
  /** the batch ended (completed or cancelled, the counts final) and the stream is closed */
  done: boolean;
  /** the stream was refused for good (an unknown batch, a bad token); dropped connections resume */
  streamError: Error | null;
}

const BATCH_INITIAL: BatchState = {
  status: null,
  total: 0,
  counts: null,
  progress: 0,
  lastEvent: null,
  done: false,
  streamError: null,
};

/**
 * A batch's live state in a React component, from its `events_url` (its token opens this batch's
 * stream alone): status, counts and progress as they change, until the batch ends; stops when the
 * component unmounts or the URL changes. Pass null while there is no batch yet.
 */
export function useBatch(eventsUrl: string | null | undefined, options: FollowOptions = {}): BatchState {
  const [state, setState] = useState<BatchState>(BATCH_INITIAL);
  const { EventSource } = options;
  useEffect(() => {
    setState(BATCH_INITIAL);
    if (!eventsUrl) return undefined;
    const following = followBatch(
      eventsUrl,
      {
        onEvent: (event) =>
          setState((current) => ({
            ...current,
            status: event.status,
            total: event.total,
            counts: event.counts,
            progress: event.progress,
            lastEvent: event,
            done: BATCH_TERMINAL.has(event.type),
          })),
        onError: (error) => setState((current) => ({ ...current, streamError: error })),
      },
      EventSource ? { EventSource } : {},
    );
    return () => following.close();
  }, [eventsUrl, EventSource]);
  return state;
}
