//! What the OAuth strategies share: discovery of the token endpoint and the token request.
//!
//! Discovery is `GET {host}/oidc/.well-known/oauth-authorization-server` for a workspace, or
//! `{host}/oidc/accounts/{account_id}/.well-known/oauth-authorization-server` for an accounts host (the SDK's
//! `Config.oidc_endpoints`). It is done once per credentials and remembered. The token request is a form
//! `POST` to that endpoint, answered with `access_token`, `token_type` and `expires_in`. Both get the same
//! timeout and retry policy as every other call (the SDK sends the token request once, without a timeout).
//! The endpoint must be on the host's own origin ([`check_origin`]): a discovery document cannot send the
//! client secret elsewhere.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

use super::token::Token;
use crate::api::http::{Auth, Body, Call, HttpClient};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The token endpoint of a host, discovered on first use.
#[derive(Default)]
pub struct Discovery {
    endpoint: tokio::sync::OnceCell<String>,
}

#[derive(Deserialize)]
struct Metadata {
    token_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

/// Lifetime assumed when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl Discovery {
    /// The token endpoint (discovering it the first time).
    pub async fn token_endpoint(&self, http: &HttpClient, cfg: &Config) -> Result<String> {
        self.endpoint.get_or_try_init(|| discover(http, cfg)).await.cloned()
    }
}

async fn discover(http: &HttpClient, cfg: &Config) -> Result<String> {
    let host = cfg
        .host()
        .ok_or_else(|| Error::Auth("no host to discover the token endpoint at".into()))?;
    let url = match cfg.get("account_id") {
        Some(account) if cfg.is_account_client() => {
            format!("{host}/oidc/accounts/{account}/.well-known/oauth-authorization-server")
        }
        _ => format!("{host}/oidc/.well-known/oauth-authorization-server"),
    };
    let call = Call::new(Method::GET, url, cfg);
    let resp = http.send(&call).await?;
    let m: Metadata = serde_json::from_slice(&resp.body)
        .map_err(|_| Error::Auth("OIDC discovery did not answer with JSON".into()))?;
    let endpoint = m
        .token_endpoint
        .filter(|e| !e.is_empty())
        .ok_or_else(|| Error::Auth("OIDC discovery has no token_endpoint".into()))?;
    check_origin(host, &endpoint)?;
    Ok(endpoint)
}

/// Credentials go only to the workspace's own origin (scheme, host and port): Databricks serves the token
/// endpoint of a workspace (and of an accounts console) under the same host, on every cloud. Anything else
/// is refused before any secret is sent, naming both URLs.
pub fn check_origin(host: &str, endpoint: &str) -> Result<()> {
    let origin = |u: &str| reqwest::Url::parse(u).ok().map(|u| u.origin());
    match (origin(host), origin(endpoint)) {
        (Some(a), Some(b)) if a == b && a.is_tuple() => Ok(()),
        _ => Err(Error::Auth(format!(
            "OIDC discovery named the token endpoint {endpoint}, which is not on the workspace's origin {host}: \
             refusing to send credentials there"
        ))),
    }
}

/// `POST` a token request and read the token from the answer.
pub async fn request_token(
    http: &HttpClient,
    cfg: &Config,
    endpoint: String,
    form: Vec<(&'static str, String)>,
    auth: Auth,
) -> Result<Token> {
    // Asking twice for an access token is harmless: the call stays idempotent.
    let call = Call {
        body: Body::Form(form),
        auth,
        ..Call::new(Method::POST, endpoint, cfg)
    };
    let resp = http.send(&call).await?;
    let parsed: TokenResponse = serde_json::from_slice(&resp.body)
        .map_err(|_| Error::Auth("the token endpoint did not answer with JSON".into()))?;
    let access = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Auth("the token endpoint answered without an access_token".into()))?;
    let token_type = parsed
        .token_type
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Bearer".into());
    let lifetime = parsed
        .expires_in
        .as_ref()
        .and_then(seconds)
        .map_or(DEFAULT_LIFETIME, |s| Duration::from_secs_f64(s.clamp(0.0, 1e9)));
    let header = crate::secret::auth_header(&token_type, &access)
        .map_err(|e| Error::Auth(format!("the token endpoint answered with an unusable token: {e}")))?;
    Ok(Token::expiring_in(header, lifetime))
}

