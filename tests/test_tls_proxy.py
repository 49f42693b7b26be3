"""TLS trust (REQUESTS_CA_BUNDLE, SSL_CERT_FILE) and proxies (HTTP_PROXY, NO_PROXY).

The HTTP client reads these variables once per process, so each case runs in a fresh subprocess.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from devbox_native.testing import FakeWorkspace

SCRIPT = (
    "import json, devbox_native\n"
    "try:\n"
    "    t = devbox_native.create_token(60, 'sub')\n"
    "    print(json.dumps({'ok': t.token_id}))\n"
    "except Exception as e:\n"
    "    print(json.dumps({'error': type(e).__name__, 'message': str(e)}))\n"
)


def _run(env: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_") and "PROXY" not in k.upper()}
    base.pop("REQUESTS_CA_BUNDLE", None)
    base.pop("SSL_CERT_FILE", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=base | env, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def _pem(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            obj.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


def _ca_cert(key: ec.EllipticCurvePrivateKey, name: x509.Name, *, san: bool = False) -> x509.Certificate:
    """A CA certificate (what `openssl req -x509` makes), for 127.0.0.1 too when `san`."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
    return builder.sign(key, hashes.SHA256())


def _cert_pair(
    tmp: Path, *, expired: bool = False, names: list[x509.GeneralName] | None = None
) -> tuple[Path, Path, Path]:
    """A CA and a server certificate signed by it: for 127.0.0.1 (or `names`), valid now (or `expired`)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devbox test CA")])
    ca = _ca_cert(ca_key, ca_name)
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = (
        (now - datetime.timedelta(days=2), now - datetime.timedelta(days=1))
        if expired
        else (
            now - datetime.timedelta(minutes=5),
            now + datetime.timedelta(days=1),
        )
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names or [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(tmp / "ca.pem", ca), _pem(tmp / "server.pem", cert), _pem(tmp / "server.key", key)


def _serving(cert: Path, key: Path) -> FakeWorkspace:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return FakeWorkspace(ssl_context=ctx)


@pytest.fixture
def tls_workspace(tmp_path: Path) -> Iterator[tuple[FakeWorkspace, Path]]:
    ca, cert, key = _cert_pair(tmp_path)
    with _serving(cert, key) as ws:
        yield ws, ca


@pytest.mark.parametrize("var", ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_a_ca_bundle_env_var_is_trusted(tls_workspace: tuple[FakeWorkspace, Path], var: str) -> None:
    ws, ca = tls_workspace
    assert ws.host.startswith("https://")
    out = _run({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat, var: str(ca)})
    assert "ok" in out, out
    assert out["ok"] in {t["token_id"] for t in ws.live_tokens()}


def test_ssl_cert_dir_is_searched(tls_workspace: tuple[FakeWorkspace, Path], tmp_path: Path) -> None:
    ws, ca = tls_workspace
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "README").write_text("not a certificate")
    (certs / "ours.pem").write_bytes(ca.read_bytes())
    out = _run({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat, "SSL_CERT_DIR": f"/nonexistent-ok:{certs}"})
    assert "ok" in out, out


def test_an_untrusted_certificate_fails_at_once(tls_workspace: tuple[FakeWorkspace, Path]) -> None:
    ws, _ = tls_workspace
    out = _run({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat})
    assert out["error"] == "TransportError"
    assert "TLS failure" in out["message"]
    assert ws.pat not in out["message"]
    assert ws.live_tokens() == []


def _tls_failure(env: dict[str, str]) -> str:
    out = _run(env)
    assert out["error"] == "TransportError", out
    message = out["message"]
    assert ": TLS failure: the " in message and "Error" not in message and "Context" not in message, message
    return message


def test_an_unknown_issuer_is_explained_with_the_fix(tls_workspace: tuple[FakeWorkspace, Path]) -> None:
    ws, _ = tls_workspace
    message = _tls_failure({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat})
    assert "not signed by a certificate authority this machine trusts" in message
    assert "REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in message and "UnknownIssuer" not in message


def test_a_ca_certificate_served_as_the_server_certificate_is_explained(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = _pem(
        tmp_path / "self.pem", _ca_cert(key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")]), san=True)
    )
    with _serving(ca, _pem(tmp_path / "self.key", key)) as ws:
        message = _tls_failure({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat, "REQUESTS_CA_BUNDLE": str(ca)})
    assert "presents a CA certificate as its own certificate" in message
    assert "openssl req -x509" in message and "signed by that CA" in message and "CaUsedAsEndEntity" not in message


def test_an_expired_certificate_is_explained(tmp_path: Path) -> None:
    ca, cert, key = _cert_pair(tmp_path, expired=True)
    with _serving(cert, key) as ws:
        message = _tls_failure({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat, "SSL_CERT_FILE": str(ca)})
    assert "the server's certificate has expired: renew it" in message


def test_a_certificate_for_another_name_is_explained(tmp_path: Path) -> None:
    ca, cert, key = _cert_pair(tmp_path, names=[x509.DNSName("elsewhere.example")])
    with _serving(cert, key) as ws:
        message = _tls_failure({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat, "SSL_CERT_FILE": str(ca)})
    assert "the server's certificate is not issued for 127.0.0.1" in message
    assert "subject alternative names" in message


def test_https_to_a_plain_http_port_is_explained(fake_workspace: FakeWorkspace) -> None:
    host = fake_workspace.host.replace("http://", "https://")
    message = _tls_failure({"DATABRICKS_HOST": host, "DATABRICKS_TOKEN": fake_workspace.pat})
    assert f"the server at {host} did not answer in TLS" in message and "use http://" in message


def test_an_unreadable_ca_bundle_names_the_variable(tmp_path: Path) -> None:
    out = _run(
        {
            "DATABRICKS_HOST": "http://127.0.0.1:9",
            "DATABRICKS_TOKEN": "x-token",
            "REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem"),
        }
    )
    assert out["error"] == "ConfigError"
    assert out["message"].startswith(f"REQUESTS_CA_BUNDLE: {tmp_path / 'missing.pem'}: cannot read it")


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy for plain-http targets that records what it relayed."""

    seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _relay(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"proxy-connection", "connection"}}
        conn.request(self.command, target.path + (f"?{target.query}" if target.query else ""), body, headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in {"transfer-encoding", "connection", "content-length"}:
                self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = _relay
    do_POST = _relay


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_http_proxy_is_used(fake_workspace: FakeWorkspace, proxy: str, var: str) -> None:
    out = _run({"DATABRICKS_HOST": fake_workspace.host, "DATABRICKS_TOKEN": fake_workspace.pat, var: proxy})
    assert "ok" in out, out
    assert _Proxy.seen == [f"POST {fake_workspace.host}/api/2.0/token/create"]


def test_no_proxy_bypasses_it(fake_workspace: FakeWorkspace, proxy: str) -> None:
    env = {
        "DATABRICKS_HOST": fake_workspace.host,
        "DATABRICKS_TOKEN": fake_workspace.pat,
        "HTTP_PROXY": proxy,
        "NO_PROXY": "127.0.0.1",
    }
    out = _run(env)
    assert "ok" in out, out
    assert _Proxy.seen == []


def test_a_redirect_from_https_to_http_is_refused(tls_workspace: tuple[FakeWorkspace, Path]) -> None:
    ws, ca = tls_workspace
    with FakeWorkspace() as plain:
        target = plain.url("/api/2.0/token/create")
        for status in (307, 302, 308):
            ws.inject("/api/2.0/token/create", action="redirect", status=status, location=target)
            out = _run({"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": ws.pat, "REQUESTS_CA_BUNDLE": str(ca)})
            assert out["error"] == "TransportError", out
            # Both URLs are named; the plain-http server never hears of it, and no token was accepted from it.
            assert f"{ws.host}/api/2.0/token/create" in out["message"], out
            assert target in out["message"], out
            assert "leaves https" in out["message"], out
        assert plain.requests == []
        assert ws.pat not in str(out)


def test_discovery_cannot_send_the_client_secret_to_another_origin(tls_workspace: tuple[FakeWorkspace, Path]) -> None:
    ws, ca = tls_workspace
    with FakeWorkspace() as thief:
        steal = thief.url("/steal")
        ws.inject("/oidc/.well-known", status=200, body={"token_endpoint": steal}, times=None)
        env = {
            "DATABRICKS_HOST": ws.host,
            "DATABRICKS_CLIENT_ID": ws.client_id,
            "DATABRICKS_CLIENT_SECRET": ws.client_secret,
            "REQUESTS_CA_BUNDLE": str(ca),
        }
        out = _run(env)
        assert out["error"] == "AuthError", out
        assert steal in out["message"] and ws.host in out["message"], out
        assert ws.client_secret not in out["message"]
        # Refused before any secret was sent: the other origin got no request at all.
        assert thief.requests == []
        assert [r.path for r in ws.requests if r.method == "POST"] == []
