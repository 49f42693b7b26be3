"""The ``_async`` twins as real coroutine functions, and the hand-off from the Rust runtime to asyncio.

The Rust functions return an ``asyncio.Future`` bound to the running loop; wrapping them in ``async def``
makes the public twins ordinary coroutines (usable with ``asyncio.run``, ``create_task``, ``wait_for``).
Cancelling the coroutine cancels the future, which aborts the request in Rust. This module imports neither
asyncio nor typing (each costs milliseconds of every cold start, and ``devbox-native token get`` must stay
fast); the futures it touches come from the running loop.
"""

from __future__ import annotations

from devbox_native import _native

# `typing` costs milliseconds of every cold start (it pulls in re, enum, collections): type checkers see
# TYPE_CHECKING as True, the interpreter never imports typing here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import os
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from typing import Any, TypeVar

    from devbox_native._native import (
        Config,
        CreatedToken,
        Rotation,
        RotationEvent,
        RotationFailure,
        TokenBroker,
        TokenInfo,
    )

    _T = TypeVar("_T")


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Complete ``future`` on its loop's thread (called through ``loop.call_soon_threadsafe``)."""
    if future.done():  # cancelled while the request was in flight
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def _await_call(make_future: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    """Create the future inside the running loop (when the coroutine starts), then await it."""
    return await make_future(*args)


async def _ready(value: _T) -> _T:
    """An awaitable of a ready value (``Rotation.__aenter__``)."""
    return value


async def generate_spn_token_async(duration_seconds: int = 3600, *, config: Config | None = None) -> str:
    """Async version of :func:`devbox_native.generate_spn_token`."""
    return await _native.generate_spn_token_async(duration_seconds, config=config)


async def create_token_async(
    lifetime_seconds: int | None = None,
    comment: str | None = None,
    *,
    config: Config | None = None,
    auto_cleanup: bool = False,
    cache_path: str | os.PathLike[str] | None = None,
) -> CreatedToken:
    """Async version of :func:`devbox_native.create_token`."""
    return await _native.create_token_async(
        lifetime_seconds, comment, config=config, auto_cleanup=auto_cleanup, cache_path=cache_path
    )


async def list_tokens_async(*, config: Config | None = None) -> list[TokenInfo]:
    """Async version of :func:`devbox_native.list_tokens`."""
    return await _native.list_tokens_async(config=config)


async def delete_token_async(token_id: str, *, config: Config | None = None) -> None:
    """Async version of :func:`devbox_native.delete_token`."""
    await _native.delete_token_async(token_id, config=config)


async def cleanup_tokens_async(
    comment_prefix: str = "devbox-native-",
    older_than: int | None = None,
    include_app_tokens: bool = False,
    *,
    config: Config | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
) -> list[str]:
    """Async version of :func:`devbox_native.cleanup_tokens`."""
    return await _native.cleanup_tokens_async(
        comment_prefix, older_than, include_app_tokens, config=config, cache_path=cache_path, dry_run=dry_run
    )


async def start_rotation_async(
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
    env: Mapping[str, str] | None = None,
) -> Rotation:
    """Async version of :func:`devbox_native.start_rotation`.

    ``on_rotate`` and ``on_error`` may be coroutine functions: they run on the calling event loop (the rotation
    waits for them without blocking the loop). Use the result with ``async with`` or ``await rotation.stop_async()``.
    """
    import asyncio

    return _native.start_rotation(
        root_dir,
        on_rotate,
        command,
        broker=broker,
        lifetime_seconds=lifetime_seconds,
        refresh_margin=refresh_margin,
        config=config,
        port=port,
        restart_timeout=restart_timeout,
        retry_delay=retry_delay,
        max_retry_delay=max_retry_delay,
        on_error=on_error,
        include_token=include_token,
        event_loop=asyncio.get_running_loop(),
        env=env,
    )
