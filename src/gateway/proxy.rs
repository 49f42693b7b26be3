//! One request through the gateway: route allow-list, gateway key, token swap, upstream call with one retry on
//! a refused token, and bodies streamed both ways (a response body is the upstream's own body, polled by the
//! server as the client reads: nothing is buffered, and a client that goes away drops the upstream request).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::broker::{Broker, Lease, now};
use crate::error::{Error, Result};

/// A request body up to this size is kept (while it streams upstream) so a refused token can be retried.
pub const RETRY_BODY_LIMIT: usize = 8 << 20;
/// Routes forwarded upstream; everything else is 404.
pub const ROUTES: [&str; 2] = ["/serving-endpoints/", "/ai-gateway/"];
/// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];
/// Where a caller may present the gateway key; all three are replaced by the real token upstream.
const KEY_HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

/// What every request shares.
pub struct Shared {
    /// Where tokens come from.
    pub broker: Broker,
    /// The gateway key.
    pub key: String,
    /// The workspace URL (no trailing slash).
    pub upstream: String,
    /// The upstream client.
    pub client: reqwest::Client,
    /// The token in use, so a request does not read the cache file.
    lease: Mutex<Option<Lease>>,
    /// One refresh at a time in this process (the broker's lock covers other processes).
    refreshing: tokio::sync::Mutex<()>,
    /// Idle limit of a request body.
    idle: Duration,
}

impl Shared {
    /// Shared state for a gateway.
    pub fn new(broker: Broker, key: String, client: reqwest::Client, idle: Duration) -> Shared {
        let upstream = broker.host().trim_end_matches('/').to_string();
        Shared {
            broker,
            key,
            upstream,
            client,
            lease: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            idle,
        }
    }

    fn cached(&self) -> Option<Lease> {
        #[allow(clippy::cast_precision_loss)]
        let margin = self.broker.options().refresh_margin as f64;
        self.lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|l| l.expires_at - now() > margin)
    }

    fn remember(&self, lease: &Lease) {
        *self.lease.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(lease.clone());
    }

    /// A token with more than the broker's margin left.
    pub async fn token(&self) -> Result<Lease> {
        if let Some(l) = self.cached() {
            return Ok(l);
        }
        let _guard = self.refreshing.lock().await;
        if let Some(l) = self.cached() {
            return Ok(l);
        }
        let lease = self.broker.get().await?;
        self.remember(&lease);
        Ok(lease)
    }

    /// Replace a token the workspace refused (once across every request and process that saw it refused).
    async fn replace(&self, refused: &Lease) -> Result<Lease> {
        let _guard = self.refreshing.lock().await;
        if let Some(l) = self.cached().filter(|l| l.token_id != refused.token_id) {
            return Ok(l);
        }
        let lease = self.broker.force_refresh(Some(&refused.token_id)).await?;
        self.remember(&lease);
        Ok(lease)
    }
}

/// A response body: a small one the gateway wrote, or the upstream's, streamed. It logs the request's INFO line
/// when it is dropped (finished, or the client went away).
pub struct GatewayBody {
    inner: Inner,
    bytes: u64,
    line: LogLine,
}

enum Inner {
    Full(Option<Bytes>),
    Upstream(reqwest::Body),
}

struct LogLine {
    method: Method,
    path: String,
    status: u16,
    started: Instant,
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for GatewayBody {
    fn drop(&mut self) {
        let l = &self.line;
        log::info!(
            "{} {} -> {} ({} ms, {} bytes)",
            l.method,
            l.path,
            l.status,
            l.started.elapsed().as_millis(),
            self.bytes
        );
    }
}

/// A request body on its way upstream: the client's, frame by frame, with a copy of the first
/// [`RETRY_BODY_LIMIT`] bytes for a retry.
struct Outgoing {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, std::io::Error>>,
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        self.get_mut().rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// The copy of a request body kept for a retry: `Some` once the whole body was read and it fit the limit.
#[derive(Default)]
struct Kept {
    chunks: Vec<Bytes>,
    size: usize,
    overflow: bool,
    complete: bool,
}

impl Kept {
    fn body(&self) -> Option<Bytes> {
        (self.complete && !self.overflow).then(|| {
            let mut all = Vec::with_capacity(self.size);
            for c in &self.chunks {
                all.extend_from_slice(c);
            }
            Bytes::from(all)
        })
    }
}

/// Stream the client's body upstream through a channel (so the upstream side only sees a `Sync` body), keeping
/// a copy up to the retry limit.
fn stream_upstream(mut incoming: Incoming, idle: Duration) -> (reqwest::Body, Arc<Mutex<Kept>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let kept = Arc::new(Mutex::new(Kept::default()));
    let keep = kept.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout(idle, incoming.frame()) => n,
                () = tx.closed() => return,
            };
            let frame = match next {
                Err(_) => {
                    let _ = tx
                        .send(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "request body idle",
                        )))
                        .await;
                    return;
                }
                Ok(None) => {
                    // Before the sender drops: whoever sees the end of the body sees `complete`.
                    keep.lock().unwrap_or_else(std::sync::PoisonError::into_inner).complete = true;
                    return;
                }
                Ok(Some(Err(e))) => {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            {
                let mut k = keep.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if !k.overflow {
                    k.size += data.len();
                    if k.size > RETRY_BODY_LIMIT {
                        k.overflow = true;
                        k.chunks.clear();
                    } else {
                        k.chunks.push(data.clone());
                    }
                }
            }
            if tx.send(Ok(data)).await.is_err() {
                return;
            }
        }
    });
    (reqwest::Body::wrap(Outgoing { rx }), kept)
}

