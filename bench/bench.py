"""Benchmark: devbox_native vs the Databricks SDK path vs a raw ``http.client`` floor, minting a PAT.

One run, one in-process workspace emulator (`devbox_native.testing.FakeWorkspace`), every contender measured side
by side:

* cold process: a fresh ``python -c`` that imports, mints one token and exits (median of ``--runs`` rounds; the
  order of contenders rotates every round so machine drift does not favour anyone), with the child's own
  import / first-call split and peak RSS (``VmHWM``, printed by the child at exit);
* import time: ``python -X importtime -c "import X"``, cumulative, for ``devbox_native`` and ``databricks.sdk``;
* warm per call: a fresh process per contender mints once, then times ``--calls`` calls (``--warm-rounds`` times);
* ``devbox-native token get`` (Claude Code's ``apiKeyHelper``) on a broker cache hit, as a cold process, against
  ``python -c pass`` in alternating order (``--ratio-runs`` rounds);
* side by side against ``python -c pass``: the import time, the cold mint and that ``token get``, with their targets;
* the emulator's own cost per request, measured in this process.

The SDK runs the DevBox app's code verbatim in its own venv (``.cache/bench-venv-sdk``, created on first use with
``databricks-sdk==0.67.0``). The floor is stdlib only (discovery, token with Basic auth, token/create over one
keep-alive connection; the OAuth token cached in-process like devbox_native does), run by the same interpreter with
the same flags as devbox_native. This is a benchmark, not a test: nothing is asserted; targets are only reported.

    .venv/bin/python bench/bench.py [--runs 15] [--ratio-runs 51] [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_SDK_VENV: Final = ROOT / ".cache" / "bench-venv-sdk"
SDK_VERSION: Final = "0.67.0"
EMULATOR_QUOTA: Final = 10**9  # the default (600 live tokens per identity) would run out mid-benchmark

TARGET_COLD_RATIO: Final = 50.0
TARGET_IMPORT_MS: Final = 2.0  # `import devbox_native` (issue 13 item 11)
TARGET_RSS_MB: Final = 25.0
TARGET_WARM_RATIO: Final = 1.2
TARGET_COLD_BARE_RATIO: Final = 1.25  # a cold mint (import + generate_spn_token) / `python -c pass` (issue 13)
TARGET_TOKEN_GET_RATIO: Final = 1.3  # `devbox-native token get` on a cache hit / `python -c pass` (issue 11)

# --- what each contender runs. `SETUP` imports and defines mint() -> str; the harness snippets below wrap it.

SDK_SETUP: Final = textwrap.dedent(
    """\
    import os
    import time

    from databricks.sdk import WorkspaceClient


    def generate_spn_token(duration_seconds=3600):
        w = WorkspaceClient()
        token_expiry = int(os.environ.get("CLAUDE_CODE_TOKEN_EXPIRY_SECONDS", duration_seconds))
        return w.tokens.create(comment=f"sdk-{time.time_ns()}", lifetime_seconds=token_expiry).token_value


    mint = generate_spn_token
    """
)

NATIVE_SETUP: Final = textwrap.dedent(
    """\
    import devbox_native

    mint = devbox_native.generate_spn_token
    """
)

# The least any client can do: one keep-alive connection, the OAuth token cached after the first call.
FLOOR_SETUP: Final = textwrap.dedent(
    """\
    import base64
    import http.client
    import json
    import os
    import time
    import urllib.parse

    _conn = None
    _bearer = None


    def _call(method, path, body=None, headers=None):
        _conn.request(method, path, body=body, headers=headers or {})
        resp = _conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)


    def mint():
        global _conn, _bearer
        if _conn is None:
            url = urllib.parse.urlsplit(os.environ["DATABRICKS_HOST"])
            cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            _conn = cls(url.hostname, url.port, timeout=30)
        if _bearer is None:
            meta = _call("GET", "/oidc/.well-known/oauth-authorization-server")
            token_path = urllib.parse.urlsplit(meta["token_endpoint"]).path
            pair = f"{os.environ['DATABRICKS_CLIENT_ID']}:{os.environ['DATABRICKS_CLIENT_SECRET']}"
            headers = {
                "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
            }
            form = "grant_type=client_credentials&scope=all-apis"
            _bearer = _call("POST", token_path, form, headers)["access_token"]
        lifetime = int(os.environ.get("CLAUDE_CODE_TOKEN_EXPIRY_SECONDS", 3600))
        body = json.dumps({"comment": f"floor-{time.time_ns()}", "lifetime_seconds": lifetime})
        headers = {"Authorization": "Bearer " + _bearer, "Content-Type": "application/json"}
        return _call("POST", "/api/2.0/token/create", body, headers)["token_value"]
    """
)

# Cold: import, one mint, peak RSS. The two perf_counter reads cost microseconds, the same for everyone.
COLD_TEMPLATE: Final = """\
import time as _bench_time
_bench_t0 = _bench_time.perf_counter()
{setup}
_bench_t1 = _bench_time.perf_counter()
{call}
_bench_t2 = _bench_time.perf_counter()
try:
    with open("/proc/self/status") as _bench_f:
        _bench_hwm = int(_bench_f.read().split("VmHWM:")[1].split()[0])
