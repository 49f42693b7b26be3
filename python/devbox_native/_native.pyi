"""Type stubs and user documentation for the Rust extension ``devbox_native._native``."""

import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NotRequired, TypedDict, final

__version__: Final[str]

class TokenInfo(TypedDict):
    """What the workspace says about a token (never its value)."""

    token_id: str
    creation_time: int
    expiry_time: int
    comment: str | None

class PendingRevocation(TypedDict):
    """A replaced token the broker still has to revoke."""

    token_id: str
    expires_at: float
    """When it expires anyway (epoch seconds); after that it is dropped instead of revoked."""
    attempts: int
    """Failed attempts so far."""
    next_attempt_at: float
    """Not revoked (or retried) before this time (epoch seconds): at first ``replaced_at`` plus the grace period."""
    last_error: str | None
    replaced_at: float
    """When it was replaced (epoch seconds; 0 in caches written by older versions)."""
    held: bool
    """Held by a rotation still installing its replacement: not revoked, even with ``force``, until released."""

@final
class CreatedToken:
    """A freshly minted token. ``repr()`` masks ``token_value``."""

    @property
    def token_value(self) -> str: ...
    @property
    def token_id(self) -> str: ...
    @property
    def creation_time(self) -> int:
        """Creation time, epoch milliseconds."""
    @property
    def expiry_time(self) -> int:
        """Expiry time, epoch milliseconds (-1: never expires)."""
    @property
    def comment(self) -> str | None: ...

@final
class Config:
    """Resolved configuration, passed as ``config=`` to every network call.

    Resolution follows the Databricks SDK's order: keyword arguments, then ``DATABRICKS_*`` environment
    variables (never overwriting an argument; empty values ignored), then the config file, then host
    normalisation, then validation ("more than one authorization method"), then the credentials chain. It
    happens here, so a configuration that cannot work raises ``ConfigError`` with the SDK's message and a
    masked ``Config: ... Env: ...`` suffix. No network call is made here: strategies that fetch a token
    (``oauth-m2m``, ``env-oidc``, ``file-oidc``, ``metadata-service``, ``databricks-cli``) do it at the first
    call, and a failure then is an ``AuthError`` naming the strategy. ``repr()`` masks every sensitive attribute.

    The config file (``config_file``, ``DATABRICKS_CONFIG_FILE`` or ``~/.databrickscfg``) is read when a profile
    is named or when neither ``host`` nor any credential is set yet. The profile is ``profile`` /
    ``DATABRICKS_CONFIG_PROFILE``, else ``[__settings__] default_profile``, else ``DEFAULT`` if it has keys;
    a named profile that is missing, or a malformed file, is a ``ConfigError`` naming the file (and line).

    Strategies, in order: ``pat``, ``basic``, ``metadata-service``, ``oauth-m2m``, ``env-oidc``, ``file-oidc``,
    ``databricks-cli``.

    Args:
        host: Workspace URL, with or without ``https://``.
        account_id: Account id.
        token: Personal access token (``pat``).
        token_audience: Audience of OIDC ID tokens (kept for the SDK's checks).
        oidc_token_env: Name of the env var holding the OIDC ID token (``env-oidc``; default
            ``DATABRICKS_OIDC_TOKEN``).
        oidc_token_filepath: File holding the OIDC ID token (``file-oidc``).
        username: Basic auth user (``basic``).
        password: Basic auth password (``basic``).
        client_id: OAuth client id (``oauth-m2m``; the service principal for ``env-oidc``/``file-oidc``).
        client_secret: OAuth client secret (``oauth-m2m``).
        profile: ``~/.databrickscfg`` profile name.
        config_file: Path of the config file (``~`` is expanded).
        databricks_cli_path: The ``databricks`` CLI to run (``databricks-cli``; default ``databricks`` on PATH).
        auth_type: Use only this credentials strategy.
        metadata_service_url: Local metadata service URL (``metadata-service``; sensitive).
        workspace_id: Workspace id.
        http_timeout_seconds: Timeout of one HTTP attempt (default 60), capped by what is left of the budget.
        retry_timeout_seconds: Budget for one call, retries included (default 300): a call never takes longer.

    ``host`` is parsed with WHATWG URL rules and must be ``scheme://host[:port][/path]`` (``https://`` is added
    when no scheme is given); credentials, a query, a backslash, a missing host or an invisible character is a
    ``ValueError``. A host that is not plain ASCII is kept in its IDNA (``xn--``) form: the host shown is the host
    contacted. Every sync call made with a configuration can be interrupted with Ctrl-C (``KeyboardInterrupt``,
    the request aborted).
    """

    def __new__(
        cls,
        *,
        host: str | None = None,
        account_id: str | None = None,
        token: str | None = None,
        token_audience: str | None = None,
        oidc_token_env: str | None = None,
        oidc_token_filepath: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        profile: str | None = None,
        config_file: str | None = None,
        databricks_cli_path: str | None = None,
        auth_type: str | None = None,
        metadata_service_url: str | None = None,
        workspace_id: str | None = None,
        http_timeout_seconds: float | None = None,
        retry_timeout_seconds: float | None = None,
    ) -> Config: ...
    @property
    def host(self) -> str | None:
        """The normalised workspace URL."""
    @property
    def auth_type(self) -> str | None:
        """The credentials strategy chosen (``pat``, ``basic``, ``oauth-m2m``, ``databricks-cli``, ...)."""
    @property
    def http_timeout_seconds(self) -> float: ...
    @property
    def retry_timeout_seconds(self) -> float: ...
    def get(self, name: str) -> str | None:
        """A resolved attribute by name; sensitive ones come back as ``***``."""
    def debug_string(self) -> str:
        """The SDK's ``Config: host=..., token=***. Env: ...`` string."""

