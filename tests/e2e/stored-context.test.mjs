// Issue 12 item 3, in workerd: with RESPONSES_STORE=true and ALLOW_STORED_CONTEXT=true a user may
// continue the responses they created (`previous_response_id`), each continuation reserving its
// model's whole context window; any other id is answered 404 `not_found` before upstream sees it.
// Issue 22 item 1: an input item that names a stored item by id (whatever its `type`, or none) is
// refused with a 400 at the item without ALLOW_STORED_CONTEXT, before anything is counted; with it,
// the item must be an output item of one of the user's own stored responses (else 404, nothing
// counted), and the request reserves the model's whole context window, as a continuation does.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startMockUpstream } from "../mock-upstream.mjs";
import { browserHeaders, mintToken, proxyFor, settledUsage, usageOf, within } from "./helpers.mjs";

// gpt-4o-mini's context window (OpenAI's model page), which a continuation reserves as input.
const CONTEXT_WINDOW = 128_000;
const OUTPUT_CAP = 200;

let mock;
before(async () => {
  mock = await startMockUpstream();
});
after(() => mock?.close());

const respond = (proxy, sub, body) =>
  fetch(`${proxy.url}/v1/responses`, {
    method: "POST",
    headers: browserHeaders(mintToken({ sub })),
    body: JSON.stringify({ model: "gpt-4o-mini", input: "Hello", ...body }),
  });

/** Creates a response as `sub` and returns its id (from the answer, or from a stream's response.created). */
async function create(proxy, sub, body = {}) {
  const response = await respond(proxy, sub, body);
  assert.equal(response.status, 200);
  if (!body.stream) return (await response.json()).id;
  const created = (await response.text()).split("\n").find((line) => line.startsWith("data: ") && line.includes('"response.created"'));
  return JSON.parse(created.slice(6)).response.id;
}

/** Asserts the proxy's 404 for a response the caller may not continue, and that upstream never saw the request. */
async function expectUnknown(proxy, sub, id) {
  const before = mock.requests.length;
  const response = await respond(proxy, sub, { previous_response_id: id });
  assert.equal(response.status, 404, `continuing ${id} as ${sub}`);
  const { error } = await response.json();
  assert.deepEqual(error, {
    message: `Previous response with id '${id}' not found.`,
    type: "invalid_request_error",
    param: "previous_response_id",
    code: "not_found",
  });
  assert.equal(mock.requests.length, before, "nothing went upstream");
}

