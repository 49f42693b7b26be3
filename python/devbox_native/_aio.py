"""The ``_async`` twins as real coroutine functions, and the hand-off from the Rust runtime to asyncio.

The Rust functions return an ``asyncio.Future`` bound to the running loop; wrapping them in ``async def``
makes the public twins ordinary coroutines (usable with ``asyncio.run``, ``create_task``, ``wait_for``).
Cancelling the coroutine cancels the future, which aborts the request in Rust. This module does not import
asyncio (that costs milliseconds of every cold start); the futures it touches come from the running loop.
"""

from __future__ import annotations

from devbox_native import _native

# `typing` costs milliseconds of every cold start (it pulls in re, enum, collections): type checkers see
# TYPE_CHECKING as True, the interpreter never imports typing here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from devbox_native._native import Config, CreatedToken, TokenInfo


def _resolve(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Complete ``future`` on its loop's thread (called through ``loop.call_soon_threadsafe``)."""
    if future.done():  # cancelled while the request was in flight
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


async def generate_spn_token_async(duration_seconds: int | None = None, *, config: Config | None = None) -> str:
    """Async version of :func:`devbox_native.generate_spn_token`."""
    return await _native.generate_spn_token_async(duration_seconds, config=config)


async def create_token_async(
    lifetime_seconds: int | None = None, comment: str | None = None, *, config: Config | None = None
) -> CreatedToken:
    """Async version of :func:`devbox_native.create_token`."""
    return await _native.create_token_async(lifetime_seconds, comment, config=config)


async def list_tokens_async(*, config: Config | None = None) -> list[TokenInfo]:
    """Async version of :func:`devbox_native.list_tokens`."""
    return await _native.list_tokens_async(config=config)


async def delete_token_async(token_id: str, *, config: Config | None = None) -> None:
    """Async version of :func:`devbox_native.delete_token`."""
    await _native.delete_token_async(token_id, config=config)
