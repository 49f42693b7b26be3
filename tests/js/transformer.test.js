// Tests for the devbox_native CCR transformer plugin (src/ccr/databricks-claude-transformers.js).
// Run with Node 20's built-in runner, no npm dependencies:  node --test tests/js/

"use strict";

const { test, describe, beforeEach, afterEach } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const PLUGIN_PATH = path.join(__dirname, "..", "..", "src", "ccr", "databricks-claude-transformers.js");
const Transformer = require(PLUGIN_PATH);

const SECRET = "dapi-test-secret-value";

/** Every path (as a string) at which a `cache_control` key occurs inside `value`. */
function findCacheControl(value, where = "$", seen = new Set()) {
  if (value === null || typeof value !== "object" || seen.has(value)) return [];
  seen.add(value);
  const found = [];
  for (const key of Object.keys(value)) {
    if (key === "cache_control") found.push(`${where}.${key}`);
    found.push(...findCacheControl(value[key], `${where}.${key}`, seen));
  }
  return found;
}

/** A request shaped like what CCR's OpenAI transformer hands on, full of things to clean. */
function sampleRequest() {
  return {
    model: "databricks-claude-sonnet-4",
    stream: true,
    max_tokens: 1024,
    parallel_tool_calls: true,
    tools: [{ type: "function", function: { name: "ls", parameters: { type: "object" } } }],
    messages: [
      { role: "system", content: "You are helpful.", cache_control: { type: "ephemeral" } },
      {
        role: "user",
        content: [
          { type: "text", text: "hello", cache_control: { type: "ephemeral" } },
          { type: "image_url", image_url: { url: "data:image/png,AAAA" }, cache_control: { type: "ephemeral" } },
          { type: "image_url", image_url: { url: "https://example.com/cat.png" } },
          { type: "image_url", image_url: { url: "data:image/jpeg;base64,BBBB" } },
        ],
      },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "call_1", type: "function", function: { name: "ls", arguments: "{}" } }],
      },
      {
        role: "tool",
        tool_call_id: "call_1",
        content: [
          {
            type: "text",
            text: "nested",
            extra: { deeper: [{ cache_control: { type: "ephemeral" }, keep: 1 }] },
          },
        ],
        cache_control: { type: "ephemeral" },
      },
    ],
  };
}

