// jobwire dashboard: Constants every view shares: storage keys, statuses, page sizes, reconnect timing.

export const KEY_STORAGE = "jobwire.dashboard.key";
export const SAMPLES_STORAGE = "jobwire.dashboard.samples";
export const STATUSES = ["scheduled", "waiting", "pending", "running", "completed", "failed", "cancelled"];
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const PAGE_SIZE = 50;
export const RUNNING_SIZE = 8;
export const FAILURES_SIZE = 6;
export const HOUR_MS = 60 * 60 * 1000;
export const REFRESH_MIN_INTERVAL_MS = 500; // at most two list refreshes a second, however busy the feed
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_MAX_MS = 15000;
export const SILENCE_LIMIT_MS = 20000; // stats arrive every 5 s: this long without a frame means a dead socket
export const INBOX_LIMIT = 20000; // queued events while the tab sleeps; past this, drop them and resync
// A tenant name can never contain spaces or parentheses: only an admin key may list "another" tenant.
export const ADMIN_PROBE_TENANT = "(admin check)";