/// A number of seconds, whether the server sent a number or a numeric string.
pub fn seconds(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// The OAuth client-credentials grant (`oauth-m2m`): HTTP Basic with the client id and secret,
/// `grant_type=client_credentials&scope=all-apis`.
pub struct ClientCredentials {
    /// The service principal's client id.
    pub client_id: String,
    /// Its secret.
    pub client_secret: Secret,
    /// Where to send the request.
    pub discovery: Discovery,
}

impl ClientCredentials {
    /// A new access token.
    pub async fn fetch(&self, http: &HttpClient, cfg: &Config) -> Result<Token> {
        let endpoint = self.discovery.token_endpoint(http, cfg).await?;
        log::debug!("retrieving an OAuth token for client {}", self.client_id);
        let form = vec![
            ("grant_type", "client_credentials".to_string()),
            ("scope", "all-apis".to_string()),
        ];
        let auth = Auth::Basic {
            user: self.client_id.clone(),
            password: self.client_secret.clone(),
        };
        request_token(http, cfg, endpoint, form, auth).await
    }
}

/// Where the OIDC ID token to exchange comes from.
pub enum SubjectToken {
    /// Read once from the environment at resolution (`env-oidc`).
    Fixed(Secret),
    /// Read from this file at every exchange, so a rotated token is picked up (`file-oidc`).
    File(std::path::PathBuf),
}

impl SubjectToken {
    /// The ID token now.
    pub fn read(&self) -> Result<Secret> {
        match self {
            SubjectToken::Fixed(t) => Ok(t.clone()),
            SubjectToken::File(path) => read_token_file(path),
        }
    }
}

/// An ID token from a file: trimmed, and an error when the file is missing, unreadable, not a regular file,
/// larger than [`crate::small_file::MAX_BYTES`], not UTF-8 or empty.
pub fn read_token_file(path: &std::path::Path) -> Result<Secret> {
    use crate::small_file::ReadError;
    let bytes = crate::small_file::read(path).map_err(|e| match e {
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Error::Auth(format!("file {} does not exist", path.display()))
        }
        ReadError::Io(e) => Error::Auth(format!("cannot read {}: {e}", path.display())),
        other => Error::Auth(format!("cannot read {}: it {other}", path.display())),
    })?;
    let text =
        String::from_utf8(bytes).map_err(|_| Error::Auth(format!("file {} is not UTF-8 text", path.display())))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Error::Auth(format!("file {} is empty", path.display())));
    }
    Ok(Secret::new(token))
}

/// Workload identity federation (`env-oidc`, `file-oidc`): an RFC 8693 token exchange of an OIDC ID token for a
/// Databricks access token, as the SDK's `DatabricksOidcTokenSource` does it: form fields
/// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`, `scope=all-apis`,
/// `subject_token_type=urn:ietf:params:oauth:token-type:jwt`, `subject_token` and, for workload identity
/// federation, `client_id` (without one it is account-wide token federation). No client secret, no Basic auth.
pub struct TokenExchange {
    /// The service principal's client id, if any.
    pub client_id: Option<String>,
    /// The ID token source.
    pub subject: SubjectToken,
    /// Where to send the request.
    pub discovery: Discovery,
}

/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The subject token type for an OIDC ID token.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

impl TokenExchange {
    /// A new access token for the current ID token.
    pub async fn fetch(&self, http: &HttpClient, cfg: &Config) -> Result<Token> {
        let subject = self.subject.read()?;
        let endpoint = self.discovery.token_endpoint(http, cfg).await?;
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT.to_string()),
            ("scope", "all-apis".to_string()),
            ("subject_token_type", JWT_TOKEN_TYPE.to_string()),
            ("subject_token", subject.expose().to_string()),
        ];
        if let Some(id) = &self.client_id {
            form.push(("client_id", id.clone()));
        }
        request_token(http, cfg, endpoint, form, Auth::None).await
    }
}

#[cfg(test)]
mod tests {
    use super::check_origin;

    #[test]
    fn only_the_hosts_own_origin_gets_credentials() {
        for ok in [
            ("https://h.example", "https://h.example/oidc/v1/token"),
            ("https://h.example/", "https://H.EXAMPLE:443/oidc/v1/token"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/oidc/v1/token"),
        ] {
            assert!(check_origin(ok.0, ok.1).is_ok(), "{ok:?}");
        }
        for bad in [
            ("https://h.example", "http://h.example/oidc/v1/token"),
            ("https://h.example", "https://h.example:8443/oidc/v1/token"),
            ("https://h.example", "https://evil.example/oidc/v1/token"),
            ("https://h.example", "http://127.0.0.1:1/steal"),
            ("https://h.example", "/oidc/v1/token"),
        ] {
            let err = check_origin(bad.0, bad.1).unwrap_err().to_string();
            assert!(err.contains(bad.0) && err.contains(bad.1), "{err}");
        }
    }
}
