"""Type stubs and user documentation for the Rust extension ``devbox_native._native``."""

import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Final, TypedDict, final

__version__: Final[str]

class TokenInfo(TypedDict):
    """What the workspace says about a token (never its value)."""

    token_id: str
    creation_time: int
    expiry_time: int
    comment: str | None

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
        http_timeout_seconds: Timeout of one HTTP attempt (default 60).
        retry_timeout_seconds: Budget for one call, retries included (default 300).
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

def generate_spn_token(duration_seconds: int | None = None, *, config: Config | None = None) -> str:
    """Mint a personal access token for the configured identity, like the DevBox app's function.

    Credentials are found the way ``databricks.sdk.WorkspaceClient()`` finds them (see `Config`: environment,
    ``~/.databrickscfg``, then ``pat``, ``basic``, ``metadata-service``, ``oauth-m2m``, ``env-oidc``,
    ``file-oidc``, ``databricks-cli``). OAuth access tokens are cached in-process and refreshed before expiry.

    Args:
        duration_seconds: Token lifetime (default 3600). ``CLAUDE_CODE_TOKEN_EXPIRY_SECONDS``, when set,
            overrides it, as in the app.

    Returns:
        The token value.

    Raises:
        TypeError: ``duration_seconds`` is not an int.
        ValueError: the lifetime is not a positive whole number (naming the parameter or env var).
        ConfigError: credentials cannot be configured (the SDK's message, secrets masked).
        AuthError: OAuth authentication failed.
        ApiError: the Token API refused (e.g. ``QuotaExceeded``).
        TimeoutError: the retry budget ran out.

    Keyword Args:
        config: Use this configuration instead of resolving one from the environment.
    """

def generate_spn_token_async(duration_seconds: int | None = None, *, config: Config | None = None) -> Awaitable[str]:
    """Async version of :func:`generate_spn_token`."""

def create_token(
    lifetime_seconds: int | None = None, comment: str | None = None, *, config: Config | None = None
) -> CreatedToken:
    """Mint a token with the default configuration (``POST /api/2.0/token/create``).

    Args:
        lifetime_seconds: Lifetime in seconds; None lets the workspace decide.
        comment: A comment stored with the token.
    """

def create_token_async(
    lifetime_seconds: int | None = None, comment: str | None = None, *, config: Config | None = None
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
        OSError: the file cannot be written (the old one is left as it was).
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
) -> Path:
    """Write ``<root>/.claude-code-router/config.json`` and the plugin, atomically and 0600 (folders 0700).

    Returns:
        The path of ``config.json``.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: empty token or one with whitespace, bad host or model (naming the parameter).
        MissingEnvVarError: ``host`` is None and ``DATABRICKS_HOST`` is not set.
        OSError: a file cannot be written (files already there are left byte-identical).
    """

def materialize_configs(databricks_token: str, *, root_dir: str | os.PathLike[str] | None = None) -> None:
    """The app's ``materialize_configs``: :func:`write_ccr_config` under the home folder."""

def refresh_logging() -> None:
    """Re-read Python logger levels (they are cached) and install the log bridge if ``logging`` is loaded.

    Call it after changing the level of the ``devbox_native`` logger (or its parents) at run time.
    """
