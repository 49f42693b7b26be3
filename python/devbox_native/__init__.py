"""devbox_native: Databricks tokens and Claude Code Router config for coding assistants in a Databricks App.

A drop-in for the DevBox app's start-up functions (``app/vibe_code.py``) with a Rust core: same names,
signatures and results, without the Databricks SDK, and with atomic, private (0600) file writes. On top: a
merge-preserving config store (``update_ccr_token``, ``update_databricks_cfg``), a cross-process token broker
(``TokenBroker``), token hygiene (``cleanup_tokens``) and token rotation for a running Claude Code Router
(``start_rotation``).
"""

from devbox_native._agents import configure_agents, unconfigure_agents
from devbox_native._aio import (
    cleanup_tokens_async,
    create_token_async,
    delete_token_async,
    generate_spn_token_async,
    list_tokens_async,
    start_rotation_async,
)
from devbox_native._native import (
    Config,
    CreatedToken,
    Rotation,
    TokenBroker,
    __version__,
    cleanup_tokens,
    create_token,
    delete_token,
    ensure_https_url,
    generate_spn_token,
    get_databricks_transformers_js,
    list_tokens,
    make_config,
    materialize_configs,
    refresh_logging,
    setup_databricks_cfg,
    start_rotation,
    update_ccr_token,
    update_databricks_cfg,
    write_ccr_config,
)
from devbox_native.errors import (
    ApiError,
    AuthError,
    ConfigError,
    DevboxError,
    HookError,
    MissingEnvVarError,
    QuotaExceeded,
    TransportError,
)

__all__ = [
    "ApiError",
    "AuthError",
    "Config",
    "ConfigError",
    "CreatedToken",
    "DevboxError",
    "HookError",
    "MissingEnvVarError",
    "QuotaExceeded",
    "Rotation",
    "TokenBroker",
    "TransportError",
    "__version__",
    "cleanup_tokens",
    "cleanup_tokens_async",
    "configure_agents",
    "create_token",
    "create_token_async",
    "delete_token",
    "delete_token_async",
    "ensure_https_url",
    "generate_spn_token",
    "generate_spn_token_async",
    "get_databricks_transformers_js",
    "list_tokens",
    "list_tokens_async",
    "make_config",
    "materialize_configs",
    "refresh_logging",
    "setup_databricks_cfg",
    "start_rotation",
    "start_rotation_async",
    "unconfigure_agents",
    "update_ccr_token",
    "update_databricks_cfg",
    "write_ccr_config",
]
