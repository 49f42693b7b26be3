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

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::api::errors::{parse_failure, parse_retry_after};
use crate::config::{Config, Env};
use crate::error::{ApiFailure, Error, Result};
use crate::secret::{Secret, redact};

/// Connect timeout of every attempt (the per-attempt timeout still bounds the whole attempt).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variables naming extra PEM bundles of trusted CAs (`REQUESTS_CA_BUNDLE` is what Python users
/// already set for `requests`).
pub const CA_BUNDLE_VARS: [&str; 2] = ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"];

/// The TLS configuration. Trust is Mozilla's roots (compiled in) plus the CA files named by the environment,
/// and it is assembled at the first TLS handshake, not here: a process that only talks plain HTTP (the
/// emulator) never reads certificate files, and one that talks TLS reads each file once, however many
/// variables name it (machines often point REQUESTS_CA_BUNDLE, SSL_CERT_FILE and SSL_CERT_DIR at the same
/// system store, which then cost milliseconds of every cold start). Unreadable bundle files are reported now.
fn tls_config(env: &dyn Env) -> Result<rustls::ClientConfig> {
    let mut sources = Vec::new();
    for var in CA_BUNDLE_VARS {
        if let Some(path) = env.var(var).filter(|p| !p.is_empty()) {
            let meta =
                std::fs::metadata(&path).map_err(|e| Error::Config(format!("{var}: {path}: cannot read it: {e}")))?;
            if !meta.is_file() {
                return Err(Error::Config(format!("{var}: {path}: is not a file")));
            }
            sources.push(CaSource {
                var,
                path: PathBuf::from(path),
                required: true,
            });
        }
    }
    // OpenSSL's SSL_CERT_DIR: folders separated by ':'; like OpenSSL, a missing folder and files that are not
    // PEM certificates are skipped.
    for dir in env
        .var("SSL_CERT_DIR")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
    {
        sources.push(CaSource {
            var: "SSL_CERT_DIR",
            path: PathBuf::from(dir),
            required: false,
        });
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = LazyVerifier {
        sources,
        provider: provider.clone(),
        inner: OnceLock::new(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Transport(format!("cannot configure TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}

/// A file or folder of trusted CAs named by an environment variable.
#[derive(Debug)]
struct CaSource {
    var: &'static str,
    path: PathBuf,
    /// A bundle file named directly must hold certificates; files in an SSL_CERT_DIR folder may be anything.
    required: bool,
}

/// The standard WebPKI verifier, built on first use from the compiled-in roots and the [`CaSource`]s.
#[derive(Debug)]
struct LazyVerifier {
    sources: Vec<CaSource>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
    inner: OnceLock<std::result::Result<std::sync::Arc<rustls::client::WebPkiServerVerifier>, String>>,
}

impl LazyVerifier {
    fn get(&self) -> std::result::Result<&rustls::client::WebPkiServerVerifier, rustls::Error> {
        self.inner
            .get_or_init(|| self.build())
            .as_deref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }

    fn build(&self) -> std::result::Result<std::sync::Arc<rustls::client::WebPkiServerVerifier>, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let mut seen = std::collections::HashSet::new();
        for source in &self.sources {
            let files: Vec<PathBuf> = if source.required {
                vec![source.path.clone()]
            } else {
                let Ok(entries) = std::fs::read_dir(&source.path) else {
                    log::warn!("{}: cannot read {}; skipped", source.var, source.path.display());
                    continue;
                };
                entries.flatten().map(|e| e.path()).collect()
            };
            for file in files {
                // Hash links and .pem links in a certs folder, and the variables, often name the same file.
                if !seen.insert(std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone())) {
                    continue;
                }
                match load_pem_certs(&file) {
                    Ok(certs) if !certs.is_empty() => {
                        let (_, rejected) = roots.add_parsable_certificates(certs);
                        if rejected > 0 {
                            log::warn!(
                                "{}: {rejected} certificate(s) in {} are unusable",
                                source.var,
                                file.display()
                            );
                        }
                    }
                    Ok(_) if source.required => {
                        return Err(format!("{}: {}: holds no PEM certificate", source.var, file.display()));
                    }
                    Err(e) if source.required => return Err(format!("{}: {}: {e}", source.var, file.display())),
                    _ => {}
                }
            }
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))
    }
}

impl rustls::client::danger::ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn load_pem_certs(path: &Path) -> std::result::Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))
}

/// Largest response body we read; a longer one is an error, never a truncation.
pub const MAX_BODY: usize = 8 << 20;
/// How long connections refused on every attempt are retried before the call reports it.
pub const REFUSED_WINDOW: Duration = Duration::from_secs(10);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;
/// Longest wait between two attempts, unless the server asked for longer with `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

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