def generate_spn_token(duration_seconds: int = 3600, *, config: Config | None = None) -> str:
    """Mint a personal access token for the configured identity, like the DevBox app's function.

    Credentials are found the way ``databricks.sdk.WorkspaceClient()`` finds them (see `Config`: environment,
    ``~/.databrickscfg``, then ``pat``, ``basic``, ``metadata-service``, ``oauth-m2m``, ``env-oidc``,
    ``file-oidc``, ``databricks-cli``). OAuth access tokens are cached in-process and refreshed before expiry.

    Args:
        duration_seconds: Token lifetime (default 3600). ``CLAUDE_CODE_TOKEN_EXPIRY_SECONDS``, when set,
            overrides it, as in the app, read exactly as Python's ``int()`` reads it (``' 3600 '``, ``'+3600'``,
            ``'3_600'``, other scripts' digits).

    Returns:
        The token value.

    Raises:
        TypeError: ``duration_seconds`` is not an int.
        ValueError: the lifetime is not a positive whole number (naming the parameter or env var).
        ConfigError: credentials cannot be configured (the SDK's message, secrets masked).
        AuthError: OAuth authentication failed (or discovery named a token endpoint on another origin).
        ApiError: the Token API refused (e.g. ``QuotaExceeded``).
        TransportError: the host does not resolve, refused connections for 10 s, TLS failed, or the response was
            malformed or over 8 MiB.
        DevboxTimeoutError: the retry budget ran out (also while fetching an OAuth token); a ``TimeoutError``
            too, whose ``__cause__`` is the last error.

    Keyword Args:
        config: Use this configuration instead of resolving one from the environment.
    """

def generate_spn_token_async(duration_seconds: int = 3600, *, config: Config | None = None) -> Awaitable[str]:
    """Async version of :func:`generate_spn_token`."""

def create_token(
    lifetime_seconds: int | None = None,
    comment: str | None = None,
    *,
    config: Config | None = None,
    auto_cleanup: bool = False,
    cache_path: str | os.PathLike[str] | None = None,
) -> CreatedToken:
    """Mint a token with the default configuration (``POST /api/2.0/token/create``).

    Args:
        lifetime_seconds: Lifetime in seconds; None lets the workspace decide.
        comment: A comment stored with the token.

    Keyword Args:
        config: Use this configuration instead of resolving one from the environment.
        auto_cleanup: On ``QUOTA_EXCEEDED``, revoke this library's stale tokens (``devbox-native-`` comments,
            never a token the broker cache records: current, minted, pending or held) and retry once. When that
            cache cannot be read there is no automatic cleanup (a warning says why).
        cache_path: The broker cache whose tokens ``auto_cleanup`` keeps (None: the default cache file).

    Raises:
        QuotaExceeded: the identity holds too many tokens; the message says how many are live and how to
            clean up.
    """

def create_token_async(
    lifetime_seconds: int | None = None,
    comment: str | None = None,
    *,
    config: Config | None = None,
    auto_cleanup: bool = False,
    cache_path: str | os.PathLike[str] | None = None,
) -> Awaitable[CreatedToken]:
    """Async version of :func:`create_token`."""

def list_tokens(*, config: Config | None = None) -> list[TokenInfo]:
    """The caller's live tokens (``GET /api/2.0/token/list``), metadata only."""

def list_tokens_async(*, config: Config | None = None) -> Awaitable[list[TokenInfo]]:
    """Async version of :func:`list_tokens`."""

def delete_token(token_id: str, *, config: Config | None = None) -> None:
    """Revoke a token by id (``POST /api/2.0/token/delete``)."""

def delete_token_async(token_id: str, *, config: Config | None = None) -> Awaitable[None]:
    """Async version of :func:`delete_token`."""

def ensure_https_url(url: str) -> str:
    """``https://`` + host when no scheme is given; an existing scheme is kept (never doubled); no trailing
    slash, no default ``:443``.

    Raises:
        ValueError: ``url`` is not a host or http(s) URL.
    """

def setup_databricks_cfg(*, root_dir: str | os.PathLike[str] | None = None) -> None:
    """Write ``<root_dir>/.databrickscfg`` (``[DEFAULT]`` host, client_id, client_secret) from the environment.

    Args:
        root_dir: Folder to write into; None means the home folder.

    Raises:
        MissingEnvVarError: ``DATABRICKS_HOST``, ``DATABRICKS_CLIENT_ID`` or ``DATABRICKS_CLIENT_SECRET`` is
            not set (also a ``KeyError``).
        ValueError: a value contains a line break.
        FileError: (an ``OSError``, with ``filename``) the file cannot be written (the old one is left as it was).
    """

def make_config(
    databricks_token: str,
    root_dir: str | os.PathLike[str] | None = None,
    *,
    host: str | None = None,
    model: str = "databricks-claude-sonnet-4",
) -> dict[str, Any]:
    """The Claude Code Router config as a dict (see CCR-CONFIG.md for its structure).

    Args:
        databricks_token: The token CCR sends as ``Authorization: Bearer``.
        root_dir: The folder holding ``.claude-code-router`` (None: the home folder).
        host: Workspace host with or without scheme (None: ``DATABRICKS_HOST``).
        model: Serving endpoint name.
    """

