//! `env-oidc`: workload identity federation with an OIDC ID token from an environment variable,
//! `DATABRICKS_OIDC_TOKEN` or the one named by `oidc_token_env` / `DATABRICKS_OIDC_TOKEN_ENV` (for example a CI
//! system's token). Requires `host` and the token; `client_id` selects workload identity federation for that
//! service principal, without it the exchange is account-wide token federation. The token is exchanged at the
//! discovered token endpoint (see [`super::oauth::TokenExchange`]).
//!
//! The variable is read when the configuration is resolved. When `oidc_token_env` names a variable that is
//! not set, that is an error (the SDK skips to the next strategy).

use super::oauth::{Discovery, SubjectToken, TokenExchange};
use super::{Credentials, CredentialsStrategy, Source};
use crate::config::Config;
use crate::error::{Error, Result};

/// The SDK's name for this strategy.
pub const NAME: &str = "env-oidc";

/// The `env-oidc` strategy.
pub struct EnvOidc;

impl CredentialsStrategy for EnvOidc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        if cfg.host().is_none() {
            return Ok(None);
        }
        let Some(token) = cfg.ambient.oidc_token.clone() else {
            return match cfg.get("oidc_token_env") {
                Some(var) => Err(Error::Auth(format!(
                    "oidc_token_env names the environment variable {var}, which is not set"
                ))),
                None => Ok(None),
            };
        };
        Ok(Some(Credentials::refreshing(
            NAME,
            Source::TokenExchange(TokenExchange {
                client_id: cfg.get("client_id").map(str::to_string),
                subject: SubjectToken::Fixed(token),
                discovery: Discovery::default(),
            }),
        )))
    }
}