/// What went wrong in one attempt, and whether another attempt may help.
struct AttemptError {
    error: Error,
    retryable: bool,
    /// The connection was refused (nothing listens there).
    refused: bool,
    retry_after: Option<f64>,
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

/// The first error in `e`'s chain for which `found` gives a value. io::Error hides what it wraps from `source()`
/// (hyper-util wraps tokio-rustls's io::Error in another io::Error), so wrapped errors are opened too.
fn find_cause<T>(e: &reqwest::Error, found: impl Fn(&(dyn std::error::Error + 'static)) -> Option<T>) -> Option<T> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        let mut err = s;
        loop {
            if let Some(t) = found(err) {
                return Some(t);
            }
            match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                Some(inner) => err = inner,
                None => break,
            }
        }
        source = s.source();
    }
    None
}

/// Whether a rustls error is anywhere in the error's chain.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    find_cause(e, |c| c.is::<rustls::Error>().then_some(())).is_some()
}

/// Whether the connection was refused (nothing listens on that port).
fn is_refused(e: &reqwest::Error) -> bool {
    e.is_connect()
        && find_cause(e, |c| {
            c.downcast_ref::<std::io::Error>()
                .filter(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
                .map(|_| ())
        })
        .is_some()
}

/// Whether the response could not be parsed as HTTP (a head too large, too many headers, a bad status line).
fn is_malformed(e: &reqwest::Error) -> bool {
    find_cause(e, |c| {
        c.downcast_ref::<hyper::Error>().filter(|h| h.is_parse()).map(|_| ())
    })
    .is_some()
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

/// What a TLS failure means and what fixes it, in words (rustls' own text is its Debug form, e.g.
/// `invalid peer certificate: UnknownIssuer`).
fn tls_advice(e: &rustls::Error, url: Option<&reqwest::Url>) -> String {
    use rustls::CertificateError as C;
    let host = url.and_then(reqwest::Url::host_str).unwrap_or("the host");
    let trust = "put the CA's certificate (PEM) in a file and point REQUESTS_CA_BUNDLE or SSL_CERT_FILE at it";
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => format!(
                "the server's certificate is not signed by a certificate authority this machine trusts (a \
                 private CA, or a self-signed certificate): {trust}"
            ),
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired: renew it (or, if it \
                 should still be valid, correct this machine's clock)"
                .into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the server's certificate is not valid yet: check \
                 this machine's clock and the certificate's start date"
                .into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "the server's certificate is not issued for {host}: connect with a name the certificate lists, or \
                 reissue it with {host} among its subject alternative names"
            ),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "the server's certificate is not meant for a \
                 TLS server (its extended key usage lacks serverAuth): reissue it for server authentication"
                .into(),
            C::BadSignature => "the server's certificate signature does not verify against its issuer: the \
                 certificate chain is broken or forged"
                .into(),
            C::Revoked => "the server's certificate has been revoked by its issuer: install a new one".into(),
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
                "the server presents a CA certificate as its own certificate (a self-signed `openssl req -x509` \
                 certificate is one): serve a certificate for {host} signed by that CA, and {trust}"
            ),
            other => format!("the server's certificate was rejected ({other:?})"),
        },
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            let origin = url.map_or_else(|| "that address".to_string(), |u| u.origin().ascii_serialization());
            format!(
                "the server at {origin} did not answer in TLS: it looks like a plain-HTTP port; use http:// for it, \
                 or the port that serves HTTPS"
            )
        }
        other => format!("the TLS handshake failed ({other})"),
    }
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

/// Wait before attempt `attempt + 1`: the server's `Retry-After` if given, else 0.5 s doubling up to 10 s;
/// plus up to 50% random jitter (at most 1 s) so that many clients do not retry in step.
fn backoff(attempt: u32, retry_after: Option<f64>) -> Duration {
    let base = retry_after.map_or_else(
        || (Duration::from_millis(500) * 2u32.saturating_pow(attempt.saturating_sub(1).min(8))).min(MAX_BACKOFF),
        |s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)),
    );
    let jitter = (base / 2).min(Duration::from_secs(1)).mul_f64(fastrand::f64());
    base + jitter
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
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let w = backoff(attempt, None);
            let base = Duration::from_millis(500) * 2u32.pow((attempt - 1).min(8));
            let base = base.min(MAX_BACKOFF);
            assert!(w >= base && w <= base + Duration::from_secs(1), "{attempt}: {w:?}");
        }
        let w = backoff(1, Some(3.0));
        assert!(w >= Duration::from_secs(3) && w <= Duration::from_secs(4));
    }

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
