//! The identity part of a cache key: the principal a configuration authenticates as, without secrets.

use crate::config::Config;
use crate::secret::Secret;

pub(super) fn sha256_hex_prefix(data: &str, chars: usize) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()[..chars].to_string()
}

/// The principal a configuration authenticates as, without secrets: the identity part of the cache key, so two
/// principals never share a cached token (issue 9 item 1). Per strategy:
/// `pat:<16 hex of sha256(token)>`, `oauth-m2m:<client id>`, `basic:<username>`,
/// `env-oidc:<client id>:<16 hex of sha256(issuer, subject)>` (of the ID token's `iss` and `sub` claims; of the
/// whole token when it is not a readable JWT), `file-oidc:<client id>:<token file>`,
/// `metadata-service:<16 hex of sha256(URL)>`, and `databricks-cli:<16 hex of sha256(CLI path or PATH, profile,
/// config file, account id)>`; any other strategy `<name>:<16 hex of sha256(all its settings)>`.
pub fn identity(config: &Config) -> String {
    let get = |name: &str| config.get(name).unwrap_or_default();
    let hash = |parts: &[&str]| sha256_hex_prefix(&parts.join("\n"), 16);
    match config.get("auth_type") {
        Some("pat") => format!("pat:{}", hash(&[get("token")])),
        Some("oauth-m2m") => format!("oauth-m2m:{}", get("client_id")),
        Some("basic") => format!("basic:{}", get("username")),
        Some("env-oidc") => {
            let token = config
                .ambient
                .oidc_token
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            let subject = match jwt_subject(token) {
                Some((iss, sub)) => hash(&[&iss, &sub]),
                None => hash(&[token]),
            };
            format!("env-oidc:{}:{subject}", get("client_id"))
        }
        Some("file-oidc") => {
            let file = get("oidc_token_filepath");
            let file = std::path::absolute(file).map_or_else(|_| file.to_string(), |p| p.display().to_string());
            format!("file-oidc:{}:{file}", get("client_id"))
        }
        Some("metadata-service") => format!("metadata-service:{}", hash(&[get("metadata_service_url")])),
        Some("databricks-cli") => {
            let cli = match config.get("databricks_cli_path") {
                Some(p) => p.to_string(),
                None => format!("PATH={}", config.ambient.path.as_deref().unwrap_or_default()),
            };
            let parts = [cli.as_str(), get("profile"), get("config_file"), get("account_id")];
            format!("databricks-cli:{}", hash(&parts))
        }
        Some(other) => {
            let key = config.identity_key();
            let all: Vec<&str> = key.iter().map(|v| v.as_deref().unwrap_or_default()).collect();
            format!("{other}:{}", hash(&all))
        }
        None => "unknown".to_string(),
    }
}

/// The `iss` and `sub` claims of a JWT (not verified: they only tell principals apart).
fn jwt_subject(token: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let claim = |name: &str| claims.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
    Some((claim("iss").unwrap_or_default(), claim("sub")?))
}
