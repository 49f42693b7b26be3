//! `file-oidc`: workload identity federation with an OIDC ID token read from the file `oidc_token_filepath` /
//! `DATABRICKS_OIDC_TOKEN_FILE` (for example a Kubernetes projected service-account token). Requires `host` and
//! `oidc_token_filepath`; `client_id` as for `env-oidc`.
//!
//! The file is read when the strategy is chosen (a missing, unreadable or empty file is an error naming the
//! strategy; the SDK skips to the next strategy) and again at every exchange, so a rotated token is used.

use std::path::PathBuf;

use super::oauth::{Discovery, SubjectToken, TokenExchange, read_token_file};
use super::{Credentials, CredentialsStrategy, Source};
use crate::config::Config;
use crate::error::Result;

/// The SDK's name for this strategy.
pub const NAME: &str = "file-oidc";

/// The `file-oidc` strategy.
pub struct FileOidc;

impl CredentialsStrategy for FileOidc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let (Some(_), Some(path)) = (cfg.host(), cfg.get("oidc_token_filepath")) else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        read_token_file(&path)?;
        Ok(Some(Credentials::refreshing(
            NAME,
            Source::TokenExchange(TokenExchange {
                client_id: cfg.get("client_id").map(str::to_string),
                subject: SubjectToken::File(path),
                discovery: Discovery::default(),
            }),
        )))
    }
}
