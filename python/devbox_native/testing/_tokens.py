"""The Token API (``/api/2.0/token/{create,list,delete}``): minted PATs, their quota and their revocation."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from devbox_native.testing._base import _WorkspaceBase
from devbox_native.testing._wire import RecordedRequest, _api_error, _json_response, _Response


@dataclass
class _Pat:
    value: str
    token_id: str
    creation_ms: int
    expiry_ms: int
    comment: str | None
    owner: str
    scopes: list[str] | None
    revoked: bool = False

    def is_live(self, now_ms: int) -> bool:
        return not self.revoked and (self.expiry_ms == -1 or self.expiry_ms > now_ms)

    def info(self) -> dict[str, Any]:
        """The ``token_info`` object as the Token API returns it."""
        info: dict[str, Any] = {
            "token_id": self.token_id,
            "creation_time": self.creation_ms,
            "expiry_time": self.expiry_ms,
        }
        if self.comment is not None:
            info["comment"] = self.comment
        if self.scopes is not None:
            info["scopes"] = list(self.scopes)
        return info


class _TokenApi(_WorkspaceBase):
    """The Token API of `FakeWorkspace`, and what tests ask about the tokens it minted."""

    def live_tokens(self) -> list[dict[str, Any]]:
        """Minted PATs that are neither revoked nor expired, oldest first.

        Each is ``{"token_id", "creation_time", "expiry_time", "comment", "owner"}`` (times in epoch ms,
        ``expiry_time`` -1 when the token has no lifetime, ``comment`` None when none was given).
        """
        now_ms = self._now_ms()
        with self._lock:
            return [{**pat.info(), "comment": pat.comment, "owner": pat.owner} for pat in self._live_pats(now_ms)]

    def is_live(self, token_value: str) -> bool:
        """Whether a minted PAT value would authenticate now."""
        now_ms = self._now_ms()
        with self._lock:
            pat = self._pats.get(token_value)
            return pat is not None and pat.is_live(now_ms)

    def token_value_owner(self, token_value: str) -> str | None:
        """The owner of a minted PAT value while it is live, else None."""
        now_ms = self._now_ms()
        with self._lock:
            pat = self._pats.get(token_value)
            return pat.owner if pat is not None and pat.is_live(now_ms) else None

    def token_id_of(self, token_value: str) -> str | None:
        """The ``token_id`` of a minted PAT value (live or not), or None if it was never minted here."""
        with self._lock:
            pat = self._pats.get(token_value)
            return pat.token_id if pat is not None else None

    def revoked_token_ids(self) -> list[str]:
        """Ids of minted PATs that were deleted or revoked, in minting order."""
        with self._lock:
            return [pat.token_id for pat in self._pats.values() if pat.revoked]

    def revoke_token(self, token_id: str) -> None:
        """Revoke a minted PAT server-side (as an admin would); raises `KeyError` for an unknown id."""
        with self._lock:
            self._revoke(self._pats_by_id[token_id])

    @staticmethod
    def _json_object(req: RecordedRequest) -> dict[str, Any] | _Response:
        if not req.body.strip():
            return {}
        try:
            obj = json.loads(req.body)
        except ValueError as exc:
            return _api_error(400, "MALFORMED_REQUEST", f"Invalid JSON given in the body of the request: {exc}")
        if not isinstance(obj, dict):
            return _api_error(400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request: expected a map")
        return obj

    def _token_create(self, req: RecordedRequest, identity: str) -> _Response:
        body = self._json_object(req)
        if isinstance(body, _Response):
            return body
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Invalid value for comment: expected a string")
        raw_scopes = body.get("scopes")
        if raw_scopes is not None and not (
            isinstance(raw_scopes, list) and all(isinstance(s, str) for s in raw_scopes)
        ):
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Invalid value for scopes: expected a list of strings")
        lifetime = body.get("lifetime_seconds")
        if lifetime is not None:
            # int64 fields also accept their proto3-JSON string form ("3600").
            if isinstance(lifetime, str) and lifetime.lstrip("-").isdigit():
                lifetime = int(lifetime)
            if isinstance(lifetime, bool) or not isinstance(lifetime, int):
                return _api_error(
                    400, "INVALID_PARAMETER_VALUE", f"Invalid value for lifetime_seconds: {json.dumps(lifetime)}"
                )
            if lifetime <= 0:
                return _api_error(400, "INVALID_PARAMETER_VALUE", f"requirement failed: Invalid timeout: {lifetime}")
        now_ms = self._now_ms()
        with self._lock:
            live = sum(1 for pat in self._live_pats(now_ms) if pat.owner == identity)
            if live >= self.token_quota:
                return _api_error(400, "QUOTA_EXCEEDED", f"Cannot create more than {self.token_quota} tokens.")
            pat = _Pat(
                value="dapi" + secrets.token_hex(16),
                token_id=secrets.token_hex(32),
                creation_ms=now_ms,
                expiry_ms=-1 if lifetime is None else now_ms + lifetime * 1000,
                comment=comment,
                owner=identity,
                scopes=list(raw_scopes) if raw_scopes is not None else None,
            )
            self._pats[pat.value] = pat
            self._pats_by_id[pat.token_id] = pat
            self._unrevoked[pat.token_id] = pat
        return _json_response(200, {"token_value": pat.value, "token_info": pat.info()})

    def _live_pats(self, now_ms: int) -> list[_Pat]:
        """Minted PATs that authenticate at `now_ms`, oldest first (call with the lock held)."""
        return [pat for pat in self._unrevoked.values() if pat.is_live(now_ms)]

    def _revoke(self, pat: _Pat) -> None:
        """Revoke a minted PAT (call with the lock held)."""
        pat.revoked = True
        self._unrevoked.pop(pat.token_id, None)

    def _token_delete(self, req: RecordedRequest, identity: str) -> _Response:
        body = self._json_object(req)
        if isinstance(body, _Response):
            return body
        token_id = body.get("token_id")
        if not isinstance(token_id, str) or not token_id:
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Missing required field: token_id")
        with self._lock:
            pat = self._pats_by_id.get(token_id)
            if pat is None or pat.revoked or pat.owner != identity:
                return _api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Token with id {token_id} does not exist.")
            self._revoke(pat)
        return _json_response(200, {})

    def _token_list(self, req: RecordedRequest, identity: str) -> _Response:
        now_ms = self._now_ms()
        with self._lock:
            infos = [pat.info() for pat in self._live_pats(now_ms) if pat.owner == identity]
        return _json_response(200, {"token_infos": infos})