fn json_reply(line: LogLine, error_code: &str, message: &str) -> Response<GatewayBody> {
    let body = serde_json::json!({"error_code": error_code, "message": message});
    reply(line, "application/json", Bytes::from(body.to_string()))
}

fn reply(line: LogLine, content_type: &'static str, body: Bytes) -> Response<GatewayBody> {
    let status = StatusCode::from_u16(line.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(GatewayBody {
        inner: Inner::Full(Some(body)),
        bytes: 0,
        line,
    });
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Whether the path may be forwarded: under an allowed route, with no `.`/`..` segment (plain or
/// percent-encoded) and no encoded slash that could climb out of it on the workspace side.
pub fn allowed(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return false;
    }
    ROUTES.iter().any(|r| path.starts_with(r)) && !path.split('/').any(|s| s == "." || s == "..")
}

/// Constant-time comparison of a presented key with ours.
fn same_key(presented: &[u8], ours: &[u8]) -> bool {
    presented.len() == ours.len() && presented.iter().zip(ours).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Whether the request carries the gateway key in one of the [`KEY_HEADERS`].
fn has_key(headers: &HeaderMap, key: &str) -> bool {
    KEY_HEADERS.iter().any(|name| {
        headers.get_all(*name).iter().any(|v| {
            let v = v.as_bytes();
            let v = if *name == "authorization" {
                match v.get(..7) {
                    Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &v[7..],
                    _ => return false,
                }
            } else {
                v
            };
            same_key(v.trim_ascii(), key.as_bytes())
        })
    })
}

/// The headers to send upstream: the client's minus hop-by-hop ones (and those its `Connection` names), `Host`
/// and the key headers; plus the token.
fn upstream_headers(from: &HeaderMap, token: &str) -> Result<HeaderMap> {
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(from.len() + 1);
    for (name, value) in from {
        let n = name.as_str();
        // `Expect: 100-continue` was answered here (hyper does it when the body is read); not sent on.
        if HOP_BY_HOP.contains(&n)
            || n == "host"
            || n == "upgrade"
            || n == "expect"
            || KEY_HEADERS.contains(&n)
            || named.iter().any(|c| c == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Error::Config("the token is not a valid header value".into()))?;
    auth.set_sensitive(true);
    out.insert(header::AUTHORIZATION, auth);
    Ok(out)
}

fn downstream_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::UPGRADE {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Answer one request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> std::result::Result<Response<GatewayBody>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let line = |status: u16| LogLine {
        method: method.clone(),
        path: path.clone(),
        status,
        started,
    };
    if path == "/health" && (method == Method::GET || method == Method::HEAD) {
        return Ok(health(&shared, line).await);
    }
    if !allowed(&path) {
        return Ok(json_reply(
            line(404),
            "ENDPOINT_NOT_FOUND",
            "the gateway forwards only /serving-endpoints/... and /ai-gateway/...",
        ));
    }
    if !has_key(req.headers(), &shared.key) {
        return Ok(json_reply(
            line(401),
            "UNAUTHENTICATED",
            "missing or wrong gateway key (send it as Authorization: Bearer, x-api-key or x-goog-api-key)",
        ));
    }
    let lease = match shared.token().await {
        Ok(l) => l,
        Err(e) => {
            return Ok(json_reply(
                line(502),
                "BAD_GATEWAY",
                &format!("cannot get a token: {e}"),
            ));
        }
    };
    let url = format!(
        "{}{}",
        shared.upstream,
        req.uri().path_and_query().map_or(path.as_str(), |pq| pq.as_str())
    );
    let (parts, incoming) = req.into_parts();
    let (body, kept) = if incoming.is_end_stream() {
        let kept = Kept {
            complete: true,
            ..Kept::default()
        };
        (reqwest::Body::from(Bytes::new()), Arc::new(Mutex::new(kept)))
    } else {
        stream_upstream(incoming, shared.idle)
    };
    let mut sent = send(&shared, &parts.method, &url, &parts.headers, body, &lease).await;
    if let Ok(r) = &sent
        && matches!(r.status().as_u16(), 401 | 403)
    {
        let again = kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner).body();
        if let Some(body) = again {
            match shared.replace(&lease).await {
                Ok(fresh) if fresh.token_id != lease.token_id => {
                    log::debug!("{method} {path}: the token was refused; retrying once with a new one");
                    sent = send(
                        &shared,
                        &parts.method,
                        &url,
                        &parts.headers,
                        reqwest::Body::from(body),
                        &fresh,
                    )
                    .await;
                }
                Ok(_) => {}
                Err(e) => log::warn!("{method} {path}: the token was refused and no new one could be had: {e}"),
            }
        }
    }
    Ok(match sent {
        Ok(r) => {
            let status = r.status();
            let headers = downstream_headers(r.headers());
            let upstream: hyper::http::Response<reqwest::Body> = r.into();
            let mut resp = Response::new(GatewayBody {
                inner: Inner::Upstream(upstream.into_body()),
                bytes: 0,
                line: line(status.as_u16()),
            });
            *resp.status_mut() = status;
            *resp.headers_mut() = headers;
            resp
        }
        Err(e) => json_reply(line(502), "BAD_GATEWAY", &e),
    })
}

async fn send(
    shared: &Shared,
    method: &Method,
    url: &str,
    headers: &HeaderMap,
    body: reqwest::Body,
    lease: &Lease,
) -> std::result::Result<reqwest::Response, String> {
    let headers = upstream_headers(headers, lease.token.expose()).map_err(|e| e.to_string())?;
    shared
        .client
        .request(method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upstream unreachable: {}", crate::api::http::describe(&e)))
}

async fn health(shared: &Shared, line: impl Fn(u16) -> LogLine) -> Response<GatewayBody> {
    let kind = shared.broker.kind().as_str();
    let (status, body) = match shared.token().await {
        Ok(l) => {
            #[allow(clippy::cast_possible_truncation)]
            let left = (l.expires_at - now()).max(0.0).floor() as i64;
            (
                200,
                serde_json::json!({"status": "ok", "kind": kind, "token_expires_in": left}),
            )
        }
        Err(e) => (
            503,
            serde_json::json!({"status": "error", "kind": kind, "token_expires_in": 0, "message": e.to_string()}),
        ),
    };
    reply(line(status), "application/json", Bytes::from(body.to_string()))
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderName;

    use super::*;

    #[test]
    fn only_the_two_routes_are_forwarded_and_no_path_climbs_out() {
        assert!(allowed("/serving-endpoints/anthropic/v1/messages"));
        assert!(allowed("/ai-gateway/gemini/v1beta/models/m:streamGenerateContent"));
        for bad in [
            "/api/2.0/token/create",
            "/serving-endpoints",
            "/serving-endpoints/../api/2.0/token/create",
            "/serving-endpoints/%2e%2e/api/2.0/token/create",
            "/serving-endpoints/x%2F..%2Fapi",
            "/ai-gateway/./x",
            "/serving-endpoints\\..\\api",
            "/health2",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
    }

    #[test]
    fn the_key_is_accepted_in_any_of_the_three_headers_only_exactly() {
        let key = "ab".repeat(32);
        for (name, value) in [
            ("authorization", format!("Bearer {key}")),
            ("authorization", format!("bearer {key}")),
            ("x-api-key", key.clone()),
            ("x-goog-api-key", key.clone()),
        ] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
            assert!(has_key(&h, &key), "{name}: {value}");
        }
        for (name, value) in [
            ("authorization", key.clone()),
            ("authorization", format!("Basic {key}")),
            ("x-api-key", format!("{key}0")),
            ("x-api-key", "ab".repeat(31)),
            ("cookie", key.clone()),
        ] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
            assert!(!has_key(&h, &key), "{name}: {value}");
        }
    }

    #[test]
    fn upstream_headers_lose_keys_and_hop_by_hop_and_gain_the_token() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer gwkey"));
        h.insert("x-api-key", HeaderValue::from_static("gwkey"));
        h.insert("x-goog-api-key", HeaderValue::from_static("gwkey"));
        h.insert("connection", HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        h.insert("expect", HeaderValue::from_static("100-continue"));
        let out = upstream_headers(&h, "tok").unwrap();
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, vec!["anthropic-version", "authorization"]);
        assert_eq!(out["authorization"], "Bearer tok");
        assert!(out["authorization"].is_sensitive());
    }
}
