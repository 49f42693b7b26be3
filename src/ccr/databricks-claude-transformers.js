/*
 * databricks-claude-transformers.js — Claude Code Router (CCR) transformer plugin
 * ===============================================================================
 *
 * Written by devbox_native. The Rust core embeds this file (include_str!) and writes it to
 *   <root>/.claude-code-router/plugins/databricks-claude-transformers.js
 * where config.json lists it under "transformers". Edits made to the written copy are
 * overwritten the next time devbox_native writes the CCR config.
 *
 * What it is for
 * --------------
 * CCR turns Claude Code's Anthropic-style requests into OpenAI-style chat requests (the
 * built-in "OpenAI" transformer) and forwards them to a Databricks serving endpoint. A few
 * things in those requests are rejected or mis-read by Databricks, so this transformer,
 * registered as "databricks-custom" and run after "OpenAI", cleans them up:
 *
 *   1. a message whose content is the empty string "" gets `content: null`;
 *   2. every `cache_control` key inside the messages is dropped (on the messages, on the
 *      items of an array `content`, and at any deeper level);
 *   3. an `image_url` item whose URL is a `data:` URL lacking `;base64` is rewritten to
 *      `data:<mime>;base64,<data>`;
 *   4. the top-level `parallel_tool_calls` is removed.
 *
 * It never throws on odd input (no `messages`, non-array `messages` or `content`, null
 * items, unknown item types): anything it does not recognise is passed through untouched.
 * It does not mutate the caller's objects: it returns a new request, built from copies.
 *
 * CCR 1.x loads it with `require(path)` and calls `new Cls(options)`; the instance's `name`
 * is the key used in a provider's `transformer.use` list. Only `transformRequestIn` is
 * defined: CCR gives meaning to other method names (transformResponseOut, endPoint, ...),
 * so helpers live at module level rather than on the class.
 *
 * Options: `debug` (default false). When true, one timestamped line per request is appended
 * to ~/.claude-code-router/plugin.log. Only the model, the message count, the provider
 * name and counts of what was changed are logged — never the provider object, its API key
 * or any header. Logging failures are swallowed.
 */

"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");

const TRANSFORMER_NAME = "databricks-custom";

/** Deepest nesting the cleaner descends into; anything deeper is passed through as is. */
const MAX_DEPTH = 64;

