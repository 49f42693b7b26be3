//! The default credentials chain: the SDK's order, restricted to the strategies we implement.
//!
//! Choosing never touches the network, so a failure here is a configuration problem ([`Error::Config`]):
//! `default auth: <strategy>: <reason>. Config: ... Env: ...`.

use super::basic::Basic;
use super::databricks_cli::DatabricksCli;
use super::env_oidc::EnvOidc;
use super::file_oidc::FileOidc;
use super::m2m::M2m;
use super::metadata_service::Metadata;
use super::pat::Pat;
use super::{Credentials, CredentialsStrategy};
use crate::config::Config;
use crate::error::{Error, Result};

/// Strategies in the SDK's order (SDK-BEHAVIOUR.md §4), without those we do not implement (`github-oidc`, the
/// Azure and Google ones, `external-browser`, `runtime`, `model-serving`).
pub const STRATEGIES: &[&dyn CredentialsStrategy] =
    &[&Pat, &Basic, &Metadata, &M2m, &EnvOidc, &FileOidc, &DatabricksCli];

/// The SDK's message when nothing fits (with the debug suffix added by [`Config::wrap`]).
pub const CANNOT_CONFIGURE: &str = "default auth: cannot configure default credentials, please check \
    https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure \
    credentials for your preferred authentication method.";

/// Pick the credentials for `cfg`: only the strategy named by `auth_type` when it is set, else the first that
/// applies.
pub fn resolve(cfg: &Config) -> Result<Credentials> {
    let wanted = cfg.get("auth_type");
    for strategy in STRATEGIES {
        if wanted.is_some_and(|w| w != strategy.name()) {
            continue;
        }
        match strategy.configure(cfg) {
            Ok(Some(c)) => return Ok(c),
            Ok(None) => {}
            Err(e) => {
                let msg = format!("default auth: {}: {e}", strategy.name());
                return Err(Error::Config(cfg.wrap(&msg)));
            }
        }
    }
    Err(Error::Config(cfg.wrap(CANNOT_CONFIGURE)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::resolve(&[], &env)
    }

    /// An environment and the `auth_type` picked, or the exact error.
    type Case<'a> = (&'a [(&'a str, &'a str)], std::result::Result<&'a str, &'a str>);

    #[test]
    fn chain_picks_like_the_sdk() {
        let cases: &[Case] = &[
            (&[("DATABRICKS_HOST", "h"), ("DATABRICKS_TOKEN", "t")], Ok("pat")),
            (
                &[
                    ("DATABRICKS_HOST", "h"),
                    ("DATABRICKS_CLIENT_ID", "c"),
                    ("DATABRICKS_CLIENT_SECRET", "s"),
                ],
                Ok("oauth-m2m"),
            ),
            (
                &[
                    ("DATABRICKS_HOST", "h"),
                    ("DATABRICKS_TOKEN", "t"),
                    ("DATABRICKS_CLIENT_ID", "c"),
                    ("DATABRICKS_CLIENT_SECRET", "s"),
                    ("DATABRICKS_AUTH_TYPE", "oauth-m2m"),
                ],
                Ok("oauth-m2m"),
            ),
            (
                &[("DATABRICKS_HOST", "http://127.0.0.1:9")],
                Err(
                    "default auth: cannot configure default credentials, please check https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure credentials for your preferred authentication method. Config: host=http://127.0.0.1:9. Env: DATABRICKS_HOST",
                ),
            ),
            (
                &[
                    ("DATABRICKS_HOST", "h"),
                    ("DATABRICKS_TOKEN", "t"),
                    ("DATABRICKS_AUTH_TYPE", "bogus"),
                ],
                Err(
                    "default auth: cannot configure default credentials, please check https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure credentials for your preferred authentication method. Config: host=https://h, token=***, auth_type=bogus. Env: DATABRICKS_HOST, DATABRICKS_TOKEN, DATABRICKS_AUTH_TYPE",
                ),
            ),
            (
                &[("DATABRICKS_CLIENT_ID", "c"), ("DATABRICKS_CLIENT_SECRET", "s")],
                Err(
                    "default auth: cannot configure default credentials, please check https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure credentials for your preferred authentication method. Config: client_id=c, client_secret=***. Env: DATABRICKS_CLIENT_ID, DATABRICKS_CLIENT_SECRET",
                ),
            ),
        ];
        for (env, want) in cases {
            let got = cfg(env)
                .and_then(|c| resolve(&c))
                .map(|c| c.auth_type())
                .map_err(|e| e.to_string());
            assert_eq!(got.as_deref().map_err(String::as_str), *want, "{env:?}");
        }
    }

    #[test]
    fn a_bad_token_names_the_strategy_and_hides_the_value() {
        let err = cfg(&[("DATABRICKS_HOST", "h"), ("DATABRICKS_TOKEN", "bad token")]).and_then(|c| resolve(&c));
        let msg = err.err().unwrap().to_string();
        assert!(
            msg.starts_with("default auth: pat: token: must not contain whitespace"),
            "{msg}"
        );
        assert!(!msg.contains("bad token"), "{msg}");
    }
}
