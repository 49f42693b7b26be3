//! The HTTP transport: one pooled reqwest client per process, and [`HttpClient::send`], which applies the
//! retry policy (SDK-BEHAVIOUR.md §6, made safer):
//!
//! * 429 and 503 are retried, honouring `Retry-After` (seconds or HTTP-date);
//! * a failure to connect is retried for every call (the request surely never reached the server);
//! * a reset, a broken body or a per-attempt timeout is retried only for idempotent calls: `token/create` is
//!   not idempotent, and retrying it after the server may have seen it could mint a second token;
//! * waits grow exponentially (0.5 s, 1 s, 2 s, ... capped at 10 s) with random jitter, inside a total budget;
//!   an exhausted budget is [`Error::Timeout`] carrying the last error. Every attempt's timeout is capped by
//!   what is left of the budget, so a call never outlives its budget;
//! * what will not heal by waiting is reported at once: a name that does not resolve, a TLS failure, a
//!   malformed response (a huge header, thousands of headers), a body over [`MAX_BODY`], a redirect loop, a
//!   redirect that leaves https, a `Retry-After` longer than the budget left;
//! * a refused connection is retried for at most [`REFUSED_WINDOW`] (a server restarting), with one WARNING
//!   when such a wave starts, then reported as `cannot reach <origin>: connection refused`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::Method;

use super::retry::{
    AttemptError, REFUSED_WINDOW, backoff, find_cause, is_malformed, is_refused, is_tls_failure, parse_retry_after,
};
use super::tls::{tls_advice, tls_config};
use crate::api::errors::parse_failure;
use crate::config::{Config, Env};
use crate::error::{ApiFailure, Error, Result};
use crate::secret::{Secret, redact};

/// Connect timeout of every attempt (the per-attempt timeout still bounds the whole attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest response body we read; a longer one is an error, never a truncation.
pub const MAX_BODY: usize = 8 << 20;
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

static PYTHON_VERSION: OnceLock<String> = OnceLock::new();

/// Record the Python version for the User-Agent (set once by the binding layer).
pub fn set_python_version(version: &str) {
    let _ = PYTHON_VERSION.set(version.to_string());
}

