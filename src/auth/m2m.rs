//! `oauth-m2m`: OAuth client credentials for a service principal (what a Databricks App gets).
//!
//! Discovery: `GET {host}/oidc/.well-known/oauth-authorization-server` gives `token_endpoint`; then
//! `POST token_endpoint` with HTTP Basic client credentials and `grant_type=client_credentials&scope=all-apis`.
//! Unlike the SDK (which re-discovers and re-fetches for every `WorkspaceClient()`), the access token is cached
//! per configuration for the life of the process and refreshed 40 s before it expires; one refresh runs at a
//! time and concurrent callers wait for it. Discovery and the token request get the same timeout and retry
//! policy as every other call.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;

use super::{Credentials, CredentialsStrategy};
use crate::api::http::{Auth, Body, Call, HttpClient, oauth_message};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The SDK's name for this strategy.
pub const NAME: &str = "oauth-m2m";
/// A token this close to expiry is refreshed (the SDK's `Token.expired` margin).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(40);

/// The `oauth-m2m` strategy.
pub struct M2m;

impl CredentialsStrategy for M2m {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let (Some(host), Some(client_id), Some(secret)) = (cfg.host(), cfg.get("client_id"), cfg.get("client_secret"))
        else {
            return Ok(None);
        };
        Ok(Some(Credentials::OAuthM2m(M2mTokenSource {
            host: host.to_string(),
            client_id: client_id.to_string(),
            client_secret: Secret::new(secret),
            state: tokio::sync::Mutex::new(State::default()),
        })))
    }
}

#[derive(Default)]
struct State {
    token_endpoint: Option<String>,
    token: Option<(Secret, Instant)>,
}

/// A cached OAuth access token and how to get a new one.
pub struct M2mTokenSource {
    host: String,
    client_id: String,
    client_secret: Secret,
    state: tokio::sync::Mutex<State>,
}

#[derive(Deserialize)]
struct Discovery {
    token_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

impl M2mTokenSource {
    /// `Bearer <access token>`, fetched or refreshed when needed.
    pub async fn authorization(&self, http: &HttpClient, cfg: &Config) -> Result<Secret> {
        let mut state = self.state.lock().await;
        if let Some((token, expires)) = &state.token
            && Instant::now() + EXPIRY_MARGIN < *expires
        {
            return Ok(token.clone());
        }
        let fail = |reason: String| Error::Auth(cfg.wrap(&format!("{NAME}: {reason}")));
        let endpoint = match &state.token_endpoint {
            Some(e) => e.clone(),
            None => {
                let e = self.discover(http, cfg).await.map_err(|e| fail(reason_of(&e)))?;
                state.token_endpoint = Some(e.clone());
                e
            }
        };
        let call = Call {
            method: Method::POST,
            url: endpoint,
            body: Body::Form(vec![
                ("grant_type", "client_credentials".into()),
                ("scope", "all-apis".into()),
            ]),
            // Asking twice for an access token is harmless.
            idempotent: true,
            auth: Auth::Basic {
                user: self.client_id.clone(),
                password: self.client_secret.clone(),
            },
            auth_type: None,
            attempt_timeout: cfg.http_timeout,
            budget: cfg.retry_timeout,
        };
        log::debug!("retrieving an OAuth token for client {}", self.client_id);
        let resp = http.send(&call).await.map_err(|e| fail(reason_of(&e)))?;
        let parsed: TokenResponse = serde_json::from_slice(&resp.body)
            .map_err(|_| fail("the token endpoint did not answer with JSON".into()))?;
        let access = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| fail("no access_token".into()))?;
        let token_type = parsed.token_type.unwrap_or_else(|| "Bearer".into());
        let expires_in = parsed.expires_in.as_ref().and_then(seconds).unwrap_or(3600.0);
        let header = Secret::new(format!("{token_type} {access}"));
        state.token = Some((
            header.clone(),
            Instant::now() + Duration::from_secs_f64(expires_in.clamp(0.0, 1e7)),
        ));
        Ok(header)
    }

    async fn discover(&self, http: &HttpClient, cfg: &Config) -> Result<String> {
        let call = Call {
            method: Method::GET,
            url: format!("{}/oidc/.well-known/oauth-authorization-server", self.host),
            body: Body::Empty,
            idempotent: true,
            auth: Auth::None,
            auth_type: None,
            attempt_timeout: cfg.http_timeout,
            budget: cfg.retry_timeout,
        };
        let resp = http.send(&call).await?;
        let d: Discovery = serde_json::from_slice(&resp.body)
            .map_err(|_| Error::Auth("OIDC discovery did not answer with JSON".into()))?;
        d.token_endpoint
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::Auth("OIDC discovery has no token_endpoint".into()))
    }
}

/// `expires_in` as seconds, whether the server sent a number or a numeric string.
fn seconds(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn reason_of(e: &Error) -> String {
    match e {
        Error::Api(f) => oauth_message(f),
        other => other.to_string(),
    }
}
