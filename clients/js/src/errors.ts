import type { Problem } from "./types.js";

/** An answer of the api that is not a success: its problem document, and what the HTTP layer said. */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly title: string;
  readonly detail: string;
  /** for a 422: each field at fault (`loc` names it, e.g. ["body", "params", "seconds"]) */
  readonly errors: NonNullable<Problem["errors"]>;
  readonly problem: Problem;
  /** seconds to wait before trying again (429, 503), from Retry-After */
  readonly retryAfter: number | null;

  constructor(problem: Problem, retryAfter: number | null = null) {
    super(`${problem.status} ${problem.title}: ${problem.detail}`);
    this.name = "ApiError";
    this.problem = problem;
    this.status = problem.status;
    this.type = problem.type;
    this.title = problem.title;
    this.detail = problem.detail;
    this.errors = problem.errors ?? [];
    this.retryAfter = retryAfter;
  }
}

/** The problem document of a failed answer (or one made up from its status, when it has none). */
export async function problemOf(response: Response): Promise<ApiError> {
  const retry = Number(response.headers.get("Retry-After"));
  const retryAfter = Number.isFinite(retry) && response.headers.has("Retry-After") ? retry : null;
  let problem: Problem;
  const text = await response.text();
  try {
    problem = JSON.parse(text) as Problem;
    if (typeof problem !== "object" || problem === null || typeof problem.status !== "number") {
      throw new TypeError("not a problem document");
    }
  } catch {
    problem = {
      type: "about:blank",
      title: response.statusText || `HTTP ${response.status}`,
      status: response.status,
      detail: text.slice(0, 500) || `the api answered ${response.status}`,
    };
  }
  return new ApiError(problem, retryAfter);
}