/** True for a non-null object that is not an array. */
function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** True for an object we may copy key by key (a JSON-like plain object). */
function isPlainObject(value) {
  if (!isObject(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Returns `url` with `;base64` added when it is a `data:` URL that lacks it, e.g.
 * "data:image/png,AAAA" -> "data:image/png;base64,AAAA". Anything else (non-string,
 * https:// URLs, data URLs already marked base64, data URLs without a comma) is returned
 * unchanged.
 */
function fixDataUrl(url) {
  if (typeof url !== "string" || url.slice(0, 5).toLowerCase() !== "data:") return url;
  const comma = url.indexOf(",");
  if (comma < 0) return url; // malformed: no data part, nothing sensible to fix
  const meta = url.slice(5, comma); // e.g. "image/png" or "image/png;base64"
  const params = meta.split(";").map((p) => p.trim().toLowerCase());
  if (params.includes("base64")) return url;
  return "data:" + meta + ";base64," + url.slice(comma + 1);
}

/**
 * Fixes the data URL of an `image_url` content item. `item` must be a copy the cleaner
 * made (never the caller's object); a changed `image_url` object is replaced by a new one,
 * so the caller's nested objects are never written to either. Accepts both the usual
 * `{image_url: {url}}` shape and a bare string `image_url`; a missing or odd `image_url`
 * is left alone.
 */
function fixImageItem(item, stats) {
  const image = item.image_url;
  if (typeof image === "string") {
    const fixed = fixDataUrl(image);
    if (fixed !== image) {
      item.image_url = fixed;
      stats.imagesFixed += 1;
    }
  } else if (isObject(image) && typeof image.url === "string") {
    const fixed = fixDataUrl(image.url);
    if (fixed !== image.url) {
      item.image_url = { ...image, url: fixed };
      stats.imagesFixed += 1;
    }
  }
}

/**
 * Returns a copy of `value` with every `cache_control` key removed at any depth and every
 * `image_url` item's data URL fixed. Arrays and plain objects are copied; everything else
 * (strings, numbers, null, class instances) is returned as is. `seen` maps originals to
 * copies so shared or cyclic references cannot loop forever.
 */
function clean(value, stats, seen, depth) {
  if (value === null || typeof value !== "object") return value;
  if (depth > MAX_DEPTH) return value;
  if (seen.has(value)) return seen.get(value);

  if (Array.isArray(value)) {
    const out = [];
    seen.set(value, out);
    for (const element of value) out.push(clean(element, stats, seen, depth + 1));
    return out;
  }

  if (!isPlainObject(value)) return value;

  const out = {};
  seen.set(value, out);
  for (const key of Object.keys(value)) {
    if (key === "cache_control") {
      stats.cacheControlRemoved += 1;
      continue;
    }
    out[key] = clean(value[key], stats, seen, depth + 1);
  }
  if (out.type === "image_url") fixImageItem(out, stats);
  return out;
}

/** Cleans one message: copies it, strips cache_control, maps content "" to null. */
function cleanMessage(message, stats, seen) {
  if (!isObject(message)) return message; // null, strings, arrays: pass through
  const out = clean(message, stats, seen, 0);
  if (isObject(out) && out.content === "") {
    out.content = null;
    stats.emptyContentNulled += 1;
  }
  return out;
}

/** Appends one timestamped line to ~/.claude-code-router/plugin.log; never throws. */
function appendLog(line) {
  try {
    // Resolved at call time so a changed HOME (tests, other users) is honoured.
    const dir = path.join(os.homedir(), ".claude-code-router");
    fs.mkdirSync(dir, { recursive: true });
    fs.appendFileSync(
      path.join(dir, "plugin.log"),
      `${new Date().toISOString()} [${TRANSFORMER_NAME}] ${line}\n`
    );
  } catch (_err) {
    // Logging is best effort only.
  }
}

/** A short, safe description of a value for the log (no secrets can reach it). */
function describe(value) {
  if (typeof value === "string") return JSON.stringify(value.slice(0, 200));
  if (value === undefined) return "-";
  return typeof value;
}

/** The error's class name only: its message could quote request data. */
function describeError(err) {
  return err && err.constructor && typeof err.constructor.name === "string"
    ? err.constructor.name
    : typeof err;
}

class DatabricksClaudeTransformer {
  constructor(options) {
    this.name = TRANSFORMER_NAME;
    this.options = isObject(options) ? options : {};
    this.debug = this.options.debug === true;
  }

  /**
   * Cleans an OpenAI-style chat request before CCR sends it to Databricks.
   * Returns a new request object; the caller's objects are left untouched.
   */
  async transformRequestIn(request, provider) {
    if (!isObject(request)) return request;

    const stats = { cacheControlRemoved: 0, emptyContentNulled: 0, imagesFixed: 0 };
    const result = { ...request };

    // 4. Databricks rejects parallel_tool_calls: really drop it from what we return.
    const hadParallel = Object.prototype.hasOwnProperty.call(result, "parallel_tool_calls");
    delete result.parallel_tool_calls;

    // 1-3. Messages: only an array is rewritten; anything else is passed through.
    // A failure here (e.g. a throwing getter on a foreign object) must not break the
    // request: the original messages are then passed through unchanged.
    let failure = null;
    if (Array.isArray(request.messages)) {
      try {
        const seen = new Map();
        result.messages = request.messages.map((m) => cleanMessage(m, stats, seen));
      } catch (err) {
        failure = err;
        result.messages = request.messages;
      }
    }

    if (this.debug) {
      // Only whitelisted, non-secret fields: never the provider object or its headers.
      const count = Array.isArray(request.messages) ? request.messages.length : "-";
      const providerName = isObject(provider) ? describe(provider.name) : "-";
      appendLog(
        `transformRequestIn model=${describe(request.model)} messages=${count} ` +
          `provider=${providerName} cache_control_removed=${stats.cacheControlRemoved} ` +
          `empty_content_nulled=${stats.emptyContentNulled} images_fixed=${stats.imagesFixed} ` +
          `parallel_tool_calls_removed=${hadParallel}`
      );
      if (failure) {
        appendLog(`transformRequestIn: messages passed through after ${describeError(failure)}`);
      }
    }

    return result;
  }
}

module.exports = DatabricksClaudeTransformer;
