//! Credentials: one file per strategy, an ordered chain in [`default`].
//!
//! A strategy whose required attributes are missing is skipped (`Ok(None)`); a strategy whose attributes are
//! present but that fails raises an error naming it: it never silently falls through to the next one (the
//! Python SDK's rule, which keeps misconfiguration visible).

pub mod default;
pub mod m2m;
pub mod pat;

use crate::api::http::HttpClient;
use crate::config::Config;
use crate::error::Result;
use crate::secret::Secret;

/// Something that can produce an `Authorization` header for API calls.
pub enum Credentials {
    /// A fixed header (personal access token).
    Static {
        /// The strategy name (`pat`).
        auth_type: &'static str,
        /// The full header value, `Bearer <token>`.
        header: Secret,
    },
    /// OAuth machine-to-machine, with a cached access token.
    OAuthM2m(m2m::M2mTokenSource),
}

impl Credentials {
    /// The SDK name of the strategy that produced these credentials (`pat`, `oauth-m2m`).
    pub fn auth_type(&self) -> &'static str {
        match self {
            Credentials::Static { auth_type, .. } => auth_type,
            Credentials::OAuthM2m(_) => m2m::NAME,
        }
    }

    /// The `Authorization` header value to send now (refreshing an OAuth token when needed).
    pub async fn authorization(&self, http: &HttpClient, cfg: &Config) -> Result<Secret> {
        match self {
            Credentials::Static { header, .. } => Ok(header.clone()),
            Credentials::OAuthM2m(src) => src.authorization(http, cfg).await,
        }
    }
}

/// One way of finding credentials.
pub trait CredentialsStrategy: Sync {
    /// The SDK's name for it, also the value of `auth_type` that selects it.
    fn name(&self) -> &'static str;
    /// `Ok(None)` when the attributes it needs are not configured; `Err` when they are but are unusable.
    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>>;
}