def get_databricks_transformers_js() -> str:
    """The JavaScript source of the CCR transformer plugin ``databricks-custom``."""

def write_ccr_config(
    databricks_token: str,
    root_dir: str | os.PathLike[str] | None = None,
    *,
    host: str | None = None,
    model: str = "databricks-claude-sonnet-4",
    gateway_url: str | None = None,
) -> Path:
    """Write ``<root>/.claude-code-router/config.json`` and the plugin, atomically and 0600 (folders 0700).

    With ``gateway_url`` (gateway mode, e.g. the ``url`` of the loopback credential gateway), the ``databricks``
    provider points at ``<gateway_url>/serving-endpoints/<model>/invocations`` and ``databricks_token`` is the
    gateway key it presents, so the file never holds a Databricks token and a new token never needs a CCR
    restart; ``host`` is not used. The structure is otherwise exactly the one without a gateway.

    Returns:
        The path of ``config.json``.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: empty token or one with whitespace, bad host, gateway_url or model (naming the parameter).
        MissingEnvVarError: ``host`` and ``gateway_url`` are None and ``DATABRICKS_HOST`` is not set.
        FileError: (an ``OSError``, with ``filename``) a file cannot be written (files already there are left
            byte-identical), or a target is not trusted (another user's file, symlink or folder; see the README's
            "Security model"). Every target is checked first, and what a failed call created is removed again.
    """

def update_ccr_token(
    token: str,
    root_dir: str | os.PathLike[str] | None = None,
    *,
    host: str | None = None,
    model: str = "databricks-claude-sonnet-4",
    gateway_url: str | None = None,
) -> Path:
    """Put ``token`` into ``<root>/.claude-code-router/config.json``, changing nothing else.

    With ``gateway_url`` (gateway mode), ``token`` is the gateway key and every ``databricks`` provider's
    ``api_base_url`` is moved onto the gateway too (its path from ``/serving-endpoints/`` on is kept); a missing
    file gets the gateway-mode config of :func:`write_ccr_config`.

    Only the ``api_key`` of the provider named ``databricks`` is replaced; every other key, provider and value
    is kept, in its order (numbers keep their exact text, e.g. ``1e-07``), and the file is written as
    ``json.dump(indent=2)`` writes it. The update holds the file's cross-process lock (``config.json.lock``)
    across read-modify-write, replaces the file atomically (0600; a looser file is tightened and a warning
    logged) and writes through a symlink to its target when the link and its target are yours (or root's).
    Every target is checked first (see the README's "Security model"): a file, symlink or folder another user
    controls is refused, and a refused or failed call leaves the folder as it found it. When the
    ``databricks`` provider's ``api_base_url`` is not on the workspace host, a warning is logged.

    Args:
        token: The new token.
        root_dir: The folder holding ``.claude-code-router`` (None: the home folder).
        host: Workspace host (None: ``DATABRICKS_HOST``): written when the file does not exist, else compared
            with the provider's URL.
        model: Only used when the file does not exist: serving endpoint name.

    Returns:
        The path of ``config.json``. When it did not exist, the full config and the plugin were written, as
        :func:`write_ccr_config` does.

    Raises:
        ConfigError: the file is not JSON, or has no ``Providers`` entry named ``databricks`` (the message names
            the file, which is left untouched).
        ValueError: the token is empty or holds whitespace.
        MissingEnvVarError: the file is missing, ``host`` is None and ``DATABRICKS_HOST`` is not set.
        FileError: (an ``OSError``, with ``filename``) the file cannot be read or written, or is not trusted (the
            message names the path and why).
    """

def _check_path(path: str | os.PathLike[str], *, folder: bool = False) -> list[tuple[Path, str, bool]]:
    """Why a private file (or, with ``folder``, a folder written into) is not trusted, for ``doctor``.

    Returns:
        One ``(path, problem, fixable)`` per finding, empty when trusted. ``fixable``: yours and only too loose
        (the next write tightens it); anything else is refused by every writer.
    """

def _ccr_view(path: str | os.PathLike[str], broker: TokenBroker | None = None, *, key: bool = False) -> dict[str, Any]:
    """CCR's ``config.json`` as rotation reads it (the same trust-checked read), for ``doctor``.

    Returns:
        ``state`` (``"missing"``, ``"invalid"`` or ``"ok"``), ``reason`` (why invalid, never the file's text),
        ``host`` and ``port`` (where CCR listens: the config's ``HOST``/``PORT``, a port as a number or a string
        of digits up to 65535, else ``127.0.0.1``:3456), ``providers`` (how many ``databricks`` providers) and
        ``holds`` (whether every one holds ``broker``'s cached token; None without a broker or a cached token).
        With ``key`` and ``holds`` False, also ``api_key``: the first of those providers' keys that is not the
        broker's (None: not a string).

    Raises:
        FileError: (an ``OSError``, with ``filename``) the file cannot be read, or it, a symlink to it or a folder
            above it is not trusted (a FIFO, another user's file).
    """