describe("module shape", () => {
  test("exports a class constructible with and without options", () => {
    assert.equal(typeof Transformer, "function");
    const a = new Transformer();
    const b = new Transformer({ debug: true });
    assert.equal(a.name, "databricks-custom");
    assert.equal(b.name, "databricks-custom");
  });

  test("debug defaults to false and only true enables it", () => {
    assert.equal(new Transformer().debug, false);
    assert.equal(new Transformer({}).debug, false);
    assert.equal(new Transformer(null).debug, false);
    assert.equal(new Transformer({ debug: "yes" }).debug, false);
    assert.equal(new Transformer({ debug: true }).debug, true);
  });

  test("transformRequestIn is async; no methods CCR would misinterpret", () => {
    const t = new Transformer({});
    assert.equal(typeof t.transformRequestIn, "function");
    assert.ok(t.transformRequestIn({}) instanceof Promise);
    for (const name of ["transformResponseOut", "transformResponseIn", "transformRequestOut", "endPoint", "auth"]) {
      assert.equal(t[name], undefined, `${name} should not be defined`);
    }
  });

  test("loads with require() from a fresh copy, as CCR does with the written file", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ccr-plugin-"));
    try {
      const copy = path.join(dir, "databricks-claude-transformers.js");
      fs.copyFileSync(PLUGIN_PATH, copy);
      const Cls = require(copy);
      assert.equal(new Cls({ debug: false }).name, "databricks-custom");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("transformRequestIn", () => {
  const t = new Transformer({ debug: false });

  test("empty-string content becomes null; other content untouched", async () => {
    const out = await t.transformRequestIn({
      messages: [
        { role: "assistant", content: "" },
        { role: "user", content: "hi" },
        { role: "assistant", content: null },
        { role: "user", content: [] },
        { role: "assistant" },
      ],
    });
    assert.equal(out.messages[0].content, null);
    assert.ok("content" in out.messages[0]);
    assert.equal(out.messages[1].content, "hi");
    assert.equal(out.messages[2].content, null);
    assert.deepEqual(out.messages[3].content, []);
    assert.ok(!("content" in out.messages[4]));
  });

  test("cache_control removed from messages and content items", async () => {
    const out = await t.transformRequestIn(sampleRequest());
    assert.ok(!("cache_control" in out.messages[0]));
    assert.ok(!("cache_control" in out.messages[3]));
    for (const item of out.messages[1].content) assert.ok(!("cache_control" in item));
    // The rest of each item survives.
    assert.deepEqual(out.messages[1].content[0], { type: "text", text: "hello" });
  });

  test("deep scan: no cache_control key survives at any depth inside messages", async () => {
    const input = sampleRequest();
    assert.ok(findCacheControl(input.messages).length > 0, "fixture must contain cache_control");
    const out = await t.transformRequestIn(input);
    assert.deepEqual(findCacheControl(out.messages), []);
    assert.deepEqual(out.messages[3].content[0].extra, { deeper: [{ keep: 1 }] });
  });

  test("data URL without ;base64 is fixed", async () => {
    const out = await t.transformRequestIn(sampleRequest());
    assert.equal(out.messages[1].content[1].image_url.url, "data:image/png;base64,AAAA");
  });

  test("data URL fix keeps other parameters and the data intact", async () => {
    const out = await t.transformRequestIn({
      messages: [
        {
          role: "user",
          content: [
            { type: "image_url", image_url: { url: "data:image/webp;name=a.webp,QUJD+/==", detail: "high" } },
            { type: "image_url", image_url: { url: "DATA:image/gif,R0lG" } },
            { type: "image_url", image_url: "data:image/png,CCCC" },
          ],
        },
      ],
    });
    const [a, b, c] = out.messages[0].content;
    assert.deepEqual(a.image_url, { url: "data:image/webp;name=a.webp;base64,QUJD+/==", detail: "high" });
    assert.equal(b.image_url.url, "data:image/gif;base64,R0lG");
    assert.equal(c.image_url, "data:image/png;base64,CCCC");
  });

  test("https URLs, base64 data URLs and malformed data URLs are left alone", async () => {
    const urls = [
      "https://example.com/cat.png",
      "data:image/jpeg;base64,BBBB",
      "data:image/png;BASE64,CCCC",
      "data:image/png", // no comma: nothing sensible to do
      "",
    ];
    const out = await t.transformRequestIn({
      messages: [{ role: "user", content: urls.map((url) => ({ type: "image_url", image_url: { url } })) }],
    });
    assert.deepEqual(
      out.messages[0].content.map((item) => item.image_url.url),
      urls
    );
  });

  test("image_url items with missing or odd image_url/url do not throw", async () => {
    const content = [
      { type: "image_url" },
      { type: "image_url", image_url: null },
      { type: "image_url", image_url: {} },
      { type: "image_url", image_url: { url: null } },
      { type: "image_url", image_url: { url: 42 } },
      { type: "image_url", image_url: 7 },
      { type: "image_url", image_url: ["data:image/png,AAAA"] },
    ];
    const out = await t.transformRequestIn({ messages: [{ role: "user", content }] });
    assert.deepEqual(out.messages[0].content, content);
  });

  test("parallel_tool_calls is really removed from the returned request", async () => {
    for (const value of [true, false, null, undefined]) {
      const out = await t.transformRequestIn({ model: "m", parallel_tool_calls: value, messages: [] });
      assert.equal("parallel_tool_calls" in out, false, `value ${value}`);
      assert.equal(out.model, "m");
    }
    const out = await t.transformRequestIn(sampleRequest());
    assert.equal("parallel_tool_calls" in out, false);
    // Also removed when there are no messages at all.
    const bare = await t.transformRequestIn({ parallel_tool_calls: true });
    assert.equal("parallel_tool_calls" in bare, false);
  });

  test("other top-level fields are preserved", async () => {
    const input = sampleRequest();
    const out = await t.transformRequestIn(input);
    assert.equal(out.model, input.model);
    assert.equal(out.stream, true);
    assert.equal(out.max_tokens, 1024);
    assert.deepEqual(out.tools, input.tools);
    assert.deepEqual(out.messages[2].tool_calls, input.messages[2].tool_calls);
    assert.equal(out.messages[3].tool_call_id, "call_1");
    assert.equal(out.messages.length, input.messages.length);
  });

  test("the caller's input is not mutated", async () => {
    const input = sampleRequest();
    const snapshot = structuredClone(input);
    const out = await t.transformRequestIn(input);
    assert.deepEqual(input, snapshot);
    assert.notEqual(out, input);
    assert.notEqual(out.messages, input.messages);
    assert.notEqual(out.messages[1].content, input.messages[1].content);
    assert.notEqual(out.messages[1].content[1].image_url, input.messages[1].content[1].image_url);
  });

  test("the full sample request comes out exactly as expected", async () => {
    const out = await t.transformRequestIn(sampleRequest());
    const expected = sampleRequest();
    delete expected.parallel_tool_calls;
    delete expected.messages[0].cache_control;
    delete expected.messages[1].content[0].cache_control;
    delete expected.messages[1].content[1].cache_control;
    expected.messages[1].content[1].image_url.url = "data:image/png;base64,AAAA";
    expected.messages[2].content = null;
    delete expected.messages[3].cache_control;
    delete expected.messages[3].content[0].extra.deeper[0].cache_control;
    assert.deepEqual(out, expected);
  });
});

describe("robustness", () => {
  const t = new Transformer();

  test("request without messages", async () => {
    const out = await t.transformRequestIn({ model: "m" });
    assert.deepEqual(out, { model: "m" });
  });

  test("non-array messages are passed through", async () => {
    for (const messages of ["hello", 3, null, { role: "user", content: "" }]) {
      const out = await t.transformRequestIn({ model: "m", messages, parallel_tool_calls: true });
      assert.deepEqual(out, { model: "m", messages });
    }
  });

  test("null, primitive and array messages are passed through", async () => {
    const messages = [null, undefined, "text", 5, ["a"], { role: "user", content: "" }];
    const out = await t.transformRequestIn({ messages });
    assert.deepEqual(out.messages, [null, undefined, "text", 5, ["a"], { role: "user", content: null }]);
  });

  test("non-array, non-string content and odd items do not throw", async () => {
    const messages = [
      { role: "user", content: 42 },
      { role: "user", content: { type: "text", text: "obj", cache_control: {} } },
      { role: "user", content: true },
      {
        role: "user",
        content: [null, undefined, "plain", 7, [1, 2], { type: "mystery", data: { x: 1 } }, { no_type: 1 }],
      },
    ];
    const out = await t.transformRequestIn({ messages });
    assert.equal(out.messages[0].content, 42);
    assert.deepEqual(out.messages[1].content, { type: "text", text: "obj" });
    assert.equal(out.messages[2].content, true);
    assert.deepEqual(out.messages[3].content, [
      null,
      undefined,
      "plain",
      7,
      [1, 2],
      { type: "mystery", data: { x: 1 } },
      { no_type: 1 },
    ]);
  });

  test("non-object requests are returned as is", async () => {
    for (const request of [undefined, null, "text", 1, ["a"]]) {
      assert.deepEqual(await t.transformRequestIn(request), request);
    }
  });

  test("missing or odd provider argument is fine", async () => {
    for (const provider of [undefined, null, "databricks", {}, { name: 3 }]) {
      const out = await t.transformRequestIn({ messages: [{ role: "user", content: "" }] }, provider);
      assert.equal(out.messages[0].content, null);
    }
  });

  test("shared and cyclic references do not loop", async () => {
    const shared = { type: "text", text: "x", cache_control: { type: "ephemeral" } };
    const cyclic = { type: "text", text: "y" };
    cyclic.self = cyclic;
    const out = await t.transformRequestIn({
      messages: [
        { role: "user", content: [shared, shared, cyclic] },
        { role: "user", content: [shared] },
      ],
    });
    assert.deepEqual(out.messages[0].content[0], { type: "text", text: "x" });
    assert.equal(out.messages[1].content[0].text, "x");
    assert.equal(out.messages[0].content[2].self, out.messages[0].content[2]);
  });

  test("a throwing getter does not make the transformer throw", async () => {
    const evil = { role: "user" };
    Object.defineProperty(evil, "content", {
      enumerable: true,
      get() {
        throw new Error("boom");
      },
    });
    const out = await t.transformRequestIn({ messages: [evil], parallel_tool_calls: true });
    assert.equal("parallel_tool_calls" in out, false);
    assert.equal(out.messages.length, 1);
  });

  test("very deep nesting does not throw", async () => {
    let deep = { leaf: true, cache_control: {} };
    for (let i = 0; i < 10000; i++) deep = { child: deep };
    const out = await t.transformRequestIn({ messages: [{ role: "user", content: [deep] }] });
    assert.equal(out.messages.length, 1);
  });
});

describe("debug logging", () => {
  let home;
  let savedHome;

  beforeEach(() => {
    savedHome = process.env.HOME;
    home = fs.mkdtempSync(path.join(os.tmpdir(), "ccr-home-"));
    process.env.HOME = home;
  });

  afterEach(() => {
    if (savedHome === undefined) delete process.env.HOME;
    else process.env.HOME = savedHome;
    fs.rmSync(home, { recursive: true, force: true });
  });

  const logFile = () => path.join(home, ".claude-code-router", "plugin.log");
  const provider = () => ({
    name: "databricks",
    api_base_url: "https://example.cloud.databricks.com/serving-endpoints/m/invocations",
    api_key: SECRET,
    apiKey: SECRET,
    headers: { Authorization: `Bearer ${SECRET}`, authorization: `Bearer ${SECRET}` },
    models: ["databricks-claude-sonnet-4"],
  });

  test("HOME override is honoured by os.homedir()", () => {
    assert.equal(os.homedir(), home);
  });

  test("debug true appends timestamped lines to ~/.claude-code-router/plugin.log", async () => {
    const t = new Transformer({ debug: true });
    await t.transformRequestIn(sampleRequest(), provider());
    await t.transformRequestIn({ model: "second", messages: [] }, provider());
    assert.ok(fs.existsSync(logFile()), "plugin.log should exist");
    const lines = fs.readFileSync(logFile(), "utf8").trimEnd().split("\n");
    assert.equal(lines.length, 2);
    for (const line of lines) {
      const stamp = line.split(" ")[0];
      assert.match(stamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}/);
      assert.ok(!Number.isNaN(Date.parse(stamp)), `timestamp ${stamp}`);
      assert.match(line, /databricks-custom/);
      assert.match(line, /provider="databricks"/);
    }
    assert.match(lines[0], /databricks-claude-sonnet-4/);
    assert.match(lines[0], /messages=4/);
    assert.match(lines[1], /"second"/);
  });

  test("the log never contains the API key or an Authorization header", async () => {
    const t = new Transformer({ debug: true });
    const request = sampleRequest();
    // Even a secret smuggled into the request's own headers must not be logged.
    request.headers = { Authorization: `Bearer ${SECRET}` };
    await t.transformRequestIn(request, provider());
    await t.transformRequestIn({ messages: "odd" }, provider());
    await t.transformRequestIn(undefined, provider());
    const text = fs.readFileSync(logFile(), "utf8");
    assert.ok(text.length > 0);
    assert.ok(!text.includes(SECRET), "secret leaked into plugin.log");
    assert.ok(!text.includes("dapi-"), "token prefix leaked into plugin.log");
    assert.ok(!/authorization/i.test(text), "authorization header leaked into plugin.log");
    assert.ok(!/bearer/i.test(text), "bearer token leaked into plugin.log");
  });

  test("debug false writes no file", async () => {
    const t = new Transformer({ debug: false });
    await t.transformRequestIn(sampleRequest(), provider());
    const t2 = new Transformer();
    await t2.transformRequestIn(sampleRequest(), provider());
    assert.equal(fs.existsSync(logFile()), false);
    assert.equal(fs.existsSync(path.join(home, ".claude-code-router")), false);
  });

  test("a logging failure never throws", async () => {
    // Make ~/.claude-code-router a regular file so the log directory cannot be created.
    fs.writeFileSync(path.join(home, ".claude-code-router"), "not a directory");
    const t = new Transformer({ debug: true });
    const out = await t.transformRequestIn(sampleRequest(), provider());
    assert.equal("parallel_tool_calls" in out, false);
    assert.equal(out.messages[2].content, null);
  });

  test("debug logging does not change the result", async () => {
    const quiet = await new Transformer().transformRequestIn(sampleRequest(), provider());
    const loud = await new Transformer({ debug: true }).transformRequestIn(sampleRequest(), provider());
    assert.deepEqual(loud, quiet);
  });
});