/// `devbox-native/<ver> python/<ver> os/<os> auth/<auth_type>`.
pub fn user_agent(auth_type: Option<&str>) -> String {
    let py = PYTHON_VERSION.get().map_or("unknown", String::as_str);
    let mut ua = format!(
        "devbox-native/{} python/{py} os/{}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    );
    if let Some(a) = auth_type {
        ua.push_str(" auth/");
        ua.push_str(a);
    }
    ua
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// A JSON body.
    Json(serde_json::Value),
    /// A form-encoded body (may carry secrets: never logged).
    Form(Vec<(&'static str, String)>),
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No authentication (discovery endpoints).
    None,
    /// HTTP Basic (OAuth client credentials).
    Basic {
        /// The user (client id).
        user: String,
        /// The password (client secret).
        password: Secret,
    },
    /// A ready `Authorization` header value (`Bearer ...`).
    Header(Secret),
}

/// One logical call (retried as a whole).
#[derive(Debug, Clone)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Request body.
    pub body: Body,
    /// Whether repeating the request is harmless.
    pub idempotent: bool,
    /// Authentication.
    pub auth: Auth,
    /// `auth/<type>` for the User-Agent.
    pub auth_type: Option<String>,
    /// Extra request headers (never logged).
    pub headers: Vec<(&'static str, String)>,
    /// Whether the URL itself is a secret (the metadata service's): then logs and errors never show it.
    pub secret_url: bool,
    /// Per-attempt timeout.
    pub attempt_timeout: Duration,
    /// Total budget, retries included.
    pub budget: Duration,
}

impl Call {
    /// An idempotent, unauthenticated call without a body, with `cfg`'s timeout and retry budget; set the other
    /// fields with struct update syntax.
    pub fn new(method: Method, url: String, cfg: &Config) -> Call {
        Call {
            method,
            url,
            body: Body::Empty,
            idempotent: true,
            auth: Auth::None,
            auth_type: None,
            headers: Vec::new(),
            secret_url: false,
            attempt_timeout: cfg.http_timeout,
            budget: cfg.retry_timeout,
        }
    }
}

/// A successful (2xx/3xx) response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// The pooled client (one per process; see `runtime`).
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// Build the pooled client: rustls (ring provider) trusting Mozilla's roots, as `requests` with certifi
    /// does, plus every CA in `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE` and the folders of `SSL_CERT_DIR`;
    /// proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`; at most 10 redirects, never one from
    /// https to anything else, and reqwest drops `Authorization` whenever a redirect changes host, port or scheme.
    pub fn new(env: &dyn Env) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::custom(redirect_policy))
            .tls_backend_preconfigured(tls_config(env)?)
            .build()
            .map_err(|e| Error::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpClient { client })
    }

    /// A client for the credential gateway's upstream side: the same TLS trust and proxies as [`HttpClient::new`]
    /// and the same 10 s connect timeout, but redirects are passed through (a proxy answers them verbatim), there is
    /// no total timeout (streams may last long), and 10 minutes without a byte ends a response (`idle`).
    pub fn streaming_client(env: &dyn Env, idle: Duration) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(idle)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls_config(env)?)
            .build()
            .map_err(|e| Error::Transport(format!("cannot build the HTTP client: {e}")))
    }

    /// Send a call, retrying per the module's policy.
    pub async fn send(&self, call: &Call) -> Result<Response> {
        let deadline = Instant::now() + call.budget;
        let path = if call.secret_url {
            SECRET_URL.to_string()
        } else {
            reqwest::Url::parse(&call.url)
                .map(|u| u.path().to_string())
                .unwrap_or_default()
        };
        let mut attempt = 0u32;
        // When the current run of refused connections began.
        let mut refused_since: Option<Instant> = None;
        // The error of the previous attempt: the cause to report when the last attempt was only cut short by the
        // end of the budget.
        let mut previous: Option<Error> = None;
        loop {
            attempt = attempt.saturating_add(1);
            let started = Instant::now();
            // The last attempt gets what is left of the budget, not a whole attempt timeout.
            let timeout = call.attempt_timeout.min(deadline.saturating_duration_since(started));
            let outcome = self.attempt(call, timeout).await;
            let elapsed_ms = started.elapsed().as_millis();
            let err = match outcome {
                Ok(resp) => {
                    log::debug!(
                        "{} {path} -> {} (attempt {attempt}, {elapsed_ms} ms)",
                        call.method,
                        resp.status
                    );
                    return Ok(resp);
                }
                Err(e) => e,
            };
            let status = match &err.error {
                Error::Api(f) => f.status.to_string(),
                _ => "error".to_string(),
            };
            log::debug!(
                "{} {path} -> {status} (attempt {attempt}, {elapsed_ms} ms): {}",
                call.method,
                err.error
            );
            if err.refused {
                let since = *refused_since.get_or_insert_with(|| {
                    log::warn!(
                        "cannot reach {}: connection refused; retrying for up to {} s",
                        origin_of(call),
                        REFUSED_WINDOW.min(call.budget).as_secs_f64().round()
                    );
                    started
                });
                if started.duration_since(since) >= REFUSED_WINDOW {
                    return Err(Error::Transport(format!(
                        "cannot reach {}: connection refused (for {} s)",
                        origin_of(call),
                        Instant::now().duration_since(since).as_secs_f64().round()
                    )));
                }
            } else {
                refused_since = None;
            }
            if !err.retryable {
                return Err(err.error);
            }
            let now = Instant::now();
            let wait = backoff(attempt, err.retry_after);
            if now + wait >= deadline {
                let left = deadline.saturating_duration_since(now);
                let message = match err.retry_after {
                    Some(asked) if Duration::try_from_secs_f64(asked).map_or(true, |a| now + a >= deadline) => format!(
                        "{} {path}: the server asked to wait {asked} s before retrying (Retry-After), longer than \
                         the {} s left of the {} s budget",
                        call.method,
                        left.as_secs_f64().round(),
                        call.budget.as_secs_f64().round()
                    ),
                    _ => format!(
                        "{} {path}: timed out after {} s of retries ({attempt} attempts)",
                        call.method,
                        call.budget.as_secs_f64().round()
                    ),
                };
                let cut_short = matches!(err.error, Error::Timeout { .. }) && left.is_zero();
                let last = match previous {
                    Some(p) if cut_short => p,
                    _ => err.error,
                };
                return Err(Error::Timeout {
                    message,
                    last: Some(Box::new(last)),
                });
            }
            previous = Some(err.error);
            log::debug!("{} {path}: retrying in {} ms", call.method, wait.as_millis());
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, call: &Call, timeout: Duration) -> std::result::Result<Response, AttemptError> {
        let mut req = self
            .client
            .request(call.method.clone(), &call.url)
            .timeout(timeout)
            .header(reqwest::header::USER_AGENT, user_agent(call.auth_type.as_deref()));
        for (name, value) in &call.headers {
            req = req.header(*name, value);
        }
        match &call.auth {
            Auth::None => {}
            Auth::Basic { user, password } => req = req.basic_auth(user, Some(password.expose())),
            Auth::Header(h) => req = req.header(reqwest::header::AUTHORIZATION, h.expose()),
        }
        req = match &call.body {
            Body::Empty => req,
            Body::Json(v) => req.json(v),
            Body::Form(f) => req.form(f),
        };
        let resp = req.send().await.map_err(|e| self.transport_error(call, &e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = match read_body(resp).await {
            Ok(body) => body,
            Err(BodyError::Transport(e)) => return Err(self.transport_error(call, &e)),
            Err(BodyError::TooLarge) => {
                return Err(AttemptError {
                    error: Error::Transport(format!(
                        "{} {}: response body too large (more than {} MiB)",
                        call.method,
                        shown_url(call),
                        MAX_BODY >> 20
                    )),
                    retryable: false,
                    refused: false,
                    retry_after: None,
                });
            }
        };
        if status < 400 {
            return Ok(Response { status, body });
        }
        let mut failure = parse_failure(status, &body, retry_after);
        failure.message = redact(&failure.message, &secrets_of(call));
        Err(AttemptError {
            retryable: matches!(status, 429 | 503),
            refused: false,
            retry_after,
            error: Error::Api(failure),
        })
    }

    fn transport_error(&self, call: &Call, e: &reqwest::Error) -> AttemptError {
        let refused = is_refused(e);
        if e.is_dns() || refused {
            // The host shown is the host we tried to contact (the URL's origin, never a secret path).
            let why = if refused {
                "connection refused".to_string()
            } else {
                format!(
                    "name not resolved (DNS){}",
                    root_cause(e).map(|r| format!(": {r}")).unwrap_or_default()
                )
            };
            return AttemptError {
                error: Error::Transport(format!("cannot reach {}: {why}", origin_of(call))),
                retryable: refused,
                refused,
                retry_after: None,
            };
        }
        let what = describe(e);
        let message = redact(
            &format!("{} {}: {what}", call.method, shown_url(call)),
            &secrets_of(call),
        );
        // A connect failure means the request never left: safe to repeat even for token/create. A TLS failure
        // (untrusted certificate, https to a plain-http port), a malformed response or a refused redirect will not
        // heal by waiting: report it at once, whatever the call.
        let permanent = is_tls_failure(e) || e.is_redirect() || is_malformed(e);
        let error = if e.is_timeout() {
            Error::Timeout { message, last: None }
        } else {
            Error::Transport(message)
        };
        AttemptError {
            error,
            retryable: !permanent && (e.is_connect() || call.idempotent),
            refused: false,
            retry_after: None,
        }
    }
}

/// Why a body could not be read.
enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it is known to exceed [`MAX_BODY`].
async fn read_body(mut resp: reqwest::Response) -> std::result::Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The call's URL as errors show it: without query, or a placeholder for a secret URL.
fn shown_url(call: &Call) -> &str {
    if call.secret_url {
        SECRET_URL
    } else {
        strip_query(&call.url)
    }
}

/// `scheme://host[:port]` of the call's URL (the host contacted), or a placeholder for a secret URL.
fn origin_of(call: &Call) -> String {
    if call.secret_url {
        return SECRET_URL.to_string();
    }
    match reqwest::Url::parse(&call.url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => strip_query(&call.url).to_string(),
    }
}

/// The redirect policy: at most [`MAX_REDIRECTS`], and never from https to anything else.
fn redirect_policy(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let downgrade = attempt
        .previous()
        .last()
        .filter(|from| from.scheme() == "https" && attempt.url().scheme() != "https")
        .map(|from| RedirectRefused {
            from: strip_query(from.as_str()).to_string(),
            to: strip_query(attempt.url().as_str()).to_string(),
        });
    if let Some(refused) = downgrade {
        return attempt.error(refused);
    }
    // `previous` holds the first URL too: more than MAX_REDIRECTS of them means MAX_REDIRECTS were followed.
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(TooManyRedirects);
    }
    attempt.follow()
}

/// A redirect from https to another scheme, refused.
#[derive(Debug)]
struct RedirectRefused {
    from: String,
    to: String,
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused a redirect that leaves https: {} -> {}", self.from, self.to)
    }
}

