"""devbox_native: Databricks tokens and Claude Code Router config for coding assistants in a Databricks App.

A drop-in for the DevBox app's start-up functions (``app/vibe_code.py``) with a Rust core: same names,
signatures and results, without the Databricks SDK, and with atomic, private (0600) file writes. On top: a
merge-preserving config store (``update_ccr_token``, ``update_databricks_cfg``), a cross-process token broker
(``TokenBroker``), token hygiene (``cleanup_tokens``) and token rotation for a running Claude Code Router
(``start_rotation``), and a loopback credential gateway (``start_gateway``).
"""

from devbox_native._native import (
    Config,
    CreatedToken,
    Gateway,
    Rotation,
    TokenBroker,
    __version__,
    cleanup_tokens,
    create_token,
    delete_token,
    ensure_https_url,
    gateway_key,
    generate_spn_token,
    get_ccr3_config,
    get_databricks_transformers_js,
    install_ccr3_provider,
    list_tokens,
    make_config,
    materialize_configs,
    refresh_logging,
    running_gateway,
    setup_databricks_cfg,
    start_gateway,
    start_rotation,
    update_ccr_token,
    update_databricks_cfg,
    write_ccr_config,
)

# Loaded on first use (module `__getattr__`), so that `import devbox_native` stays fast: the asyncio layer and
# the exception classes (the Rust core imports `errors` itself the first time it raises). Name -> module.
_LAZY = {
    # The async twins.
    "cleanup_tokens_async": "devbox_native._aio",
    "create_token_async": "devbox_native._aio",
    "delete_token_async": "devbox_native._aio",
    "generate_spn_token_async": "devbox_native._aio",
    "list_tokens_async": "devbox_native._aio",
    "start_rotation_async": "devbox_native._aio",
    # Coding agents.
    "configure_agents": "devbox_native._agents",
    "unconfigure_agents": "devbox_native._agents",
    # The exceptions.
    "ApiError": "devbox_native.errors",
    "AuthError": "devbox_native.errors",
    "BusyError": "devbox_native.errors",
    "ConfigError": "devbox_native.errors",
    "DevboxError": "devbox_native.errors",
    "DevboxTimeoutError": "devbox_native.errors",
    "FileError": "devbox_native.errors",
    "HookError": "devbox_native.errors",
    "MissingEnvVarError": "devbox_native.errors",
    "NotRunningError": "devbox_native.errors",
    "QuotaExceeded": "devbox_native.errors",
    "TransportError": "devbox_native.errors",
}

# Type checkers see the lazy names as ordinary imports (TYPE_CHECKING is True for them; importing `typing`
# for it would cost the interpreter milliseconds).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from devbox_native._agents import configure_agents, unconfigure_agents
    from devbox_native._aio import (
        cleanup_tokens_async,
        create_token_async,
        delete_token_async,
        generate_spn_token_async,
        list_tokens_async,
        start_rotation_async,
    )
    from devbox_native.errors import (
        ApiError,
        AuthError,
        BusyError,
        ConfigError,
        DevboxError,
        DevboxTimeoutError,
        FileError,
        HookError,
        MissingEnvVarError,
        NotRunningError,
        QuotaExceeded,
        TransportError,
    )


def __getattr__(name: str) -> object:
    """Import a lazily loaded name on first use and keep it in the module."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'devbox_native' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ApiError",
    "AuthError",
    "BusyError",
    "Config",
    "ConfigError",
    "CreatedToken",
    "DevboxError",
    "DevboxTimeoutError",
    "FileError",
    "Gateway",
    "HookError",
    "MissingEnvVarError",
    "NotRunningError",
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
    "gateway_key",
    "generate_spn_token",
    "generate_spn_token_async",
    "get_ccr3_config",
    "get_databricks_transformers_js",
    "install_ccr3_provider",
    "list_tokens",
    "list_tokens_async",
    "make_config",
    "materialize_configs",
    "refresh_logging",
    "running_gateway",
    "setup_databricks_cfg",
    "start_gateway",
    "start_rotation",
    "start_rotation_async",
    "unconfigure_agents",
    "update_ccr_token",
    "update_databricks_cfg",
    "write_ccr_config",
]
