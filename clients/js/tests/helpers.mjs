// The jobwire these tests run against: JOBWIRE_URL and JOBWIRE_API_KEY (tests/integration/
// test_js_client.py starts an api and a worker and runs `npm test` with them).
import { Client } from "../dist/index.js";

export const URL_ = process.env.JOBWIRE_URL;
export const KEY = process.env.JOBWIRE_API_KEY;
export const skip = !URL_ || !KEY ? "JOBWIRE_URL and JOBWIRE_API_KEY are not set" : false;

export function client() {
  return new Client({ baseUrl: URL_, apiKey: KEY });
}

/** Poll until check() returns something truthy, or fail after `ms`. */
export async function eventually(check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Follow a job until its stream ends; resolves with what the handlers saw. */
export function followed(followJob, url, options) {
  return new Promise((resolve) => {
    const seen = { events: [], ends: [], errors: [] };
    const following = followJob(
      url,
      {
        onEvent: (event) => seen.events.push(event),
        onEnd: (event) => {
          seen.ends.push(event);
          resolve({ ...seen, following });
        },
        onError: (error) => {
          seen.errors.push(error);
          resolve({ ...seen, following });
        },
      },
      options,
    );
  });
}
