//! A workspace client: a resolved [`Config`], its credentials (shared process-wide per configuration, so an
//! OAuth token is fetched once and reused until near expiry) and the pooled HTTP client.

use std::sync::Arc;

use reqwest::Method;

use crate::api::http::{Auth, Body, Call, Response};
use crate::auth::{Credentials, default};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::runtime::{Shared, shared};

/// A configured connection to one workspace.
pub struct Workspace {
    /// The resolved configuration (with `auth_type` set to the chosen strategy).
    pub config: Config,
    credentials: Arc<Credentials>,
    shared: Arc<Shared>,
}

impl Workspace {
    /// Resolve credentials for `config`, reusing this process's cached ones when the configuration is the same.
    pub fn new(mut config: Config) -> Result<Workspace> {
        let shared = shared()?;
        let key = config.identity_key();
        let credentials = shared.credentials.get_or_insert(key, || default::resolve(&config))?;
        config.set("auth_type", credentials.auth_type());
        Ok(Workspace {
            config,
            credentials,
            shared,
        })
    }

    /// The workspace URL.
    pub fn host(&self) -> &str {
        self.config.host().unwrap_or_default()
    }

    /// Call a REST API path (`/api/2.0/...`) with this workspace's credentials.
    ///
    /// When the server refuses a token that expires and is fetched (OAuth and the like) with 401/403 before
    /// its expiry (it was revoked, or the secret rotated), the token is dropped and the call sent once more
    /// with a new one: the refusal means the server did nothing, so this is safe even for `token/create`.
    pub async fn api(&self, method: Method, path: &str, body: Body, idempotent: bool) -> Result<Response> {
        let header = self.credentials.authorization(&self.shared.http, &self.config).await?;
        let mut call = Call {
            body,
            idempotent,
            auth: Auth::Header(header.clone()),
            auth_type: Some(self.credentials.auth_type().to_string()),
            ..Call::new(method, format!("{}{path}", self.host()), &self.config)
        };
        let mut result = self.shared.http.send(&call).await;
        if let Err(Error::Api(f)) = &result
            && matches!(f.status, 401 | 403)
            && self.credentials.forget(&header)
        {
            log::debug!(
                "{} {path}: the token was refused ({}); retrying with a new one",
                call.method,
                f.status
            );
            call.auth = Auth::Header(self.credentials.authorization(&self.shared.http, &self.config).await?);
            result = self.shared.http.send(&call).await;
        }
        result.map_err(|e| match e {
            // Like the SDK, say which configuration was rejected (secrets masked).
            Error::Api(mut f) if matches!(f.status, 401 | 403) => {
                f.message = self.config.wrap(&f.message);
                Error::Api(f)
            }
            other => other,
        })
    }
}
