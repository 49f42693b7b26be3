"""OAuth and authentication: discovery, the token endpoint, the metadata service, access-token lifetimes, and the
check of every credential the workspace accepts."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
from typing import Any, Final

from devbox_native.testing._base import _WorkspaceBase
from devbox_native.testing._wire import RecordedRequest, _api_error, _json_response, _Response

_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
_TOKEN_PATH: Final = "/oidc/v1/token"
_METADATA_PATH: Final = "/metadata-service/token"


def _oauth_error(status: int, error: str, description: str) -> _Response:
    return _json_response(status, {"error": error, "error_description": description})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _OAuth(_WorkspaceBase):
    """OAuth discovery, the token endpoint, the metadata service and authentication of `FakeWorkspace`."""

    @property
    def metadata_service_url(self) -> str:
        """The URL of the emulated metadata service (for ``DATABRICKS_METADATA_SERVICE_URL``)."""
        return self.url(_METADATA_PATH)

    def accepts(self, credential: str) -> bool:
        """Whether ``Authorization: Bearer <credential>`` authenticates now (an OAuth access token, the static
        `pat` or a live minted PAT)."""
        return isinstance(self._authenticate(f"Bearer {credential}"), str)

    def expire_access_tokens(self) -> None:
        """Make every OAuth access token issued so far expire now."""
        with self._lock:
            self._access_tokens.clear()

    def _oidc_metadata(self) -> dict[str, Any]:
        issuer = self.host + "/oidc"
        return {
            "issuer": issuer,
            "authorization_endpoint": issuer + "/v1/authorize",
            "token_endpoint": issuer + "/v1/token",
            "jwks_uri": issuer + "/jwks.json",
            "response_types_supported": ["code", "id_token"],
            "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token", _TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "scopes_supported": ["all-apis", "sql", "offline_access", "openid", "profile", "email"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def _host_metadata(self) -> dict[str, Any]:
        return {
            "oidc_endpoint": self.host + "/oidc",
            "account_id": self.account_id,
            "workspace_id": self.workspace_id,
            "cloud": "AWS",
            "host_type": "workspace",
        }

    def _oauth_token(self, req: RecordedRequest) -> _Response:
        form = req.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = req.headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
            except ValueError:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            client_id, _, client_secret = decoded.partition(":")
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if not (
                client_id == self.client_id
                and client_secret is not None
                and hmac.compare_digest(client_secret.encode(), self.client_secret.encode())
            ):
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            scope = form.get("scope", "").strip()
            if not scope:
                return _oauth_error(400, "invalid_request", "Missing required parameter: scope")
        elif grant == _TOKEN_EXCHANGE:
            if client_id is not None and client_id != self.client_id:
                return _oauth_error(401, "invalid_client", "Client authentication failed")
            if form.get("subject_token") not in self.federated_tokens:
                return _oauth_error(400, "invalid_grant", "The subject token is not valid for token exchange")
            scope = form.get("scope", "").strip() or "all-apis"
        elif not grant:
            return _oauth_error(400, "invalid_request", "Missing required parameter: grant_type")
        else:
            return _oauth_error(400, "unsupported_grant_type", f"Grant type {grant!r} is not supported")
        return _json_response(
            200,
            {
                "access_token": self._issue_access_token(scope),
                "token_type": "Bearer",
                "expires_in": self.access_token_ttl,
                "scope": scope,
            },
            [("Cache-Control", "no-store")],
        )

    def _metadata_token(self, req: RecordedRequest) -> _Response:
        """The metadata service: a workspace access token for the host named in ``X-Databricks-Host``."""
        if req.headers.get("x-databricks-metadata-version") != "1":
            return _api_error(400, "INVALID_PARAMETER_VALUE", "Missing or unsupported X-Databricks-Metadata-Version")
        if req.headers.get("x-databricks-host") != self.host:
            return _api_error(404, "NOT_FOUND", "This metadata service does not serve that host")
        token = self._issue_access_token("all-apis")
        return _json_response(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_on": int(self._now()) + self.access_token_ttl},
        )

    def _issue_access_token(self, scope: str) -> str:
        now = self._now()
        expiry = now + self.access_token_ttl
        header = {"alg": "RS256", "kid": "emulator", "typ": "at+jwt"}
        claims = {
            "iss": self.host + "/oidc",
            "sub": self.client_id,
            "client_id": self.client_id,
            "scope": scope,
            "iat": int(now),
            "exp": int(expiry),
            "jti": secrets.token_hex(8),
        }
        token = ".".join(
            [
                _b64url(json.dumps(header).encode()),
                _b64url(json.dumps(claims).encode()),
                _b64url(secrets.token_bytes(32)),
            ]
        )
        with self._lock:
            self._access_tokens[token] = expiry
        return token

    def _authenticate(self, header: str | None) -> str | _Response:
        """The caller's identity, or the error response for a missing or invalid credential."""
        scheme, _, credential = (header or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic" and credential:
            try:
                user, _, password = base64.b64decode(credential, validate=True).decode("utf-8").partition(":")
            except ValueError:
                user, password = "", ""
            if user == self.username and hmac.compare_digest(password.encode(), self.password.encode()):
                return self.client_id
            return _api_error(401, "UNAUTHENTICATED", "Invalid username or password.")
        if scheme.lower() != "bearer" or not credential:
            return _api_error(
                401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type for this API."
            )
        now = self._now()
        with self._lock:
            expiry = self._access_tokens.get(credential)
            if expiry is not None and expiry > now:
                return self.client_id
            if credential == self.pat:
                return self.client_id
            pat = self._pats.get(credential)
            if pat is not None and pat.is_live(int(now * 1000)):
                return pat.owner
        return _json_response(
            403,
            {"error_code": 403, "message": "Invalid access token."},
            [("X-Databricks-Reason-Phrase", "Invalid access token.")],
        )
