//! `metadata-service`: a token from a local Databricks metadata service (what some Databricks-managed
//! environments and the VS Code extension provide). Requires `host` and `metadata_service_url` /
//! `DATABRICKS_METADATA_SERVICE_URL`; the URL is sensitive (it may carry a secret) and is never shown.
//!
//! `GET <metadata_service_url>` with `X-Databricks-Metadata-Version: 1` and `X-Databricks-Host: <host>`,
//! answered with JSON `access_token`, `token_type` and `expires_on` (Unix seconds). The SDK asks at
//! `Config()` time; we ask at the first call, then keep the token until near `expires_on`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;

use super::oauth::seconds;
use super::token::Token;
use super::{Credentials, CredentialsStrategy, Source};
use crate::api::http::{Call, HttpClient};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The SDK's name for this strategy.
pub const NAME: &str = "metadata-service";
/// `X-Databricks-Metadata-Version`.
pub const VERSION_HEADER: &str = "X-Databricks-Metadata-Version";
/// `X-Databricks-Host`.
pub const HOST_HEADER: &str = "X-Databricks-Host";
/// The SDK's timeout for the metadata service.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The `metadata-service` strategy.
pub struct Metadata;

impl CredentialsStrategy for Metadata {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let (Some(host), Some(url)) = (cfg.host(), cfg.get("metadata_service_url")) else {
            return Ok(None);
        };
        let ok = reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(Error::invalid("metadata_service_url", "is not an http(s) URL"));
        }
        Ok(Some(Credentials::refreshing(
            NAME,
            Source::MetadataService(MetadataService {
                url: Secret::new(url),
                host: host.to_string(),
            }),
        )))
    }
}

/// Where the metadata service is, and for which workspace we ask.
pub struct MetadataService {
    url: Secret,
    host: String,
}

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_on: Option<serde_json::Value>,
}

impl MetadataService {
    /// A new token from the service.
    pub async fn fetch(&self, http: &HttpClient, cfg: &Config) -> Result<Token> {
        let call = Call {
            headers: vec![(VERSION_HEADER, "1".to_string()), (HOST_HEADER, self.host.clone())],
            secret_url: true,
            attempt_timeout: TIMEOUT.min(cfg.http_timeout),
            ..Call::new(Method::GET, self.url.expose().to_string(), cfg)
        };
        let resp = http.send(&call).await?;
        let answer: Answer = serde_json::from_slice(&resp.body)
            .map_err(|_| Error::Auth("Metadata Service did not answer with JSON".into()))?;
        let access = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth("Metadata Service returned empty token".into()))?;
        let token_type = answer
            .token_type
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth("Metadata Service returned empty token type".into()))?;
        let expires_on = answer
            .expires_on
            .as_ref()
            .and_then(seconds)
            .filter(|s| s.is_finite() && *s > 0.0)
            .ok_or_else(|| Error::Auth("Metadata Service returned invalid expiry".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let lifetime = Duration::from_secs_f64((expires_on - now).clamp(0.0, 1e9));
        let header = crate::secret::auth_header(&token_type, &access)
            .map_err(|e| Error::Auth(format!("Metadata Service returned an unusable token: {e}")))?;
        Ok(Token::expiring_in(header, lifetime))
    }
}
