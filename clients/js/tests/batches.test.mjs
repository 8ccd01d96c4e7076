import assert from "node:assert/strict";
import { createServer } from "node:http";
import { describe, test } from "node:test";

import { ApiError, FetchEventSource, followBatch } from "../dist/index.js";
import { client, eventually, followed, skip } from "./helpers.mjs";

/** A label value no other test (or earlier run) uses: what a test submits, it alone matches. */
function unique() {
  return `js-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

describe("batches against a real jobwire", { skip }, () => {
  test("submit a batch, follow it to completion with its counts and progress", async () => {
    const jobwire = client();
    const run = unique();
    const jobs = [
      { type: "demo.sleep", params: { seconds: 0.3, steps: 3 }, labels: { run } },
      { type: "demo.sum", params: { add: 1 }, priority: "high", labels: { run } },
      { type: "demo.sum", params: { add: 2 }, dependsOn: [1], labels: { run } },
    ];
    const batch = await jobwire.submitBatch(jobs, { labels: { run }, idempotencyKey: run });
    assert.equal(batch.status, "running");
    assert.equal(batch.total, 3);
    assert.deepEqual(batch.labels, { run });
    assert.equal(Object.values(batch.counts).reduce((a, b) => a + b, 0), 3);
    assert.equal(batch.counts.waiting, 1); // the third waits for the second
    assert.equal(batch.finished_at, null);
    // the same key and the same jobs: the same batch, nothing new
    assert.equal((await jobwire.submitBatch(jobs, { labels: { run }, idempotencyKey: run })).id, batch.id);

    const seen = await followed(followBatch, jobwire.eventsUrl(batch));
    assert.deepEqual(seen.errors, []);
    assert.equal(seen.ends.length, 1);
    const end = seen.ends[0];
    assert.equal(end.type, "completed");
    assert.equal(end.batch_id, batch.id);
    assert.equal(end.total, 3);
    assert.equal(end.counts.completed, 3);
    assert.equal(end.progress, 100);
    // before the end, the state as it changed: progress events whose progress never goes back
    const before = seen.events.slice(0, -1);
    assert.ok(before.length >= 1, "no progress event before the end");
    assert.ok(before.every((event) => event.type === "progress" && event.status === "running"));
    const progress = seen.events.map((event) => event.progress);
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b));
    assert.ok(seen.following.closed);
    assert.ok(seen.following.lastEventId > 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(seen.ends.length, 1); // nothing after the end: no reconnect, no stray error
    assert.deepEqual(seen.errors, []);

    const read = await jobwire.getBatch(batch.id);
    assert.equal(read.status, "completed");
    assert.ok(read.finished_at);
    assert.deepEqual(read.counts, end.counts);
    const listed = await jobwire.list({ batchId: batch.id });
    assert.equal(listed.items.length, 3);
    assert.ok(listed.items.every((job) => job.batch_id === batch.id && job.labels.run === run));
    const last = listed.items.find((job) => job.params.add === 2);
    assert.deepEqual(last.result, { sum: 3, inputs: 1 });
    const batches = await jobwire.listBatches({ limit: 200 });
    assert.ok(batches.items.some((item) => item.id === batch.id));
  });

  test("a job at fault is a 422 naming its index, and nothing is stored", async () => {
    const jobwire = client();
    const run = unique();
    const invalid = await jobwire
      .submitBatch([
        { type: "demo.sleep", params: { seconds: 0 }, labels: { run } },
        { type: "demo.sleep", params: { seconds: "soon" }, labels: { run } },
      ])
      .catch((error) => error);
    assert.ok(invalid instanceof ApiError);
    assert.equal(invalid.status, 422);
    assert.deepEqual(invalid.errors[0].loc, ["body", "jobs", 1, "params", "seconds"]);
    const forward = await jobwire
      .submitBatch([
        { type: "demo.sleep", dependsOn: [1], labels: { run } },
        { type: "demo.sleep", labels: { run } },
      ])
      .catch((error) => error);
    assert.equal(forward.status, 422);
    assert.deepEqual(forward.errors[0].loc, ["body", "jobs", 0, "depends_on", 0]);
    assert.deepEqual((await jobwire.list({ labels: { run } })).items, []);
    await assert.rejects(jobwire.getBatch("0193a1f4-0000-7000-8000-000000000000"), {
      name: "ApiError",
      status: 404,
    });
  });

  test("cancel a batch: its jobs end cancelled, its stream ends cancelled, again is a 409", async () => {
    const jobwire = client();
    const batch = await jobwire.submitBatch([
      { type: "test.block", params: { seconds: 30 } },
      { type: "demo.sleep", params: {}, delayS: 3600 },
    ]);
    await eventually(async () => (await jobwire.getBatch(batch.id)).counts.running === 1, "the first job to run");
    const cancelled = await jobwire.cancelBatch(batch.id);
    assert.equal(cancelled.id, batch.id);
    assert.equal(cancelled.status, "cancelled");
    const seen = await followed(followBatch, jobwire.eventsUrl(cancelled));
    assert.deepEqual(seen.errors, []);
    assert.equal(seen.ends[0].type, "cancelled");
    assert.equal(seen.ends[0].counts.cancelled, 2);
    const jobs = await jobwire.list({ batchId: batch.id });
    assert.deepEqual(
      jobs.items.map((job) => job.status),
      ["cancelled", "cancelled"],
    );
    await assert.rejects(jobwire.cancelBatch(batch.id), { name: "ApiError", status: 409 });
  });

  test("bulk: a dry run counts, then cancel by label changes exactly those", async () => {
    const jobwire = client();
    const run = unique();
    const later = { type: "demo.sleep", params: {}, delayS: 3600, labels: { run } };
    await jobwire.submitBatch([later, later, later]);
    const other = await jobwire.submit("demo.sleep", {}, { delayS: 3600, labels: { run: `${run}-other` } });
    assert.deepEqual(other.labels, { run: `${run}-other` });
    try {
      const dry = await jobwire.bulk("cancel", { labels: { run }, dryRun: true });
      assert.deepEqual(dry, { matched: 3, changed: 3 });
      const untouched = await jobwire.list({ labels: { run } });
      assert.deepEqual(
        untouched.items.map((job) => job.status),
        ["scheduled", "scheduled", "scheduled"],
      );

      assert.deepEqual(await jobwire.bulk("cancel", { labels: { run } }), { matched: 3, changed: 3 });
      const after = await jobwire.list({ labels: { run } });
      assert.deepEqual(
        after.items.map((job) => job.status),
        ["cancelled", "cancelled", "cancelled"],
      );
      assert.equal((await jobwire.get(other.id)).status, "scheduled"); // another label: not matched
      // finished now: matched, not changed; a retry of them would change all three
      assert.deepEqual(await jobwire.bulk("cancel", { labels: { run } }), { matched: 3, changed: 0 });
      const retry = await jobwire.bulk("retry", { labels: { run }, status: "cancelled", dryRun: true });
      assert.deepEqual(retry, { matched: 3, changed: 3 });
      // an empty filter acts on nothing without all: true
      const empty = await jobwire.bulk("cancel", { dryRun: true }).catch((error) => error);
      assert.ok(empty instanceof ApiError);
      assert.equal(empty.status, 422);
      assert.deepEqual(empty.errors[0].loc, ["body", "filter"]);
      const everything = await jobwire.bulk("cancel", { all: true, dryRun: true });
      assert.ok(everything.matched >= 4, JSON.stringify(everything));
    } finally {
      await jobwire.cancel(other.id);
    }
  });

  test("a refused batch stream is one error and a closed follower", async () => {
    const jobwire = client();
    const batch = await jobwire.submitBatch([{ type: "demo.sleep", params: { seconds: 0 } }]);
    const forged = jobwire.eventsUrl(batch).replace(/token=[^&]+/, "token=forged");
    const seen = await followed(followBatch, forged);
    assert.equal(seen.errors.length, 1);
    assert.match(seen.errors[0].message, /batch/);
    assert.deepEqual(seen.events, []);
    assert.ok(seen.following.closed);
  });
});

describe("followBatch on a stream that drops", () => {
  test("resumes with Last-Event-ID, hands out each version once, ends at the terminal event", async () => {
    const asked = [];
    const server = createServer((request, response) => {
      asked.push(request.headers["last-event-id"] ?? null);
      response.writeHead(200, { "Content-Type": "text/event-stream" });
      const frame = (id, type, completed) =>
        `id: ${id}\nevent: ${type}\ndata: ${JSON.stringify({
          batch_id: "b",
          type,
          status: type === "progress" ? "running" : type,
          total: 2,
          counts: { completed, running: 2 - completed },
          progress: completed * 50,
          at: null,
        })}\n\n`;
      if (asked.length === 1) {
        response.end(`retry: 50\n\n${frame(4, "progress", 0)}`); // then the connection drops
      } else {
        // a state already seen (the same id) is not handed out twice
        response.end(`${frame(4, "progress", 0)}${frame(9, "progress", 1)}${frame(13, "completed", 2)}`);
      }
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${server.address().port}/v1/batches/b/events`;
      const seen = await followed(followBatch, url, { EventSource: FetchEventSource });
      assert.deepEqual(asked, [null, "4"]);
      assert.deepEqual(
        seen.events.map((event) => [event.type, event.progress]),
        [
          ["progress", 0],
          ["progress", 50],
          ["completed", 100],
        ],
      );
      assert.deepEqual(seen.errors, []);
      assert.equal(seen.ends[0].counts.completed, 2);
      assert.equal(seen.following.lastEventId, 13);
      assert.ok(seen.following.closed);
    } finally {
      server.close();
    }
  });
});