def update_databricks_cfg(
    values: Mapping[str, str],
    *,
    profile: str = "DEFAULT",
    root_dir: str | os.PathLike[str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Path:
    """Set keys of one profile of ``.databrickscfg``, keeping other profiles, keys and comments.

    The file is ``config_file``, else ``<root_dir>/.databrickscfg``, else the one :class:`Config` reads:
    ``DATABRICKS_CONFIG_FILE``, else ``~/.databrickscfg`` (``~`` expanded in both, as the reader does).

    A line-based edit: an existing key (matched case-insensitively, as ``configparser`` does) is replaced in
    place, a missing one is added after the profile's last key, a missing profile is appended, a missing file
    is created. Same locking, atomicity, 0600 and symlink rules as :func:`update_ccr_token`.

    Args:
        values: Keys and values to set, e.g. ``{"token": "dapi..."}``.
        profile: The profile (section) name.
        root_dir: The folder holding ``.databrickscfg`` (None: the file ``Config()`` reads).
        config_file: The file to edit (not together with ``root_dir``).

    Returns:
        The path of the file edited.

    Raises:
        ValueError: a bad profile name, key, or a value that is empty, has surrounding whitespace or a line
            break (values are never shown in the message); both ``config_file`` and ``root_dir``.
        ConfigError: the profile or a key appears twice, or the file is not UTF-8 (file left untouched).
        FileError: (an ``OSError``, with ``filename``) the file cannot be read or written, or it, a symlink to it
            or a folder above it is not trusted (see the README's "Security model"; the message names the path and
            why).
    """

def cleanup_tokens(
    comment_prefix: str = "devbox-native-",
    older_than: int | None = None,
    include_app_tokens: bool = False,
    *,
    config: Config | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Revoke the stale tokens this library minted (``GET token/list``, then ``POST token/delete`` each).

    Only tokens whose comment starts with ``comment_prefix`` are revoked (and, with ``include_app_tokens``, the
    DevBox app's ``sdk-<time_ns>`` tokens); every token the broker's cache file records (the current token,
    ``minted``, ``pending`` and held ones, of every entry) is always kept. A token revoked by someone else
    meanwhile counts as revoked.

    Args:
        comment_prefix: Comment prefix of the tokens to revoke (must not be empty).
        older_than: Only tokens created at least this many seconds ago.
        include_app_tokens: Also the app's ``sdk-`` tokens (with no ``older_than`` this includes the one the
            running app uses).

    Keyword Args:
        config: Use this configuration instead of resolving one from the environment.
        cache_path: The broker cache whose tokens are kept (None: the default cache file).
        dry_run: Revoke nothing; return what would be revoked.

    Returns:
        The revoked token ids.

    Raises:
        ValueError: an empty prefix or a negative ``older_than``.
        ApiError: listing failed, or a revocation failed (the first error; the others were still tried).
    """

def cleanup_tokens_async(
    comment_prefix: str = "devbox-native-",
    older_than: int | None = None,
    include_app_tokens: bool = False,
    *,
    config: Config | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
) -> Awaitable[list[str]]:
    """Async version of :func:`cleanup_tokens`."""

@final
class TokenBroker:
    """A token shared by every process of the user, refreshed before it expires.

    ``kind`` chooses the token: ``"oauth"`` hands out the configured identity's OAuth access token (strategies
    ``oauth-m2m``, ``env-oidc``, ``file-oidc``, ``metadata-service``, ``databricks-cli``): nothing is minted and
    nothing revoked, the token is kept in the same cache under the same lock. ``"pat"`` mints personal access
    tokens as described below. ``"auto"`` (the default) is ``"oauth"`` when the strategy yields one, else
    ``"pat"``. The cache entry key includes the kind.

    ``get()`` returns the cached token while it has more than ``refresh_margin`` seconds left; otherwise it
    takes the cache's cross-process lock, reads the cache again and only then mints
    (``comment="<comment_prefix>broker-<ms>"``), so when many processes find the token stale at once exactly one
    mints. The cache is a 0600 JSON file (folder 0700) with one entry per host and identity (the principal:
    see :attr:`identity`). The token a new one replaced stays valid for ``revoke_grace`` seconds (whoever got it
    just before, in any process, keeps working), then the next ``get()`` of any process revokes it; a failed
    revocation is kept in the cache and retried by a later ``get()`` (the next one at once, then backing off
    from 30 s to an hour), and never fails ``get()``. Tokens the broker did not mint are never revoked. A mint
    whose caller was cancelled (asyncio, a rotation's ``stop()``) after the server created the token records it
    as pending and revokes it when the answer arrives. When minting fails but the cached token has not expired
    yet, ``get()`` returns it (and logs a warning).

    A fresh cache hit needs no network, no lock and no async runtime.

    The cache is used only when it, its lock and its folders are yours (or root's) and not writable by others
    (see the README's "Security model"): another user's cache file is ignored with a warning; a folder or
    symlink another user controls makes ``get()`` raise ``OSError`` before anything is minted. A corrupt cache
    is kept aside as ``token.json.corrupt-<ms>`` (0600); one written by a newer version is never overwritten
    (``ConfigError``). The file is opened without blocking and must be a regular file.

    Args:
        lifetime_seconds: Lifetime of minted tokens (default 3600).
        refresh_margin: Replace the token when less than this is left (default 600 for PATs, 900 for OAuth tokens
            (of their hour); less than the lifetime). ``get()`` always returns more than this.
        cache_path: The cache file (default ``$XDG_CACHE_HOME/devbox-native/token.json``, else
            ``~/.cache/devbox-native/token.json``; both variables are taken as bytes, never re-encoded).

    Keyword Args:
        config: Use this configuration instead of resolving one from the environment.
        comment_prefix: Comment prefix of minted tokens.
        auto_cleanup: On ``QUOTA_EXCEEDED``, revoke this library's stale tokens (never one the cache records)
            and retry once.
        revoke_grace: Seconds a replaced token stays valid before it is revoked (default 300: more than a
            rotation's 30 s look at the cache plus a CCR restart, and than Claude Code's 5-minute
            ``apiKeyHelper`` interval). 0 revokes at once.
        kind: ``"auto"``, ``"oauth"`` or ``"pat"``.

    Raises:
        ValueError: bad lifetime, margin, grace or kind (naming the parameter).
        ConfigError: credentials cannot be configured, or ``kind="oauth"`` with a strategy that yields no OAuth
            token (``pat``, ``basic``; the message names it).
    """

    def __new__(
        cls,
        lifetime_seconds: int | None = None,
        refresh_margin: int | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        *,
        config: Config | None = None,
        comment_prefix: str = "devbox-native-",
        auto_cleanup: bool = False,
        revoke_grace: int | None = None,
        kind: Literal["auto", "oauth", "pat"] = "auto",
    ) -> TokenBroker: ...
    def get(self) -> str:
        """A token with more than ``refresh_margin`` seconds left.

        Raises:
            ApiError: minting failed and there is no unexpired cached token (e.g. ``QuotaExceeded``).
            FileError: (an ``OSError``, with ``filename``) the cache file cannot be read or written.
        """
    def get_async(self) -> Coroutine[Any, Any, str]:
        """Async version of :meth:`get`."""
    def force_refresh(self, replacing: str | None = None) -> str:
        """Mint a new token now (whatever the cache holds); the one it replaces is revoked after ``revoke_grace``.

        Args:
            replacing: Mint only if the cached token is still this id; if another process replaced it already,
                return that token instead.
        """
    def force_refresh_async(self, replacing: str | None = None) -> Coroutine[Any, Any, str]:
        """Async version of :meth:`force_refresh`."""
    def is_current(self, token: str) -> bool:
        """Whether ``token`` is the cached token of this identity (e.g. the one in CCR's config)."""
    def revoke_pending(self, force: bool = False) -> list[str]:
        """Revoke the replaced tokens that are due (with ``force`` all of them, grace period or not, except those
        a rotation holds); returns the revoked ids."""
    @property
    def token_id(self) -> str | None:
        """The cached token's id, or None."""
    @property
    def expires_at(self) -> float | None:
        """When the cached token expires (epoch seconds), or None."""
    @property
    def created_at(self) -> float | None:
        """When the cached token was minted (epoch seconds), or None."""
    @property
    def pending_revocations(self) -> list[PendingRevocation]:
        """Replaced tokens still to revoke."""
    @property
    def cache_path(self) -> Path: ...
    @property
    def lifetime_seconds(self) -> int: ...
    @property
    def refresh_margin(self) -> int: ...
    @property
    def revoke_grace(self) -> int:
        """Seconds a replaced token stays valid before it is revoked."""
    @property
    def host(self) -> str:
        """The workspace URL."""
    @property
    def identity(self) -> str:
        """Who the tokens are for, without secrets: ``pat:<sha256 prefix>``, ``oauth-m2m:<client id>``,
        ``basic:<username>``, ``env-oidc:<client id>:<hash of the ID token's issuer and subject>``,
        ``file-oidc:<client id>:<token file>``, ``metadata-service:<hash of the URL>``,
        ``databricks-cli:<hash of the CLI path or PATH, profile, config file and account id>``."""
    @property
    def kind(self) -> Literal["oauth", "pat"]:
        """The kind of token handed out (``"auto"`` resolved)."""
    @property
    def strategy(self) -> str:
        """The credentials strategy the tokens come from (``"oauth-m2m"``, ``"pat"``, ...)."""

def start_gateway(
    port: int = 0,
    *,
    config: Config | None = None,
    kind: Literal["auto", "oauth", "pat"] = "auto",
    cache_path: str | os.PathLike[str] | None = None,
    drain_seconds: int | None = None,
) -> Gateway:
    """Start the loopback credential gateway in this process (on the shared runtime) and return at once.

    It listens on ``127.0.0.1:<port>`` only and forwards ``/serving-endpoints/...`` and ``/ai-gateway/...``
    (path and query unchanged) to the workspace, replacing ``Authorization``, ``x-api-key`` and
    ``x-goog-api-key`` with ``Authorization: Bearer <fresh token>`` from a `TokenBroker` of ``kind``. Callers
    present the gateway key (``<cache dir>/gateway.key``, 0600, created on first start) in one of those headers;
    without it they get 401, and other paths get 404, neither forwarded. Bodies stream both ways. A 401/403 from
    the workspace on a request whose body was at most 8 MiB is retried once with a new token. The workspace
    unreachable gives 502 with a JSON body naming the cause. ``GET /health`` needs no key. The running gateway
    is recorded in ``<cache dir>/gateway.json`` (pid, port, url, started_at).

    Args:
        port: Port on 127.0.0.1; 0 picks a free one.
        config: Use this configuration instead of resolving one from the environment.
        kind: Which tokens to forward (see `TokenBroker`).
        cache_path: The broker's cache file; the gateway's files go in its folder.
        drain_seconds: How long ``stop()`` lets running requests finish (default 30).

    Raises:
        ConfigError: credentials cannot be configured, or another gateway runs on the same cache (the message
            names its pid and url).
        OSError: the port cannot be bound, or a file cannot be written.
        ValueError: a bad port or kind.
    """

@final
class Gateway:
    """A running credential gateway (`start_gateway`); a context manager that stops it on exit."""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
    @property
    def port(self) -> int: ...
    @property
    def kind(self) -> Literal["oauth", "pat"]:
        """The kind of token forwarded."""
    @property
    def key_path(self) -> Path:
        """The file holding the gateway key."""
    def stop(self) -> None:
        """Stop accepting connections, let running requests (streams included) finish for up to the drain time,
        then cut what is left and return. Idempotent."""
    def __enter__(self) -> Gateway: ...
    def __exit__(
        self, _exc_type: type[BaseException] | None = None, _exc: BaseException | None = None, _tb: Any = None
    ) -> bool: ...

def gateway_key(cache_path: str | os.PathLike[str] | None = None) -> str:
    """The gateway key of the cache folder of ``cache_path`` (created, 0600, when missing)."""

def running_gateway(cache_path: str | os.PathLike[str] | None = None) -> tuple[int, int, str, float] | None:
    """The gateway running on this cache, from ``gateway.json``: ``(pid, port, url, started_at)``, or None when
    none runs (a stale file of a dead gateway reads as none)."""

class RotationEvent(TypedDict):
    """A token installed in CCR by a rotation (``on_rotate``'s argument, ``rotate_now()``'s result)."""

    token_id: str
    """The new token's id."""
    expires_at: float
    """When it expires, epoch seconds."""
    replaced_token_id: str | None
    """The token CCR ran with before (revoked right after ``on_rotate`` returns), when known."""
    config_path: Path
    """The config.json written."""
    reason: Literal["refresh", "requested", "sync"]
    """``refresh``: the cached token was missing or inside the refresh margin; ``requested``: ``rotate_now()``;
    ``sync``: config.json held another token than the broker's (at start, or another process refreshed it)."""
    rotation: int
    """How many rotations this one makes (1 for the first)."""
    token: NotRequired[str]
    """The token itself: only with ``include_token=True``."""

class RotationFailure(TypedDict):
    """A failed rotation attempt (``on_error``'s argument)."""

    stage: Literal["cache", "mint", "write", "command", "port", "callback", "revoke"]
    """The step that failed."""
    error: Exception
    """The error (``ApiError``, ``HookError``, ``DevboxTimeoutError``, ``ConfigError``, ``FileError``, ...)."""
    attempt: int
    """Failures in a row, this one included."""
    next_attempt_at: float
    """When it is tried again, epoch seconds."""

def start_rotation(
    root_dir: str | os.PathLike[str] | None = None,
    on_rotate: Callable[[RotationEvent], object] | None = None,
    command: Sequence[str | os.PathLike[str]] | None = None,
    *,
    broker: TokenBroker | None = None,
    lifetime_seconds: int | None = None,
    refresh_margin: int | None = None,
    config: Config | None = None,
    port: int | None = None,
    restart_timeout: float = 30.0,
    retry_delay: float = 5.0,
    max_retry_delay: float = 300.0,
    on_error: Callable[[RotationFailure], object] | None = None,
    include_token: bool = False,
    event_loop: Any | None = None,
    env: Mapping[str, str] | None = None,
) -> Rotation:
    """Keep ``<root_dir>/.claude-code-router/config.json`` on a fresh broker token, on a background thread.

    When the broker's token enters its refresh margin (or is missing, or ``rotate_now()`` is called), a
    rotation mints a new token through the broker, with the replaced token's revocation held back; puts it into
    config.json with :func:`update_ccr_token` (every other key, the user's ``PORT`` included, stays); runs
    ``command`` (e.g. ``["ccr", "restart"]``) and waits until CCR's port answers again; calls ``on_rotate``; and
    only then releases the replaced token, which is revoked once the broker's ``revoke_grace`` has passed since
    it was replaced. When config.json holds a token other than the broker's current one (at start, or because
    another process refreshed the shared cache), the current token is installed the same way without minting
    (reason ``sync``); when it already holds it, nothing happens at start, unless the cache records that a
    rotation (killed meanwhile) wrote it but its command and port wait never succeeded: then they are run again.

    One rotation per broker cache: a rotation holds the cache's rotation lock (``<cache>.rotation.lock``, with
    its pid) for its life, and a second one on the same cache, in any process, is refused.

    A failed step is retried from that step (a failing ``on_rotate`` does not restart CCR again) after
    ``retry_delay`` seconds, doubling up to ``max_retry_delay``. Every failure is logged at WARNING (logger
    ``devbox_native``), passed to ``on_error`` and kept in ``last_error``/``last_error_stage``/``failures``
    with ``next_attempt_at``, until an attempt succeeds. The rotation runs until :meth:`Rotation.stop` (or the
    interpreter exits), even if the returned object is dropped. It is not inherited by a ``fork()``ed child.

    Args:
        root_dir: The folder holding ``.claude-code-router`` (default: the home folder). A missing config.json
            is written in full (the broker's host, the default model).
        on_rotate: Called on the rotation thread with a :class:`RotationEvent` after CCR runs with the new token
            and before the old one is revoked. If it raises, the step fails (``HookError``) and is retried.
        command: The hook, as an argument list (no shell), run with ``HOME=root_dir`` (where CCR looks for its
            config), stdin closed and its output captured (the last line, secrets masked, appears in the error
            when it fails), in a process group of its own. It must exit 0 within ``restart_timeout`` seconds,
            else its whole process group is killed. None runs nothing.

    Keyword Args:
        broker: The :class:`TokenBroker` to use (default: ``TokenBroker(lifetime_seconds, refresh_margin,
            config=config)`` with the default cache). Do not pass the other three with it.
        lifetime_seconds: Lifetime of minted tokens (default 3600).
        refresh_margin: Rotate when less than this is left of the token (default 600).
        config: Credentials to mint with (default: resolved from the environment).
        port: After ``command``, wait until this port answers (``HOST`` from config.json); None reads config.json's
            ``PORT`` (default 3456) after each write; 0 does not wait. Nothing is waited for without a command.
        restart_timeout: Seconds the command may run, and then seconds the port may take to answer.
        retry_delay: First wait after a failure, seconds.
        max_retry_delay: Longest wait between retries, seconds.
        on_error: Called on the rotation thread with a :class:`RotationFailure` for each failure; its own
            exceptions are logged and ignored.
        include_token: Put the token itself into the events (key ``token``). Off by default: events are safe to
            log.
        event_loop: An asyncio loop to run coroutine callbacks on (``start_rotation_async`` passes the running
            one). Without it, a callback returning a coroutine fails the step.
        env: The command's whole environment (``HOME`` is still set to ``root_dir``). None: this process's
            environment without the Databricks secrets (``DATABRICKS_TOKEN``, ``DATABRICKS_CLIENT_SECRET``,
            ``DATABRICKS_PASSWORD``, the OIDC token variables; see README "Secrets").

    Returns:
        The running :class:`Rotation`.

    Raises:
        ValueError: a bad ``port``, timeout or delay, ``broker`` together with its settings, or a bad ``env`` name.
        TypeError: ``command`` is a string rather than a list, a callback is not callable, or ``env`` is not a
            mapping of str to str.
        ConfigError: credentials cannot be configured.
        RuntimeError: another rotation runs on the same broker cache (the message names its pid).
    """

@final
class Rotation:
    """A running token rotation (see :func:`start_rotation`). A context manager (sync and async) that stops it.

    ``stop()`` wakes the thread at once and cancels a mint or port wait in flight; it lets a revocation (3 s per
    token) and a running hook command (within ``restart_timeout``) finish, and waits for an ``on_rotate`` call in
    progress. In a ``fork()``ed child the rotation is not running and ``stop()`` returns at once.
    """

    def stop(self) -> None:
        """Stop the rotation and wait for its thread to end. Idempotent; callable from ``on_rotate`` too."""
    def stop_async(self) -> Coroutine[Any, Any, None]:
        """Async version of :meth:`stop`."""
    def rotate_now(self, timeout: float | None = None) -> RotationEvent:
        """Rotate now (a new token even if the current one is fresh) and wait for the attempt.

        Args:
            timeout: Wait at most this many seconds (the attempt goes on); None waits for it.

        Returns:
            The event of the token installed (a revocation failing afterwards only sets ``last_error``).

        Raises:
            The attempt's error (the rotation keeps retrying in the background); ``DevboxTimeoutError`` after
            ``timeout``; ``NotRunningError`` when the rotation is stopped or inherited across ``fork()``.
        """
    def rotate_now_async(self, timeout: float | None = None) -> Coroutine[Any, Any, RotationEvent]:
        """Async version of :meth:`rotate_now`."""
    def __enter__(self) -> Rotation: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> None: ...
    def __aenter__(self) -> Coroutine[Any, Any, Rotation]: ...
    def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None, /
    ) -> Coroutine[Any, Any, None]: ...
    @property
    def running(self) -> bool:
        """Whether the rotation thread runs (False after ``stop()`` and in a ``fork()``ed child)."""
    @property
    def rotations(self) -> int:
        """Tokens installed so far."""
    @property
    def last_error(self) -> Exception | None:
        """The last failure, until an attempt succeeds."""
    @property
    def last_error_stage(self) -> str | None:
        """The step of the last failure: ``cache``, ``mint``, ``write``, ``command``, ``port``, ``callback``,
        ``revoke``."""
    @property
    def failures(self) -> int:
        """Failures in a row (0 when the last attempt succeeded)."""
    @property
    def next_attempt_at(self) -> float | None:
        """When the next rotation (or retry) is planned, epoch seconds."""
    @property
    def last_rotation(self) -> RotationEvent | None:
        """The last token installed."""
    @property
    def broker(self) -> TokenBroker: ...
    @property
    def config_path(self) -> Path:
        """The config.json kept up to date."""
    @property
    def command(self) -> list[str] | None: ...

def known_agents() -> list[tuple[str, str, bool]]:
    """The coding agents :func:`devbox_native.configure_agents` knows: ``(name, program, needs_gateway)`` each, in
    order: ``("claude-code", "claude", False)``, ``("codex", "codex", False)``, ``("gemini", "gemini", True)``,
    ``("opencode", "opencode", True)``."""

def agent_config_file(agent: str, *, root_dir: str | os.PathLike[str] | None = None) -> Path:
    """The file :func:`configure_agent` writes for ``agent`` and the agent reads: under ``root_dir`` when given
    (``<root>/.claude/settings.json``, ``<root>/.codex/config.toml``, ``<root>/.gemini/.env``,
    ``<root>/.config/opencode/opencode.json``; the agents' variables do not apply), else where the agent's own
    variable puts it when set (``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``, ``GEMINI_CLI_HOME``,
    ``OPENCODE_CONFIG_DIR``/``OPENCODE_CONFIG``/``XDG_CONFIG_HOME``), else under the home folder.

    Raises:
        ValueError: an unknown agent, or its variable holds a relative path (or, for ``CLAUDE_CONFIG_DIR``, is
            empty), which the agent would resolve from wherever it starts; the message names the variable.
        ConfigError: ``root_dir`` is None and there is no home folder.
    """

def configure_agent(
    agent: str,
    *,
    helper: list[str],
    root_dir: str | os.PathLike[str] | None = None,
    host: str | None = None,
    route: str = "serving-endpoints",
    model: str | None = None,
    gateway_url: str | None = None,
    gateway_key_file: str | os.PathLike[str] | None = None,
) -> tuple[Path, bool, list[str]]:
    """Write one agent's configuration (the core of :func:`devbox_native.configure_agents`, which picks
    ``helper`` and the gateway for you).

    The agent's files are merged, never overwritten: only our keys are set, every other key, comment (TOML) and
    order stays. Each file is replaced atomically, 0600 from the first byte, under its sidecar lock
    (``<file>.lock``), through a symlink to its target; folders we create are 0700. No Databricks token is
    written: ``claude-code`` and ``codex`` run ``helper`` + ``token get``; ``gemini`` and ``opencode`` use the
    gateway key.

    Args:
        agent: ``claude-code``, ``codex``, ``gemini`` or ``opencode``.
        helper: The command that prints a token without ``token get``: an absolute program and its leading
            arguments (e.g. ``["/app/.venv/bin/devbox-native"]``).
        root_dir: The folder holding the agents' folders (None: where the agent reads, see
            :func:`agent_config_file`).
        host: The workspace (None: ``DATABRICKS_HOST``); ``https://`` is added when there is no scheme.
        route: ``serving-endpoints`` or ``ai-gateway``.
        model: The model (None: the agent's default).
        gateway_url: The loopback gateway (``gemini`` and ``opencode`` only, required there).
        gateway_key_file: The gateway key's file (``gemini`` and ``opencode`` only, required there).

    Returns:
        The agent's main file, whether a file changed, and warnings (e.g. a removed ``ANTHROPIC_API_KEY``).

    Raises:
        ValueError: an unknown agent or route (naming it and listing the valid ones), a helper that is not
            absolute, a bad host, model or gateway URL.
        ConfigError: a file that is not valid JSON/TOML (named; left untouched), or a gateway agent without a
            gateway (the message says how to start one).
        MissingEnvVarError: ``host`` is None and ``DATABRICKS_HOST`` is not set.
        OSError: a file cannot be read or written.
    """

def unconfigure_agent(agent: str, *, root_dir: str | os.PathLike[str] | None = None) -> tuple[Path, bool]:
    """Take out of one agent's files what :func:`configure_agent` put there; everything else stays, and a
    missing file stays missing. Returns the agent's main file and whether a file changed."""

def materialize_configs(databricks_token: str, *, root_dir: str | os.PathLike[str] | None = None) -> None:
    """The app's ``materialize_configs``: :func:`write_ccr_config` under the home folder."""

def refresh_logging() -> None:
    """Re-read Python logger levels (they are cached) and install the log bridge if ``logging`` is loaded.

    Call it after changing the level of the ``devbox_native`` logger (or its parents) at run time.
    """

def install_ccr3_provider(
    api_key: str,
    root_dir: str | os.PathLike[str] | None = None,
    *,
    gateway_url: str | None = None,
    host: str | None = None,
    model: str = "databricks-claude-sonnet-4",
    web_token: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Install or update the ``databricks`` provider of Claude Code Router 3.x under ``root_dir``.

    The provider speaks the Anthropic-messages protocol at ``<gateway_url>/serving-endpoints/anthropic`` (or
    ``<host>/...`` without a gateway) with ``api_key`` (the gateway key in gateway mode), serves ``model``, and
    the Claude Code profile's model becomes ``databricks/<model>`` when it is unset (3.x's router default).

    * Before CCR 3.x's first start (no ``config.sqlite``): writes ``config.json`` (0600) in the form 3.x imports
      once into its store (``mode`` ``"config.json"``). An existing config.json keeps its other providers and
      settings; ours replaces any provider named ``databricks`` (a file that is not JSON is left untouched).
    * Once ``config.sqlite`` exists (the file is never written): reads the running service's management URL
      from ``service.json``, calls ``getConfig``, changes only our provider (and the profile's model if unset)
      and calls ``saveConfig``, which CCR applies live, without a restart (``mode`` ``"rpc"``).

    Args:
        api_key: What the provider presents (the gateway key, or a token).
        root_dir: The folder holding ``.claude-code-router`` (None: the home folder).
        gateway_url: The credential gateway's URL.
        host: Without ``gateway_url``: the workspace host (None: ``DATABRICKS_HOST``).
        model: The serving endpoint name.
        web_token: The management token (None: ``CCR_WEB_AUTH_TOKEN``, else the one in service.json's url).
        timeout: Seconds for each RPC call.

    Returns:
        ``{"mode", "path", "rpc_url", "added", "set_default"}``: ``path`` is the written config.json (None over
        the RPC), ``rpc_url`` the RPC endpoint (None for config.json), ``added`` whether the provider was new,
        ``set_default`` whether the profile's model was set.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: bad api_key, gateway_url, host, model or timeout (naming the parameter).
        ConfigError: CCR 3.x is not running (service.json missing or corrupt, the RPC does not answer: the
            message names the URL tried and says to run ``ccr start``) or refused the management token;
            nothing was changed.
        OSError: config.json cannot be written.
    """

def get_ccr3_config(
    root_dir: str | os.PathLike[str] | None = None,
    *,
    web_token: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """The running CCR 3.x's config through its management RPC (``getConfig``).

    Returns:
        ``{"rpc_url", "pid", "config"}`` (``pid`` from service.json, or None). The config holds the providers'
        keys: do not log it.

    Raises:
        ConfigError: CCR 3.x is not running or refused the token (as :func:`install_ccr3_provider`).
        ValueError: a bad timeout.
    """