impl std::error::Error for RedirectRefused {}

/// More than [`MAX_REDIRECTS`] redirects.
#[derive(Debug)]
struct TooManyRedirects;

impl std::fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many redirects")
    }
}

impl std::error::Error for TooManyRedirects {}

/// How a secret URL is shown.
const SECRET_URL: &str = "<secret URL>";

fn secrets_of(call: &Call) -> Vec<&str> {
    let mut v = Vec::new();
    if call.secret_url {
        v.push(call.url.as_str());
    }
    match &call.auth {
        Auth::None => {}
        Auth::Basic { password, .. } => v.push(password.expose()),
        Auth::Header(h) => {
            v.push(h.expose());
            if let Some(t) = h.expose().strip_prefix("Bearer ") {
                v.push(t);
            }
        }
    }
    if let Body::Form(f) = &call.body {
        v.extend(f.iter().map(|(_, val)| val.as_str()));
    }
    v
}

fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The innermost cause's text.
fn root_cause(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut root = None;
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    root
}

/// A short, header-free description of a transport error, with its innermost cause (also the gateway's 502).
pub fn describe(e: &reqwest::Error) -> String {
    if let Some(refused) = find_cause(e, |c| c.downcast_ref::<RedirectRefused>().map(ToString::to_string)) {
        return refused;
    }
    if let Some(advice) = find_cause(e, |c| c.downcast_ref::<rustls::Error>().map(|t| tls_advice(t, e.url()))) {
        return format!("TLS failure: {advice}");
    }
    let kind = if is_tls_failure(e) {
        "TLS failure"
    } else if is_malformed(e) {
        "malformed response"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_timeout() {
        "timed out"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    match root_cause(e) {
        Some(r) if r != kind => format!("{kind} ({r})"),
        _ => kind.to_string(),
    }
}

/// Map an [`ApiFailure`] from the OAuth endpoint into an authentication error message.
pub fn oauth_message(f: &ApiFailure) -> String {
    match &f.error_code {
        Some(code) => format!("{code}: {}", f.message),
        None => f.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_shape() {
        let ua = user_agent(Some("pat"));
        assert!(ua.starts_with("devbox-native/"), "{ua}");
        assert!(ua.ends_with(" auth/pat"), "{ua}");
        assert!(ua.contains(" os/"), "{ua}");
    }

    #[test]
    fn secrets_are_collected_from_auth_and_form() {
        let call = Call {
            method: Method::POST,
            url: "http://h/x?y".into(),
            body: Body::Form(vec![("client_secret", "formsecret".into())]),
            idempotent: false,
            auth: Auth::Header(Secret::new("Bearer tok-abc")),
            auth_type: None,
            headers: Vec::new(),
            secret_url: false,
            attempt_timeout: Duration::from_secs(1),
            budget: Duration::from_secs(1),
        };
        assert_eq!(secrets_of(&call), vec!["Bearer tok-abc", "tok-abc", "formsecret"]);
        assert_eq!(strip_query(&call.url), "http://h/x");
    }
}
