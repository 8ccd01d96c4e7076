import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { createElement } from "react";
import TestRenderer from "react-test-renderer";

import { useBatch, useJob } from "../dist/react.js";
import { client, eventually, skip } from "./helpers.mjs";

// updates come from the stream, outside act(): tell React this is not an act() environment
globalThis.IS_REACT_ACT_ENVIRONMENT = false;

function Status({ eventsUrl, states }) {
  const state = useJob(eventsUrl);
  states.push(state);
  return createElement("p", null, `${state.status} ${state.progress}`);
}

function BatchStatus({ eventsUrl, states }) {
  const state = useBatch(eventsUrl);
  states.push(state);
  return createElement("p", null, `${state.status} ${state.counts?.completed ?? 0}/${state.total}`);
}

describe("useJob against a real jobwire", { skip }, () => {
  test("follows a job to its result and ends", async () => {
    const jobwire = client();
    const job = await jobwire.submit("demo.sleep", { seconds: 0.3, steps: 3 });
    const states = [];
    const renderer = TestRenderer.create(createElement(Status, { eventsUrl: jobwire.eventsUrl(job), states }));
    try {
      const last = await eventually(() => states.at(-1)?.done && states.at(-1), "useJob to report the end");
      assert.equal(last.status, "completed");
      assert.equal(last.progress, 100);
      assert.notEqual(last.result, null);
      assert.equal(last.streamError, null);
      assert.equal(renderer.toJSON().children.join(""), "completed 100");
      // it went through running with progress on the way
      assert.ok(states.some((state) => state.status === "running" && state.progress > 0));
    } finally {
      renderer.unmount();
    }
  });

  test("null follows nothing; a refused stream is a streamError", async () => {
    const states = [];
    const renderer = TestRenderer.create(createElement(Status, { eventsUrl: null, states }));
    try {
      assert.equal(states.at(-1).status, null);
      const jobwire = client();
      const job = await jobwire.submit("demo.sleep", { seconds: 0 });
      const forged = jobwire.eventsUrl(job).replace(/token=[^&]+/, "token=forged");
      renderer.update(createElement(Status, { eventsUrl: forged, states }));
      const last = await eventually(() => states.at(-1)?.streamError && states.at(-1), "the stream error");
      assert.equal(last.done, false);
    } finally {
      renderer.unmount();
    }
  });
});

describe("useBatch against a real jobwire", { skip }, () => {
  test("follows a batch to its end with its counts and progress", async () => {
    const jobwire = client();
    const sleep = { type: "demo.sleep", params: { seconds: 0.3, steps: 3 } };
    const batch = await jobwire.submitBatch([sleep, sleep]);
    const states = [];
    const renderer = TestRenderer.create(
      createElement(BatchStatus, { eventsUrl: jobwire.eventsUrl(batch), states }),
    );
    try {
      assert.equal(states[0].status, null);
      assert.equal(states[0].counts, null);
      const last = await eventually(() => states.at(-1)?.done && states.at(-1), "useBatch to report the end");
      assert.equal(last.status, "completed");
      assert.equal(last.total, 2);
      assert.equal(last.counts.completed, 2);
      assert.equal(last.progress, 100);
      assert.equal(last.lastEvent.type, "completed");
      assert.equal(last.streamError, null);
      assert.equal(renderer.toJSON().children.join(""), "completed 2/2");
      // it was running on the way, with the counts as they were
      assert.ok(states.some((state) => state.status === "running" && state.counts !== null && !state.done));
    } finally {
      renderer.unmount();
    }
  });
});
