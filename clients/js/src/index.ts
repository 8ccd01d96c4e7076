export {
  Client,
  type BatchJob,
  type BulkAction,
  type BulkOptions,
  type ClientOptions,
  type JobOptions,
  type ListBatchesOptions,
  type ListOptions,
  type SubmitBatchOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./client.js";
export { ApiError } from "./errors.js";
export { FetchEventSource } from "./eventsource.js";
export {
  followBatch,
  followJob,
  type BatchFollowHandlers,
  type BatchFollowing,
  type FollowHandlers,
  type FollowOptions,
  type Following,
} from "./follow.js";
export {
  BATCH_TERMINAL,
  TERMINAL,
  type Batch,
  type BatchCounts,
  type BatchEvent,
  type BatchEventType,
  type BatchList,
  type BatchStatus,
  type BulkResult,
  type EventType,
  type Job,
  type JobError,
  type JobEvent,
  type JobList,
  type Priority,
  type Problem,
  type Status,
} from "./types.js";
