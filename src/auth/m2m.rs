//! `oauth-m2m`: OAuth client credentials for a service principal (what a Databricks App gets). Requires
//! `host`, `client_id` and `client_secret`.
//!
//! Discovery then `POST token_endpoint` with HTTP Basic client credentials and
//! `grant_type=client_credentials&scope=all-apis` (see [`super::oauth`]). Unlike the SDK (which re-discovers and
//! re-fetches for every `WorkspaceClient()`), the access token is cached per configuration for the life of the
//! process by [`super::token::TokenCache`].

use super::oauth::{ClientCredentials, Discovery};
use super::{Credentials, CredentialsStrategy, Source};
use crate::config::Config;
use crate::error::Result;
use crate::secret::Secret;

/// The SDK's name for this strategy.
pub const NAME: &str = "oauth-m2m";

/// The `oauth-m2m` strategy.
pub struct M2m;

impl CredentialsStrategy for M2m {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let (Some(_), Some(client_id), Some(secret)) = (cfg.host(), cfg.get("client_id"), cfg.get("client_secret"))
        else {
            return Ok(None);
        };
        Ok(Some(Credentials::refreshing(
            NAME,
            Source::ClientCredentials(ClientCredentials {
                client_id: client_id.to_string(),
                client_secret: Secret::new(secret),
                discovery: Discovery::default(),
            }),
        )))
    }
}