describe("with RESPONSES_STORE=true and ALLOW_STORED_CONTEXT=true", () => {
  const setup = proxyFor(() => mock, {
    RESPONSES_STORE: "true",
    ALLOW_STORED_CONTEXT: "true",
    DAILY_TOKEN_BUDGET: "1000000",
    MAX_OUTPUT_TOKENS: String(OUTPUT_CAP),
  });

  test("a user continues their own response: upstream gets previous_response_id, and the request reserves the model's whole context window", async () => {
    const id = await create(setup.proxy, "alice");
    assert.match(id, /^resp_mock_/);
    const release = mock.pauseStreams();
    try {
      const continued = await respond(setup.proxy, "alice", { previous_response_id: id, input: "And then?", stream: true });
      assert.equal(continued.status, 200);
      assert.equal(mock.requests.at(-1).json.previous_response_id, id);
      const open = await usageOf(setup.proxy, mintToken({ sub: "alice" }));
      assert.ok(open.tokens.reserved >= CONTEXT_WINDOW + OUTPUT_CAP, `reserved ${open.tokens.reserved} while the continuation runs`);
      release();
      assert.match(await within(5000, continued.text(), "the continuation"), /response\.completed/);
    } finally {
      release();
    }
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "alice" }));
    assert.ok(spent.tokens.used < 1000, `charged its usage report (${spent.tokens.used}), not the reservation`);
  });

  test("a response created by a stream can be continued once the stream has ended", async () => {
    const id = await create(setup.proxy, "streamer", { stream: true });
    const continued = await respond(setup.proxy, "streamer", { previous_response_id: id });
    assert.equal(continued.status, 200);
    assert.equal((await continued.json()).object, "response");
  });

  test("another user's response id is answered 404 not_found, exactly like an id that never existed, and costs nothing", async () => {
    const id = await create(setup.proxy, "owner");
    await expectUnknown(setup.proxy, "intruder", id);
    await expectUnknown(setup.proxy, "intruder", "resp_never_created");
    const usage = await usageOf(setup.proxy, mintToken({ sub: "intruder" }));
    assert.equal(usage.requests.remaining, usage.requests.limit, "no request was counted");
    assert.equal(usage.tokens.used + usage.tokens.reserved, 0, "no token was spent");
  });

  test("a response the client asked not to store (store: false) cannot be continued", async () => {
    const id = await create(setup.proxy, "forgetful", { store: false });
    assert.equal(mock.requests.at(-1).json.store, false);
    await expectUnknown(setup.proxy, "forgetful", id);
  });

  test("a continuation that ends without a usage report is charged the whole context window", async () => {
    const id = await create(setup.proxy, "cut-off");
    const created = (await settledUsage(setup.proxy, mintToken({ sub: "cut-off" }))).tokens.used;
    mock.faultNext({ kind: "cut", match: (json) => json?.previous_response_id === id });
    const continued = await respond(setup.proxy, "cut-off", { previous_response_id: id, stream: true });
    assert.equal(continued.status, 200);
    await within(5000, continued.text(), "the cut stream");
    const upstream = mock.requests.findLast((r) => r.json?.previous_response_id === id);
    assert.ok(Buffer.byteLength(upstream.body) < CONTEXT_WINDOW);
    const spent = await settledUsage(setup.proxy, mintToken({ sub: "cut-off" }));
    // The whole reservation: the larger of the body's bytes and the window, and the output cap.
    assert.equal(spent.tokens.used - created, CONTEXT_WINDOW + OUTPUT_CAP, "the stored context is billed as input");
  });
});

/** The id of the message item of a response `sub` creates (from the answer, or a stream's `response.completed`). */
async function createItem(proxy, sub, body = {}) {
  const response = await respond(proxy, sub, body);
  assert.equal(response.status, 200);
  if (!body.stream) return (await response.json()).output.at(-1).id;
  const completed = (await response.text()).split("\n").find((line) => line.startsWith("data: ") && line.includes('"response.completed"'));
  return JSON.parse(completed.slice(6)).response.output.at(-1).id;
}

describe("with ALLOW_STORED_CONTEXT=true, input items that name stored items by id", () => {
  const setup = proxyFor(() => mock, {
    RESPONSES_STORE: "true",
    ALLOW_STORED_CONTEXT: "true",
    DAILY_TOKEN_BUDGET: "1000000",
    MAX_OUTPUT_TOKENS: String(OUTPUT_CAP),
  });
  const naming = (id) => ({ input: [{ type: "item_reference", id }, { role: "user", content: "Go on" }] });

  test("an item of the user's own earlier answer is admitted, passed on, and reserves the model's whole context window", async () => {
    for (const stream of [false, true]) {
      const sub = `item-owner-${stream}`;
      const item = await createItem(setup.proxy, sub, { stream });
      assert.match(item, /^msg_/);
      const before = await settledUsage(setup.proxy, mintToken({ sub }));
      const release = mock.pauseStreams();
      try {
        const reading = await respond(setup.proxy, sub, { ...naming(item), stream: true });
        assert.equal(reading.status, 200, `an item of a ${stream ? "streamed" : "whole"} answer`);
        assert.deepEqual(mock.requests.at(-1).json.input[0], { type: "item_reference", id: item });
        const open = await usageOf(setup.proxy, mintToken({ sub }));
        assert.equal(open.tokens.reserved, CONTEXT_WINDOW + OUTPUT_CAP, "the stored item is reserved as the whole window");
        release();
        await within(5000, reading.text(), "the stream");
      } finally {
        release();
      }
      const after = await settledUsage(setup.proxy, mintToken({ sub }));
      assert.ok(after.tokens.used - before.tokens.used < 1000, "then charged its usage report");
    }
  });

  test("another user's item id is answered 404 not_found naming only that id, and costs nothing", async () => {
    const item = await createItem(setup.proxy, "item-maker");
    for (const id of [item, "msg_never_created"]) {
      const upstreamBefore = mock.requests.length;
      const response = await respond(setup.proxy, "item-thief", naming(id));
      assert.equal(response.status, 404, id);
      assert.deepEqual((await response.json()).error, {
        message: `Item with id '${id}' not found.`,
        type: "invalid_request_error",
        param: "input",
        code: "not_found",
      });
      assert.equal(mock.requests.length, upstreamBefore, "nothing went upstream");
    }
    const usage = await usageOf(setup.proxy, mintToken({ sub: "item-thief" }));
    assert.equal(usage.requests.remaining, usage.requests.limit, "no request was counted");
    assert.equal(usage.tokens.used + usage.tokens.reserved, 0, "no token was spent");
  });
});

