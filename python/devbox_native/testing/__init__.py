"""A local Databricks workspace emulator for tests and benchmarks (pure standard library).

`FakeWorkspace` serves, on ``127.0.0.1``, the slice of a Databricks workspace that devbox_native talks to:

* OAuth discovery (``/oidc/.well-known/oauth-authorization-server``, ``.../openid-configuration``) and the host
  metadata probe of newer SDKs (``/.well-known/databricks-config``);
* the OAuth token endpoint ``/oidc/v1/token`` (``client_credentials`` with HTTP Basic or form credentials, and
  ``token-exchange`` for subject tokens listed in `FakeWorkspace.federated_tokens`);
* a Databricks metadata service at `FakeWorkspace.metadata_service_url` (``GET`` with
  ``X-Databricks-Metadata-Version: 1`` and ``X-Databricks-Host: <host>``, answering ``access_token``,
  ``token_type`` and ``expires_on``);
* legacy basic authentication (``Authorization: Basic``) with `FakeWorkspace.username` and
  `FakeWorkspace.password`;
* the Token API ``/api/2.0/token/{create,list,delete}`` with the real service's validation and quota errors;
* model serving: ``/serving-endpoints/<name>/invocations``, the OpenAI-compatible
  ``/serving-endpoints/chat/completions`` and the Anthropic Messages ``/serving-endpoints/anthropic/v1/messages``,
  each optionally streamed as server-sent events;
* what the coding agents call (recorded in `FakeWorkspace.invocations` too): OpenAI Responses
  (``POST .../responses``, JSON or the SSE events Codex reads) with its models list (``GET .../models``, in the
  OpenAI shape: Codex 0.171 logs that it cannot decode it as its own catalog and uses built-in metadata) at
  ``/serving-endpoints`` and ``/ai-gateway/codex/v1``; Anthropic Messages also at
  ``/ai-gateway/anthropic/v1/messages`` (and ``HEAD`` of both Anthropic bases, which Claude Code sends first);
  chat completions at ``/ai-gateway/mlflow/v1``; Gemini ``/ai-gateway/gemini/v1beta/models/<model>:generateContent``
  and ``:streamGenerateContent`` (``?alt=sse`` for server-sent events, else a JSON array). Every one takes only
  ``Authorization: Bearer`` and answers a bad credential with the same 403 as the rest of the workspace. A fault
  with ``event_delay`` writes a stream's events one by one (chunked, flushed), and a client that closes such a
  stream early is recorded (`FakeWorkspace.cancelled_streams`); `read_events` reads such a stream on the client side,
  each event with the time it arrived.

Every request is recorded (`FakeWorkspace.requests`), and faults can be queued per path prefix
(`FakeWorkspace.inject`): error statuses with ``Retry-After``, delays, dropped or reset connections, hanging or
trickling responses and redirects.

Error bodies follow what the real service sends. One deliberate detail: an unknown, expired or revoked bearer token
gets ``403 {"error_code": 403, "message": "Invalid access token."}`` with a *numeric* ``error_code`` and an
``X-Databricks-Reason-Phrase`` header, as recorded from real workspaces (databricks/databricks-sdk-go#873, #1046).

Cost: about 80 µs per request on a quiet 2-core machine (170-220 µs while other jobs load it), measured as 2000
``GET /api/2.0/token/list`` over one keep-alive ``http.client`` connection with the client in the same process
(CPython 3.11); the emulator's own CPU share is 25-60 µs per request. So benchmarks measure the client.

The parts live in private modules: ``_wire`` (the HTTP/1.1 server, request recording and faults), ``_oauth``,
``_tokens`` (the Token API), ``_serving`` and ``_workspace`` (`FakeWorkspace`, which joins them); ``_cli`` is
``devbox-native emulator``. Importing this package loads neither `http.server` nor `ssl`.

Example::

    with FakeWorkspace(token_quota=3) as ws:
        os.environ.update(ws.env())
        ...  # mint PATs against ws.host
        assert len(ws.live_tokens()) == 1
"""

from devbox_native.testing._serving import read_events
from devbox_native.testing._wire import FaultAction, RecordedRequest
from devbox_native.testing._workspace import FakeWorkspace

__all__ = ["FakeWorkspace", "FaultAction", "RecordedRequest", "read_events"]

# They live in private modules; they are documented, shown by help() and pickled under this name.
FakeWorkspace.__module__ = RecordedRequest.__module__ = read_events.__module__ = __name__
