//! Credentials: one file per strategy, an ordered chain in [`default`].
//!
//! A strategy whose required attributes are missing is skipped (`Ok(None)`); a strategy whose attributes are
//! present but that fails raises an error naming it: it never silently falls through to the next one (the
//! Python SDK's rule, which keeps misconfiguration visible).
//!
//! Choosing a strategy never touches the network: strategies that need a token from somewhere (an OAuth
//! endpoint, the metadata service, the `databricks` CLI) get it at the first call, through the shared
//! [`token::TokenCache`], and an error then names the strategy.

pub mod basic;
pub mod databricks_cli;
pub mod default;
pub mod env_oidc;
pub mod file_oidc;
pub mod m2m;
pub mod metadata_service;
pub mod oauth;
pub mod pat;
pub mod token;

use crate::api::http::{HttpClient, oauth_message};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Something that can produce an `Authorization` header for API calls.
pub enum Credentials {
    /// A fixed header (personal access token, basic auth).
    Static {
        /// The strategy name (`pat`, `basic`).
        auth_type: &'static str,
        /// The full header value, `Bearer <token>` or `Basic <base64>`.
        header: Secret,
    },
    /// A token that expires and is fetched again before it does.
    Refreshing {
        /// The strategy name.
        auth_type: &'static str,
        /// Where new tokens come from.
        source: Source,
        /// The current token.
        cache: Box<token::TokenCache>,
    },
}

/// Where a refreshing strategy gets its tokens.
pub enum Source {
    /// OAuth client credentials (`oauth-m2m`).
    ClientCredentials(oauth::ClientCredentials),
    /// OIDC token exchange (`env-oidc`, `file-oidc`).
    TokenExchange(oauth::TokenExchange),
    /// The Databricks metadata service (`metadata-service`).
    MetadataService(metadata_service::MetadataService),
    /// `databricks auth token` (`databricks-cli`).
    Cli(databricks_cli::CliToken),
}

impl Source {
    async fn fetch(&self, http: &HttpClient, cfg: &Config) -> Result<token::Token> {
        match self {
            Source::ClientCredentials(s) => s.fetch(http, cfg).await,
            Source::TokenExchange(s) => s.fetch(http, cfg).await,
            Source::MetadataService(s) => s.fetch(http, cfg).await,
            Source::Cli(s) => s.fetch(cfg).await,
        }
    }
}

impl Credentials {
    /// Credentials that refresh their token from `source`.
    pub fn refreshing(auth_type: &'static str, source: Source) -> Credentials {
        Credentials::Refreshing {
            auth_type,
            source,
            cache: Box::default(),
        }
    }

    /// The SDK name of the strategy that produced these credentials (`pat`, `oauth-m2m`, ...).
    pub fn auth_type(&self) -> &'static str {
        match self {
            Credentials::Static { auth_type, .. } | Credentials::Refreshing { auth_type, .. } => auth_type,
        }
    }

    /// Called when the server refused `rejected` (401/403): a refreshing strategy drops it, so the next
    /// [`Credentials::authorization`] fetches a new token. Returns whether a retry can use another token.
    pub fn forget(&self, rejected: &Secret) -> bool {
        match self {
            Credentials::Static { .. } => false,
            Credentials::Refreshing { cache, .. } => cache.forget(rejected),
        }
    }

    /// A new token straight from its source, bypassing the process cache (`None` for a static header): what
    /// the broker stores when it hands out OAuth tokens (it needs the whole lifetime, not what is left of a
    /// cached one). A failure is [`Error::Auth`] like [`Credentials::authorization`]'s.
    pub async fn fetch_new(&self, http: &HttpClient, cfg: &Config) -> Result<Option<token::Token>> {
        match self {
            Credentials::Static { .. } => Ok(None),
            Credentials::Refreshing { auth_type, source, .. } => source
                .fetch(http, cfg)
                .await
                .map(Some)
                .map_err(|e| Error::Auth(cfg.wrap(&format!("{auth_type}: {}", reason_of(&e))))),
        }
    }

    /// Whether this strategy yields OAuth access tokens (everything that refreshes; not `pat` or `basic`).
    pub fn yields_oauth(&self) -> bool {
        matches!(self, Credentials::Refreshing { .. })
    }

    /// The `Authorization` header value to send now (refreshing a token when needed). A failure is
    /// [`Error::Auth`] `"<strategy>: <reason>. Config: ..."`, except a retry budget that ran out, which stays
    /// [`Error::Timeout`] chained to the last error.
    pub async fn authorization(&self, http: &HttpClient, cfg: &Config) -> Result<Secret> {
        match self {
            Credentials::Static { header, .. } => Ok(header.clone()),
            Credentials::Refreshing {
                auth_type,
                source,
                cache,
            } => cache.get(|| source.fetch(http, cfg)).await.map_err(|e| match e {
                // A budget that ran out stays a timeout, chained to the last error (as for every other call).
                Error::Timeout { message, last } => Error::Timeout {
                    message: cfg.wrap(&format!("{auth_type}: {message}")),
                    last,
                },
                e => Error::Auth(cfg.wrap(&format!("{auth_type}: {}", reason_of(&e)))),
            }),
        }
    }
}

/// The reason of a token failure, for the message (an OAuth error reads `<error>: <description>`).
fn reason_of(e: &Error) -> String {
    match e {
        Error::Api(f) => oauth_message(f),
        other => other.to_string(),
    }
}

/// One way of finding credentials.
pub trait CredentialsStrategy: Sync {
    /// The SDK's name for it, also the value of `auth_type` that selects it.
    fn name(&self) -> &'static str;
    /// `Ok(None)` when the attributes it needs are not configured; `Err` when they are but are unusable.
    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>>;
}
