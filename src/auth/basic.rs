//! `basic` (legacy): `username` and `password` sent as `Authorization: Basic base64(username:password)` on
//! every request. Requires `host`, `username` and `password`. Only the header carries them; they are never put
//! in a URL.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Credentials, CredentialsStrategy};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The `basic` strategy.
pub struct Basic;

impl CredentialsStrategy for Basic {
    fn name(&self) -> &'static str {
        "basic"
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let (Some(_), Some(user), Some(password)) = (cfg.host(), cfg.get("username"), cfg.get("password")) else {
            return Ok(None);
        };
        // RFC 7617: the user id cannot hold a colon, and neither may carry control characters (header injection).
        if user.contains(':') {
            return Err(Error::invalid("username", "must not contain ':'"));
        }
        if user.chars().chain(password.chars()).any(char::is_control) {
            return Err(Error::invalid(
                "username/password",
                "must not contain control characters",
            ));
        }
        let encoded = STANDARD.encode(format!("{user}:{password}"));
        Ok(Some(Credentials::Static {
            auth_type: "basic",
            header: Secret::new(format!("Basic {encoded}")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn header_is_base64_of_user_colon_password() {
        let env: HashMap<String, String> = [
            ("DATABRICKS_HOST", "h"),
            ("DATABRICKS_USERNAME", "abc"),
            ("DATABRICKS_PASSWORD", "%Y#X$Z"),
        ]
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
        let cfg = Config::resolve(&[], &env).unwrap();
        let Some(Credentials::Static { header, .. }) = Basic.configure(&cfg).unwrap() else {
            panic!("basic should apply");
        };
        assert_eq!(header.expose(), "Basic YWJjOiVZI1gkWg==");
    }
}
