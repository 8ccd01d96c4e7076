export { Client, type ClientOptions, type ListOptions, type SubmitOptions, type WaitOptions } from "./client.js";
export { ApiError } from "./errors.js";
export { FetchEventSource } from "./eventsource.js";
export { followJob, type FollowHandlers, type FollowOptions, type Following } from "./follow.js";
export {
  TERMINAL,
  type EventType,
  type Job,
  type JobError,
  type JobEvent,
  type JobList,
  type Priority,
  type Problem,
  type Status,
} from "./types.js";
