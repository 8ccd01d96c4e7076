import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, test } from "node:test";

import { ApiError, Client, FetchEventSource, followJob } from "../dist/index.js";
import { client, eventually, followed, skip, URL_ } from "./helpers.mjs";

describe("the REST client against a real jobwire", { skip }, () => {
  test("submit, get and wait: the job runs to its result", async () => {
    const jobwire = client();
    const job = await jobwire.submit("demo.sleep", { seconds: 0.2, steps: 2 }, { priority: "high" });
    assert.equal(job.type, "demo.sleep");
    assert.equal(job.priority, "high");
    assert.ok(["pending", "running"].includes(job.status));
    assert.equal((await jobwire.get(job.id)).id, job.id);
    const done = await jobwire.wait(job.id, { timeoutS: 20 });
    assert.equal(done.status, "completed");
    assert.equal(done.progress, 100);
    assert.notEqual(done.result, null);
  });

  test("wait gives up at its deadline with a TimeoutError", async () => {
    const jobwire = client();
    const job = await jobwire.submit("demo.sleep", { seconds: 30 });
    try {
      await assert.rejects(jobwire.wait(job.id, { timeoutS: 1 }), { name: "TimeoutError" });
    } finally {
      await jobwire.cancel(job.id);
    }
  });

  test("an idempotency key returns the same job", async () => {
    const jobwire = client();
    const key = `js-${Date.now()}-${Math.random()}`;
    const first = await jobwire.submit("demo.sleep", { seconds: 0 }, { idempotencyKey: key });
    const again = await jobwire.submit("demo.sleep", { seconds: 0 }, { idempotencyKey: key });
    assert.equal(again.id, first.id);
  });

  test("a delayed job is scheduled", async () => {
    const jobwire = client();
    const job = await jobwire.submit("demo.sleep", {}, { delayS: 3600 });
    assert.equal(job.status, "scheduled");
    assert.ok(job.run_at);
    assert.equal((await jobwire.cancel(job.id)).status, "cancelled");
  });

  test("a job depending on an unfinished job is waiting", async () => {
    const jobwire = client();
    const parent = await jobwire.submit("demo.sleep", {}, { delayS: 3600 });
    const child = await jobwire.submit("demo.sum", { add: 1 }, { dependsOn: [parent.id] });
    assert.equal(child.status, "waiting");
    assert.deepEqual(child.depends_on, [parent.id]);
    await jobwire.cancel(parent.id);
    const after = await jobwire.get(child.id);
    assert.equal(after.status, "cancelled");
    assert.equal(after.error?.type, "DependencyFailed");
  });

  test("list filters by type and pages with the cursor", async () => {
    const jobwire = client();
    const submitted = [];
    for (let i = 0; i < 3; i++) submitted.push((await jobwire.submit("test.say", { text: `page ${i}` })).id);
    const first = await jobwire.list({ type: "test.say", limit: 2 });
    assert.equal(first.items.length, 2);
    assert.ok(first.next_cursor);
    const second = await jobwire.list({ type: "test.say", limit: 2, cursor: first.next_cursor });
    const ids = [...first.items, ...second.items].map((job) => job.id);
    for (const id of submitted) assert.ok(ids.includes(id), id);
    assert.ok([...first.items, ...second.items].every((job) => job.type === "test.say"));
  });

  test("cancel a running job, then retry it", async () => {
    const jobwire = client();
    const job = await jobwire.submit("test.block", { seconds: 30 });
    await eventually(async () => (await jobwire.get(job.id)).status === "running", "the job to run");
    const cancelling = await jobwire.cancel(job.id);
    assert.ok(["running", "cancelled"].includes(cancelling.status));
    assert.equal((await jobwire.wait(job.id, { timeoutS: 10 })).status, "cancelled");
    const again = await jobwire.retry(job.id);
    assert.equal(again.status, "pending");
    await jobwire.cancel(job.id);
  });

  test("problems are ApiErrors carrying the problem document", async () => {
    const jobwire = client();
    const invalid = await jobwire.submit("demo.sleep", { seconds: "soon" }).catch((error) => error);
    assert.ok(invalid instanceof ApiError);
    assert.equal(invalid.status, 422);
    assert.deepEqual(invalid.errors[0].loc, ["body", "params", "seconds"]);
    const missing = await jobwire.get("0193a1f4-0000-7000-8000-000000000000").catch((error) => error);
    assert.equal(missing.status, 404);
    assert.match(missing.problem.type, /not-found/);
    const finished = await jobwire.submit("demo.sleep", { seconds: 0 });
    await jobwire.wait(finished.id, { timeoutS: 10 });
    await assert.rejects(jobwire.retry(finished.id), { name: "ApiError", status: 409 });
    const stranger = new Client({ baseUrl: URL_, apiKey: "jw_not_a_key" });
    await assert.rejects(stranger.list(), { name: "ApiError", status: 401 });
  });
});