describe("without ALLOW_STORED_CONTEXT", () => {
  const storing = proxyFor(() => mock, { RESPONSES_STORE: "true" });
  const misconfigured = proxyFor(() => mock, { ALLOW_STORED_CONTEXT: "true" });

  test("storing responses alone does not let anyone continue one: previous_response_id is refused with a 400", async () => {
    const before = mock.requests.length;
    const response = await respond(storing.proxy, "alice", { previous_response_id: "resp_mock_1" });
    assert.equal(response.status, 400);
    const { error } = await response.json();
    assert.equal(error.param, "previous_response_id");
    assert.equal(mock.requests.length, before, "nothing went upstream");
  });

  test("ALLOW_STORED_CONTEXT=true without RESPONSES_STORE=true is a configuration error the log names", async () => {
    const response = await respond(misconfigured.proxy, "alice", {});
    assert.equal(response.status, 500);
    assert.equal((await response.json()).error.code, "proxy_misconfigured");
    const line = misconfigured.proxy.logs.find((l) => l.error_code === "proxy_misconfigured");
    assert.match(line?.detail ?? "", /ALLOW_STORED_CONTEXT.*RESPONSES_STORE=true/);
  });
});

describe("input items that name stored items, without ALLOW_STORED_CONTEXT", () => {
  const storing = proxyFor(() => mock, { RESPONSES_STORE: "true" });
  const plain = proxyFor(() => mock, {});

  test("an item with an id and no content of its own is refused at the item, whatever its type, and costs nothing", async () => {
    for (const setup of [storing, plain]) {
      const created = await respond(setup.proxy, "reader", {});
      assert.equal(created.status, 200);
      const { output } = await created.json();
      const ownItem = output[0].id;
      assert.ok(ownItem, "the mock's answer has an output item with an id");
      const references = [
        { id: ownItem },
        { id: ownItem, type: null },
        { id: ownItem, type: "item_reference" },
        { id: ownItem, type: "message", role: "assistant" },
        { id: "rs_someone_elses", type: "reasoning", summary: [{ type: "summary_text", text: "I thought." }] },
      ];
      const before = await usageOf(setup.proxy, mintToken({ sub: "reader" }));
      const upstreamBefore = mock.requests.length;
      for (const item of references) {
        const response = await respond(setup.proxy, "reader", { input: [{ role: "user", content: "Go on" }, item] });
        assert.equal(response.status, 400, JSON.stringify(item));
        const { error } = await response.json();
        assert.equal(error.param, "input[1]", JSON.stringify(item));
        assert.equal(error.type, "invalid_request_error");
      }
      assert.equal(mock.requests.length, upstreamBefore, "nothing went upstream");
      const after = await usageOf(setup.proxy, mintToken({ sub: "reader" }));
      assert.equal(after.requests.remaining, before.requests.remaining, "no request was counted");
      assert.equal(after.tokens.used + after.tokens.reserved, before.tokens.used + before.tokens.reserved);
    }
  });

  test("an item that carries its own content passes with its id", async () => {
    const item = { id: "msg_1", type: "message", role: "assistant", content: [{ type: "output_text", text: "Hello.", annotations: [] }] };
    const response = await respond(plain.proxy, "writer", { input: [{ role: "user", content: "Hi" }, item, { role: "user", content: "And?" }] });
    assert.equal(response.status, 200);
    assert.deepEqual(mock.requests.at(-1).json.input[1], item, "passed on as sent");
  });
});