except (OSError, IndexError, ValueError):
    _bench_hwm = -1
print("BENCH_COLD", _bench_t1 - _bench_t0, _bench_t2 - _bench_t1, _bench_hwm)
"""

WARM_TEMPLATE: Final = """\
import json as _bench_json
import time as _bench_time
{setup}
_bench_tok = mint()
assert _bench_tok.startswith("dapi"), "mint() did not return a PAT"
_bench_ns = []
for _ in range({calls}):
    _bench_t = _bench_time.perf_counter_ns()
    mint()
    _bench_ns.append(_bench_time.perf_counter_ns() - _bench_t)
print("BENCH_WARM", _bench_json.dumps(_bench_ns))
"""

IMPORT_TEMPLATE: Final = "import {module}"

# The cold mint compared with `python -c pass`: nothing but the import and the call (the print is the check).
COLD_MINT_CODE: Final = "import devbox_native\nprint(devbox_native.generate_spn_token()[:4])"


class BenchError(Exception):
    """A contender's process failed or printed nothing usable."""


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    python: Path
    setup: str
    mints: bool = True

    def cold_code(self) -> str:
        return COLD_TEMPLATE.format(setup=self.setup, call="_bench_tok = mint()" if self.mints else "pass")

    def warm_code(self, calls: int) -> str:
        return WARM_TEMPLATE.format(setup=self.setup, calls=calls)


@dataclass
class Stats:
    n: int
    median: float
    p90: float
    min: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        ordered = sorted(values)
        p90 = statistics.quantiles(ordered, n=10, method="inclusive")[-1] if len(ordered) > 1 else ordered[0]
        return cls(n=len(ordered), median=statistics.median(ordered), p90=p90, min=ordered[0])


@dataclass
class ColdResult:
    label: str
    total_ms: Stats
    import_ms: Stats
    call_ms: Stats
    rss_mb: Stats
    requests_per_run: float


@dataclass
class WarmResult:
    label: str
    per_call_us: Stats
    requests_per_call: float