describe("followJob against a real jobwire", { skip }, () => {
  test("every event once, in order, then the stream closes by itself with no error", async () => {
    const jobwire = client();
    const job = await jobwire.submit("demo.sleep", { seconds: 0.3, steps: 3 });
    const seen = await followed(followJob, jobwire.eventsUrl(job));
    assert.deepEqual(seen.errors, []);
    assert.deepEqual(
      seen.events.map((event) => event.seq),
      seen.events.map((_, i) => i + 1),
    );
    assert.deepEqual(seen.events.map((event) => event.type).slice(0, 2), ["created", "started"]);
    assert.equal(seen.ends.length, 1);
    assert.equal(seen.ends[0].type, "completed");
    assert.ok(seen.events.some((event) => event.type === "progress"));
    assert.ok(seen.following.closed);
    // nothing after the end: no reconnect, no stray error
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(seen.ends.length, 1);
    assert.deepEqual(seen.errors, []);
  });

  test("a finished job's stream replays it and ends", async () => {
    const jobwire = client();
    const job = await jobwire.submit("test.say", { text: "no luck", fail: true });
    await jobwire.wait(job.id, { timeoutS: 10 });
    const seen = await followed(followJob, jobwire.eventsUrl(await jobwire.get(job.id)));
    assert.deepEqual(seen.errors, []);
    assert.equal(seen.ends[0].type, "failed");
    assert.match(seen.ends[0].error.message, /no luck/);
  });

  test("a refused stream is one error and a closed follower", async () => {
    const jobwire = client();
    const job = await jobwire.submit("demo.sleep", { seconds: 0 });
    const forged = jobwire.eventsUrl(job).replace(/token=[^&]+/, "token=forged");
    const seen = await followed(followJob, forged);
    assert.equal(seen.errors.length, 1);
    assert.deepEqual(seen.events, []);
    assert.ok(seen.following.closed);
  });
});

describe("FetchEventSource (Node 20 has no EventSource)", () => {
  test("resumes a dropped stream with Last-Event-ID and the server's retry delay", async () => {
    const asked = [];
    const server = createServer((request, response) => {
      asked.push(request.headers["last-event-id"] ?? null);
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      const frame = (seq, type) =>
        `id: ${seq}\nevent: ${type}\ndata: ${JSON.stringify({ job_id: "j", seq, type, status: "running" })}\n\n`;
      if (asked.length === 1) {
        // two events, a heartbeat comment, then the connection drops
        response.end(`retry: 50\n\n${frame(1, "created")}: keep-alive\n\r\n${frame(2, "started")}`);
      } else {
        response.end(frame(3, "completed"));
      }
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${server.address().port}/events`;
      const seen = await followed(followJob, url, { EventSource: FetchEventSource });
      assert.deepEqual(seen.events.map((event) => event.seq), [1, 2, 3]);
      assert.deepEqual(asked, [null, "2"]);
      assert.deepEqual(seen.errors, []);
    } finally {
      server.close();
    }
  });
});
