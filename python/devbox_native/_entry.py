"""Where the ``devbox-native`` command starts: the launcher the wheel installs and ``python -m devbox_native``.

``devbox-native token get`` with no option is what Claude Code and Codex run at start and every few minutes (their
``apiKeyHelper`` / ``auth.command``), so it is answered here, from the broker alone: no CLI module, no argparse, no
json, no exception classes (imported only when something fails), and on a fresh cache hit no async runtime and
no network call. Every other command goes to :func:`devbox_native.cli.main`. This module stays small and imports
nothing at load time but ``sys`` (no ``from __future__``, no ``typing``): it is on that hot path.
"""

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from devbox_native import Config

#: Exit codes (``devbox_native.cli`` re-exports them with the others).
EXIT_OK = 0
EXIT_ERROR = 1
#: stdout was closed by its reader (128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE).
EXIT_CLOSED_PIPE = 141

#: The budget of `token get` unless --timeout says otherwise: an agent waits for its apiKeyHelper (Claude Code
#: warns after 10 s), so it must fail within seconds, not after the library's 300 s.
TOKEN_GET_TIMEOUT = 30.0
#: The broker's refresh margin unless --margin says otherwise (half the lifetime when that is shorter).
DEFAULT_MARGIN = 600
#: Overrides the lifetime of every token a command mints, as in the DevBox app.
LIFETIME_ENV = "CLAUDE_CODE_TOKEN_EXPIRY_SECONDS"


def main() -> int:
    """Run ``devbox-native`` with ``sys.argv`` and return the exit code."""
    if sys.argv[1:] == ["token", "get"]:
        return guarded(token_get)
    from devbox_native.cli import main as cli_main

    return cli_main()


def guarded(run: "Callable[[], int]") -> int:
    """``run()``'s exit code, with stdout flushed; `EXIT_CLOSED_PIPE` (quietly) when its reader went away."""
    try:
        code = run()
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's own flush at exit
    except BrokenPipeError:
        return closed_pipe()
    return code


def closed_pipe() -> int:
    """The reader of stdout went away (``... | head``): exit quietly, as Unix tools do."""
    import os

    # Point stdout at /dev/null so the interpreter's final flush does not print a second traceback.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_CLOSED_PIPE


def lifetime(option: "int | None") -> "int | None":
    """The lifetime of a token a command mints: `LIFETIME_ENV` when set (Python's ``int()`` reads it, as the app
    does), else the option."""
    import os

    raw = os.environ.get(LIFETIME_ENV)
    if raw is None:
        return option
    try:
        seconds = int(raw)
    except ValueError:
        raise ValueError(f"{LIFETIME_ENV}: must be a whole number of seconds, got {raw!r}") from None
    if seconds <= 0:
        raise ValueError(f"{LIFETIME_ENV}: must be a positive number of seconds, got {seconds}")
    return seconds


def margin(lifetime: "int | None", option: "int | None") -> "int | None":
    """The broker's refresh margin: the option, else half a lifetime shorter than twice the default margin (so
    that a short lifetime, e.g. from the environment, still leaves a usable token), else the broker's default."""
    if option is None and lifetime is not None and lifetime < 2 * DEFAULT_MARGIN:
        return lifetime // 2
    return option


def budget(seconds: "float | None") -> "Config | None":
    """A `Config` whose calls are bounded by `seconds` (retries included), or None for the library default."""
    if seconds is None:
        return None
    from devbox_native import Config

    return Config(retry_timeout_seconds=seconds)


def token_get() -> int:
    """`devbox-native token get` with no option: print the broker's token, or the error on stderr."""
    from devbox_native import TokenBroker

    try:
        life = lifetime(None)
        broker = TokenBroker(lifetime_seconds=life, refresh_margin=margin(life, None), config=budget(TOKEN_GET_TIMEOUT))
        token = broker.get()
    except Exception as exc:
        from devbox_native.errors import DevboxError

        if not isinstance(exc, DevboxError | ValueError):
            raise
        sys.stderr.write(f"devbox-native: {type(exc).__name__}: {exc}\n")
        return EXIT_ERROR
    sys.stdout.write(token + "\n")
    return EXIT_OK