@dataclass
class Results:
    machine: dict[str, Any]
    settings: dict[str, Any]
    cold: dict[str, ColdResult] = field(default_factory=dict)
    importtime_ms: dict[str, Stats] = field(default_factory=dict)
    import_top_self_us: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    warm: dict[str, WarmResult] = field(default_factory=dict)
    emulator_us: Stats | None = None
    emulator_new_connection_us: Stats | None = None  # connect + the first request, as every cold child pays
    token_get_ms: Stats | None = None
    token_get_bare_ms: Stats | None = None  # `python -c pass`, in the rounds of token_get_ms and cold_mint_ms
    cold_mint_ms: Stats | None = None
    ratios: dict[str, float | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- SDK venv


def _sdk_version_in(python: Path, timeout: float) -> str | None:
    try:
        proc = subprocess.run(
            [str(python), "-c", "from databricks.sdk.version import __version__; print(__version__)"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_sdk_venv(venv: Path, timeout: float) -> tuple[Path | None, str]:
    """The SDK venv's python (created and filled on first use), or None and why not."""
    python = venv / "bin" / "python"
    if python.exists() and _sdk_version_in(python, timeout) == SDK_VERSION:
        return python, f"reusing {venv}"
    base = shutil.which("python3.11")
    if base is None:
        return None, "python3.11 is not on PATH, so the SDK venv cannot be created"
    log(f"creating the SDK venv {venv} (python3.11 -m venv + pip install databricks-sdk=={SDK_VERSION}) ...")
    steps = [
        [base, "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"databricks-sdk=={SDK_VERSION}",
        ],
    ]
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`{' '.join(step)}` failed: {exc}"
        if proc.returncode != 0:
            return None, f"`{' '.join(step)}` exited {proc.returncode}: {_tail(proc.stderr or proc.stdout)}"
    if _sdk_version_in(python, timeout) != SDK_VERSION:
        return None, f"databricks-sdk=={SDK_VERSION} is not importable in {venv} after installing it"
    return python, f"created {venv}"


# --------------------------------------------------------------------------------------------- running children


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def child_env(workspace_env: dict[str, str], home: str) -> dict[str, str]:
    """The environment every child gets: this one minus Databricks/Python settings, plus the emulator's."""
    dropped = ("DATABRICKS_", "PYTHON", "ARM_", "GOOGLE_", "CLAUDE_CODE_TOKEN_EXPIRY_SECONDS", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env["HOME"] = home  # no ~/.databrickscfg, for anyone
    env.update(workspace_env)
    return env


def run_child(python: Path, args: list[str], env: dict[str, str], cwd: str, timeout: float) -> tuple[float, str, str]:
    """Run one child; (wall seconds, stdout, stderr). Raises BenchError on failure or timeout."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(python), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise BenchError(f"could not start {python}: {exc}") from exc
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"exited {proc.returncode}:\n{_tail(proc.stderr or proc.stdout)}")
    return elapsed, proc.stdout, proc.stderr


def marker_line(stdout: str, marker: str) -> str:
    """The rest of the child's ``MARKER ...`` line."""
    for line in stdout.splitlines():
        if line.startswith(marker + " "):
            return line[len(marker) + 1 :]
    raise BenchError(f"printed no {marker} line; stdout:\n{_tail(stdout)}")


# --------------------------------------------------------------------------------------------- measurements


class Bench:
    def __init__(self, args: argparse.Namespace, contenders: list[Contender], results: Results) -> None:
        from devbox_native.testing import FakeWorkspace

        self.args = args
        self.contenders = contenders
        self.results = results
        self.ws = FakeWorkspace(token_quota=EMULATOR_QUOTA)
        self.env: dict[str, str] = {}
        self.home = ""

    @contextmanager
    def running(self) -> Iterator[Bench]:
        with tempfile.TemporaryDirectory(prefix="devbox-bench-") as home, self.ws:
            self.home = home
            self.env = child_env(self.ws.env(), home)
            yield self

    def reset_emulator(self) -> None:
        """Revoke every live token and forget requests: the emulator's quota check is O(live tokens)."""
        for info in self.ws.live_tokens():
            self.ws.revoke_token(info["token_id"])
        self.ws.clear_requests()

    def alive(self) -> list[Contender]:
        return [c for c in self.contenders if c.key not in self.results.errors]

    def fail(self, contender: Contender, phase: str, exc: BenchError) -> None:
        self.results.errors[contender.key] = f"{phase}: {exc}"
        detail = textwrap.indent(str(exc), "   ")
        log(f"!! {contender.label} failed ({phase}); dropped from the rest of the run:\n{detail}")

    def cold(self) -> None:
        runs = self.args.runs
        samples: dict[str, list[tuple[float, float, float, float, int]]] = {c.key: [] for c in self.contenders}
        log(f"cold: 1 warm-up round + {runs} measured rounds, order rotating ...")
        for round_index in range(-1, runs):
            alive = self.alive()
            if not alive:
                return
            shift = max(round_index, 0) % len(alive)
            for contender in alive[shift:] + alive[:shift]:
                self.reset_emulator()
                try:
                    wall, stdout, _ = run_child(
                        contender.python, ["-c", contender.cold_code()], self.env, self.home, self.args.timeout
                    )
                    import_s, call_s, hwm_kb = marker_line(stdout, "BENCH_COLD").split()
                except BenchError as exc:
                    self.fail(contender, "cold run", exc)
                    continue
                if round_index >= 0:
                    sample = (wall, float(import_s), float(call_s), int(hwm_kb) / 1024, len(self.ws.requests))
                    samples[contender.key].append(sample)
        for contender in self.alive():
            rows = samples[contender.key]
            self.results.cold[contender.key] = ColdResult(
                label=contender.label,
                total_ms=Stats.of([r[0] * 1e3 for r in rows]),
                import_ms=Stats.of([r[1] * 1e3 for r in rows]),
                call_ms=Stats.of([r[2] * 1e3 for r in rows]),
                rss_mb=Stats.of([r[3] for r in rows]),
                requests_per_run=statistics.mean(r[4] for r in rows),
            )

    def importtime(self, modules: dict[str, tuple[Path, str]]) -> None:
        runs = self.args.import_runs
        log(f"import time: {runs} x `python -X importtime -c 'import X'` per module, alternating ...")
        cumulative: dict[str, list[float]] = {key: [] for key in modules}
        top: dict[str, list[list[tuple[str, int]]]] = {key: [] for key in modules}
        for _ in range(runs):
            for key, (python, module) in modules.items():
                if key in self.results.errors:
                    continue
                code = IMPORT_TEMPLATE.format(module=module)
                try:
                    _, _, stderr = run_child(python, ["-X", "importtime", "-c", code], self.env, self.home, 60)
                    total_us, offenders = parse_importtime(stderr)
                except BenchError as exc:
                    self.results.errors[key] = f"import time: {exc}"
                    continue
                cumulative[key].append(total_us / 1e3)
                top[key].append(offenders)
        for key, values in cumulative.items():
            if values:
                self.results.importtime_ms[key] = Stats.of(values)
                # the offenders of the run closest to the median
                median = statistics.median(values)
                best = min(range(len(values)), key=lambda i: abs(values[i] - median))
                self.results.import_top_self_us[key] = top[key][best]

    def warm(self) -> None:
        calls, rounds = self.args.calls, self.args.warm_rounds
        log(f"warm: {rounds} rounds x (fresh process, 1 warm-up mint + {calls} timed mints) per contender ...")
        samples: dict[str, list[float]] = {c.key: [] for c in self.contenders}
        requests: dict[str, list[float]] = {c.key: [] for c in self.contenders}
        for round_index in range(rounds):
            alive = [c for c in self.alive() if c.mints]
            if not alive:
                return
            shift = round_index % len(alive)
            for contender in alive[shift:] + alive[:shift]:
                self.reset_emulator()
                try:
                    _, stdout, _ = run_child(
                        contender.python, ["-c", contender.warm_code(calls)], self.env, self.home, self.args.timeout
                    )
                    per_call_ns = [int(v) for v in json.loads(marker_line(stdout, "BENCH_WARM"))]
                except (BenchError, ValueError) as exc:
                    self.fail(contender, "warm run", BenchError(str(exc)))
                    continue
                samples[contender.key].extend(ns / 1e3 for ns in per_call_ns)
                requests[contender.key].append(len(self.ws.requests) / (calls + 1))
        for contender in self.alive():
            if samples[contender.key]:
                self.results.warm[contender.key] = WarmResult(
                    label=contender.label,
                    per_call_us=Stats.of(samples[contender.key]),
                    requests_per_call=statistics.mean(requests[contender.key]),
                )

    def against_bare(self) -> None:
        """`python -c pass`, a cold mint and `devbox-native token get` on a broker cache hit, each a fresh process,
        in the same rounds (the order rotating every round), so that both ratios share one `python -c pass` series."""
        runs = self.args.ratio_runs
        python = Path(sys.executable)
        exe = python.parent / "devbox-native"
        log(f"against python -c pass: 1 minting `token get`, then {runs} rotating rounds of (bare, cold mint, hit) ...")
        env = {**self.env, "XDG_CACHE_HOME": str(Path(self.home) / "token-cache")}
        self.reset_emulator()
        kinds: list[tuple[str, Path, list[str]]] = [
            ("bare", python, ["-c", "pass"]),
            ("cold", python, ["-c", COLD_MINT_CODE]),
            ("hit", exe, ["token", "get"]),
        ]
        walls: dict[str, list[float]] = {kind: [] for kind, _, _ in kinds}
        hit_requests = 0
        try:
            _, first, _ = run_child(exe, ["token", "get"], env, self.home, self.args.timeout)
            for round_index in range(runs):
                shift = round_index % len(kinds)
                for kind, program, args in kinds[shift:] + kinds[:shift]:
                    self.reset_emulator()  # untimed; also forgets the requests seen
                    wall, stdout, _ = run_child(program, args, env, self.home, self.args.timeout)
                    walls[kind].append(wall * 1e3)
                    if kind == "hit":
                        hit_requests += len(self.ws.requests)
                        if stdout != first:
                            raise BenchError("token get printed another token on a cache hit")
                    elif kind == "cold" and not stdout.startswith("dapi"):
                        raise BenchError(f"the cold mint printed no PAT: {stdout[:40]!r}")
        except BenchError as exc:
            self.results.errors["against_bare"] = f"against python -c pass: {exc}"
            return
        if hit_requests:
            self.results.notes.append(f"token get: {hit_requests} requests in {runs} cache hits (expected 0)")
        self.results.token_get_bare_ms = Stats.of(walls["bare"])
        self.results.cold_mint_ms = Stats.of(walls["cold"])
        self.results.token_get_ms = Stats.of(walls["hit"])

    def emulator_cost(self) -> None:
        count = self.args.emulator_requests
        log(f"emulator: {count} x GET /api/2.0/token/list over one keep-alive connection, in this process ...")
        self.reset_emulator()
        conn = http.client.HTTPConnection("127.0.0.1", self.ws.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.ws.pat}"}
        times: list[float] = []
        try:
            for _ in range(count + 50):  # the first 50 warm the connection and the server thread
                start = time.perf_counter_ns()
                conn.request("GET", "/api/2.0/token/list", headers=headers)
                resp = conn.getresponse()
                resp.read()
                times.append((time.perf_counter_ns() - start) / 1e3)
                if resp.status != 200:
                    self.results.notes.append(f"emulator cost: token/list answered HTTP {resp.status}")
                    return
        finally:
            conn.close()
        self.results.emulator_us = Stats.of(times[50:])
        self.emulator_new_connection_cost(max(count // 10, 50))
        self.ws.clear_requests()

    def emulator_new_connection_cost(self, count: int) -> None:
        """What a cold child pays the emulator before its first answer: a new connection (the emulator starts a
        thread per connection) and the OAuth discovery request on it, from this process."""
        log(f"emulator: {count} x (new connection + GET discovery), in this process ...")
        times: list[float] = []
        for _ in range(count + 10):  # the first 10 warm the code paths
            start = time.perf_counter_ns()
            conn = http.client.HTTPConnection("127.0.0.1", self.ws.port, timeout=30)
            try:
                conn.request("GET", "/oidc/.well-known/oauth-authorization-server")
                resp = conn.getresponse()
                resp.read()
            finally:
                conn.close()
            times.append((time.perf_counter_ns() - start) / 1e3)
            if resp.status != 200:
                self.results.notes.append(f"emulator cost: discovery answered HTTP {resp.status}")
                return
        self.results.emulator_new_connection_us = Stats.of(times[10:])


def parse_importtime(stderr: str) -> tuple[float, list[tuple[str, int]]]:
    """Cumulative µs of the top-level imports after ``site`` (those of ``-c``), and the 6 largest self times."""
    entries: list[tuple[int, int, int, str]] = []  # (self µs, cumulative µs, depth, name)
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # not an importtime line, or its header
        name = parts[2].removeprefix(" ")
        depth = (len(name) - len(name.lstrip(" "))) // 2
        entries.append((int(parts[0]), int(parts[1]), depth, name.strip()))
    site_at = max((i for i, e in enumerate(entries) if e[2] == 0 and e[3] == "site"), default=-1)
    ours = entries[site_at + 1 :]
    if not ours:
        raise BenchError(f"no importtime lines after site; stderr:\n{_tail(stderr)}")
    total = sum(cumulative for _, cumulative, depth, _ in ours if depth == 0)
    offenders = sorted(((name, self_us) for self_us, _, _, name in ours), key=lambda e: -e[1])[:6]
    return float(total), offenders


# --------------------------------------------------------------------------------------------- reporting


def machine_info(native_python: Path, sdk_python: Path | None) -> dict[str, Any]:
    def version_of(python: Path) -> str:
        proc = subprocess.run(
            [str(python), "-c", "import sys; print(sys.version.split()[0], sys.implementation.name)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return proc.stdout.strip() or f"unknown ({_tail(proc.stderr, 2)})"

    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import devbox_native

    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu_model,
        "platform": platform.platform(),
        "python_native": version_of(native_python),
        "python_sdk": version_of(sdk_python) if sdk_python else None,
        "devbox_native": devbox_native.__version__,
        "databricks_sdk": SDK_VERSION if sdk_python else None,
        "loadavg_start": os.getloadavg(),
    }


def compute_ratios(results: Results) -> None:
    cold, warm = results.cold, results.warm
    r = results.ratios
    sdk, native, floor, bare = (cold.get(k) for k in ("sdk", "native", "floor", "bare"))
    r["cold_sdk_over_native"] = sdk.total_ms.median / native.total_ms.median if sdk and native else None
    if sdk and native and bare:
        net_native = native.total_ms.median - bare.total_ms.median
        r["cold_sdk_over_native_net_of_bare"] = (sdk.total_ms.median - bare.total_ms.median) / net_native
    r["cold_native_over_floor"] = native.total_ms.median / floor.total_ms.median if native and floor else None
    r["native_import_ms"] = native.import_ms.median if native else None
    r["native_rss_mb"] = native.rss_mb.median if native else None
    w_sdk, w_native, w_floor = (warm.get(k) for k in ("sdk", "native", "floor"))
    r["warm_native_over_floor"] = None
    if w_native and w_floor:
        r["warm_native_over_floor"] = w_native.per_call_us.median / w_floor.per_call_us.median
    r["warm_sdk_over_native"] = w_sdk.per_call_us.median / w_native.per_call_us.median if w_sdk and w_native else None
    r["emulator_us_per_request"] = results.emulator_us.median if results.emulator_us else None
    new_connection = results.emulator_new_connection_us
    r["emulator_us_new_connection"] = new_connection.median if new_connection else None
    hit, cold_mint, bare_ms = results.token_get_ms, results.cold_mint_ms, results.token_get_bare_ms
    r["token_get_over_bare"] = hit.median / bare_ms.median if hit and bare_ms else None
    r["cold_mint_over_bare"] = cold_mint.median / bare_ms.median if cold_mint and bare_ms else None
    importtime = results.importtime_ms.get("devbox_native")
    r["native_importtime_ms"] = importtime.median if importtime else None


def _fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def _verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


def print_report(results: Results) -> None:
    m, s = results.machine, results.settings
    print()
    print(f"machine: {m['nproc']} CPUs (affinity {m['affinity']}), {m['cpu'] or 'unknown CPU'}, {m['platform']}")
    print(f"python: {m['python_native']} (.venv); SDK venv: {m['python_sdk'] or 'n/a'}")
    print(f"devbox_native {m['devbox_native']}; databricks-sdk {m['databricks_sdk'] or 'not measured'}")
    load_start = ", ".join(f"{v:.2f}" for v in m["loadavg_start"])
    load_end = ", ".join(f"{v:.2f}" for v in m.get("loadavg_end", ()))
    print(f"load average: start {load_start}; end {load_end}")
    print(f"emulator: FakeWorkspace(token_quota={EMULATOR_QUOTA:.0e}) in this process, tokens revoked between runs")

    print()
    print(f"COLD PROCESS: fresh `python -c`: import, mint one token, exit (median of {s['runs']} rotating rounds)")
    header = (
        f"{'contender':<34}{'median ms':>10}{'p90 ms':>9}{'min ms':>9}"
        f"{'import ms':>11}{'1st call ms':>13}{'rest ms':>9}{'peak RSS MB':>13}{'requests':>10}"
    )
    print(header)
    print("-" * len(header))
    for result in results.cold.values():
        rest = result.total_ms.median - result.import_ms.median - result.call_ms.median
        print(
            f"{result.label:<34}{result.total_ms.median:>10.1f}{result.total_ms.p90:>9.1f}{result.total_ms.min:>9.1f}"
            f"{result.import_ms.median:>11.1f}{result.call_ms.median:>13.1f}{rest:>9.1f}"
            f"{result.rss_mb.median:>13.1f}{result.requests_per_run:>10.1f}"
        )
    print(
        "  import/1st call: perf_counter inside the child; rest: interpreter start-up, teardown and process spawn;\n"
        "  peak RSS: the child's VmHWM at exit; requests: HTTP requests the emulator saw per run"
    )

    if results.importtime_ms:
        print()
        print(f"IMPORT TIME: `python -X importtime -c 'import X'`, cumulative (median of {s['import_runs']})")
        for key, stats in results.importtime_ms.items():
            offenders = ", ".join(f"{name} {us / 1e3:.1f}" for name, us in results.import_top_self_us.get(key, []))
            print(f"  {key:<16}{stats.median:>8.1f} ms   (p90 {stats.p90:.1f}, min {stats.min:.1f})")
            print(f"  {'':<16}largest self times (ms): {offenders}")

    if results.warm:
        print()
        print(
            f"WARM PER CALL: fresh process per contender, 1 warm-up mint then {s['calls']} timed mints, "
            f"x{s['warm_rounds']} rounds"
        )
        header = f"{'contender':<34}{'median µs':>11}{'p90 µs':>10}{'min µs':>10}{'requests/mint':>15}"
        print(header)
        print("-" * len(header))
        for warm in results.warm.values():
            st = warm.per_call_us
            print(f"{warm.label:<34}{st.median:>11.0f}{st.p90:>10.0f}{st.min:>10.0f}{warm.requests_per_call:>15.2f}")

    bare = results.token_get_bare_ms
    if bare and results.cold_mint_ms and results.token_get_ms:
        r = results.ratios
        print()
        print(f"AGAINST `python -c pass`: fresh processes, the three in rotating order in each of {bare.n} rounds")
        header = f"{'':<34}{'median ms':>10}{'p90 ms':>9}{'min ms':>9}{'ratio':>9}   target"
        print(header)
        print("-" * len(header))
        rows = [
            ("python -c pass", bare, None, ""),
            ("cold mint (import + 1 mint)", results.cold_mint_ms, r.get("cold_mint_over_bare"), TARGET_COLD_BARE_RATIO),
            (
                "token get (broker cache hit)",
                results.token_get_ms,
                r.get("token_get_over_bare"),
                TARGET_TOKEN_GET_RATIO,
            ),
        ]
        for name, st, ratio, target in rows:
            verdict = f"<= {target:g}x {_verdict(ratio, target, False)}" if isinstance(target, float) else ""
            ratio_text = _fmt(ratio, ".2f", "x") if ratio is not None else ""
            print(f"{name:<34}{st.median:>10.1f}{st.p90:>9.1f}{st.min:>9.1f}{ratio_text:>9}   {verdict}".rstrip())
        imported = r.get("native_importtime_ms")
        print(
            f"{'import devbox_native (importtime)':<34}{_fmt(imported, '.2f'):>10}{'':>27}   "
            f"< {TARGET_IMPORT_MS:g} ms {_verdict(imported, TARGET_IMPORT_MS, False)}"
        )
        print("  cold mint: `python -c 'import devbox_native; generate_spn_token()'`, 3 requests to the emulator")

    if results.emulator_us:
        st = results.emulator_us
        print()
        print(
            f"EMULATOR: GET /api/2.0/token/list over keep-alive http.client in this process: "
            f"median {st.median:.0f} µs, p90 {st.p90:.0f} µs (n={st.n})"
        )
    if results.emulator_new_connection_us:
        st = results.emulator_new_connection_us
        print(
            f"EMULATOR: a new connection + GET discovery (the cold mint's first request), in this process: "
            f"median {st.median:.0f} µs, p90 {st.p90:.0f} µs (n={st.n})"
        )

    r = results.ratios

    def goal_row(
        name: str, key: str, spec: str, unit: str, op: str, goal: float, *, higher_is_better: bool
    ) -> tuple[str, str, str, str]:
        """A row with a target: the value of ratio `key`, `op goal unit`, and whether it is met."""
        return (
            name,
            _fmt(r.get(key), spec, unit),
            f"{op} {goal:g}{unit}",
            _verdict(r.get(key), goal, higher_is_better),
        )

    print()
    print("RATIOS")
    rows = [
        goal_row(
            "cold SDK / devbox_native",
            "cold_sdk_over_native",
            ".1f",
            "x",
            ">=",
            TARGET_COLD_RATIO,
            higher_is_better=True,
        ),
        (
            "  same, net of `python -c pass`",
            _fmt(r.get("cold_sdk_over_native_net_of_bare"), ".1f", "x"),
            "(info)",
            "",
        ),
        ("cold devbox_native / floor", _fmt(r.get("cold_native_over_floor"), ".2f", "x"), "(info)", ""),
        goal_row(
            "devbox_native import", "native_importtime_ms", ".2f", " ms", "<", TARGET_IMPORT_MS, higher_is_better=False
        ),
        ("  same, in the cold child", _fmt(r.get("native_import_ms"), ".2f", " ms"), "(info)", ""),
        goal_row(
            "cold mint / python -c pass",
            "cold_mint_over_bare",
            ".2f",
            "x",
            "<=",
            TARGET_COLD_BARE_RATIO,
            higher_is_better=False,
        ),
        goal_row(
            "devbox_native peak RSS (cold)", "native_rss_mb", ".1f", " MB", "<", TARGET_RSS_MB, higher_is_better=False
        ),
        goal_row(
            "warm devbox_native / floor",
            "warm_native_over_floor",
            ".2f",
            "x",
            "<=",
            TARGET_WARM_RATIO,
            higher_is_better=False,
        ),
        ("warm SDK / devbox_native", _fmt(r.get("warm_sdk_over_native"), ".1f", "x"), "(info)", ""),
        goal_row(
            "token get (cache hit) / bare",
            "token_get_over_bare",
            ".2f",
            "x",
            "<=",
            TARGET_TOKEN_GET_RATIO,
            higher_is_better=False,
        ),
        ("emulator per request", _fmt(r.get("emulator_us_per_request"), ".0f", " µs"), "(info)", ""),
        ("emulator new connection + 1st", _fmt(r.get("emulator_us_new_connection"), ".0f", " µs"), "(info)", ""),
    ]
    for name, value, target, verdict in rows:
        print(f"  {name:<34}{value:>12}   {target:<12}{verdict}".rstrip())

    for note in results.notes:
        print(f"note: {note}")
    for key, error in results.errors.items():
        print(f"ERROR {key}: " + textwrap.indent(error, "    ").lstrip())


def to_json(results: Results) -> dict[str, Any]:
    return asdict(results)


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="cold rounds (each runs every contender once)")
    parser.add_argument("--import-runs", type=int, default=7, help="-X importtime runs per module")
    parser.add_argument(
        "--ratio-runs", type=int, default=51, help="rounds of (python -c pass, cold mint, token get) for the ratios"
    )
    parser.add_argument("--calls", type=int, default=200, help="timed warm calls per process")
    parser.add_argument("--warm-rounds", type=int, default=3, help="warm processes per contender")
    parser.add_argument("--emulator-requests", type=int, default=2000, help="requests for the emulator's own cost")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a child process is killed")
    parser.add_argument("--sdk-venv", type=Path, default=DEFAULT_SDK_VENV, help="where the SDK venv lives")
    parser.add_argument("--no-sdk", action="store_true", help="skip the SDK contender")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    args = parser.parse_args(argv)
    for name in ("runs", "ratio_runs", "import_runs", "calls", "warm_rounds", "emulator_requests"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    native_python = Path(sys.executable)
    try:
        import devbox_native.testing  # noqa: F401
    except ImportError as exc:
        log(f"cannot import devbox_native.testing with {sys.executable} ({exc}); run `make build-dev` first")
        return 2

    sdk_python: Path | None = None
    notes: list[str] = []
    if args.no_sdk:
        notes.append("SDK contender skipped (--no-sdk)")
    else:
        sdk_python, why = ensure_sdk_venv(args.sdk_venv, args.timeout)
        if sdk_python is None:
            notes.append(f"SDK contender skipped: {why}")
            log(f"!! SDK contender skipped: {why}")
        else:
            log(f"SDK venv: {why}")

    contenders: list[Contender] = []
    if sdk_python is not None:
        contenders.append(Contender("sdk", f"databricks-sdk {SDK_VERSION} (app code)", sdk_python, SDK_SETUP))
    contenders += [
        Contender("native", "devbox_native", native_python, NATIVE_SETUP),
        Contender("floor", "stdlib http.client floor", native_python, FLOOR_SETUP),
        Contender("bare", "python -c pass (reference)", native_python, "", mints=False),
    ]
    settings = {
        "runs": args.runs,
        "ratio_runs": args.ratio_runs,
        "import_runs": args.import_runs,
        "calls": args.calls,
        "warm_rounds": args.warm_rounds,
        "emulator_requests": args.emulator_requests,
        "sdk_venv": str(args.sdk_venv) if sdk_python else None,
    }
    results = Results(machine=machine_info(native_python, sdk_python), settings=settings, notes=notes)

    modules = {"devbox_native": (native_python, "devbox_native")}
    if sdk_python is not None:
        modules["databricks.sdk"] = (sdk_python, "databricks.sdk")
    bench = Bench(args, contenders, results)
    with bench.running():
        bench.cold()
        bench.importtime(modules)
        bench.warm()
        bench.against_bare()
        bench.emulator_cost()
    results.machine["loadavg_end"] = os.getloadavg()
    compute_ratios(results)

    if args.json:
        print(json.dumps(to_json(results), indent=2))
    else:
        print_report(results)
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
