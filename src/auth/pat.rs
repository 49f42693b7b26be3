//! `pat`: a personal access token from `token` / `DATABRICKS_TOKEN`, sent as `Authorization: Bearer <token>`.
//! Requires `host` and `token`.

use super::{Credentials, CredentialsStrategy};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The `pat` strategy.
pub struct Pat;

impl CredentialsStrategy for Pat {
    fn name(&self) -> &'static str {
        "pat"
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let (Some(_), Some(token)) = (cfg.host(), cfg.get("token")) else {
            return Ok(None);
        };
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "token",
                "must not contain whitespace or control characters",
            ));
        }
        Ok(Some(Credentials::Static {
            auth_type: "pat",
            header: Secret::new(format!("Bearer {token}")),
        }))
    }
}
