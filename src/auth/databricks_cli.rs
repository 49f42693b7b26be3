//! `databricks-cli`: the token of a `databricks auth login` session, from `databricks auth token --host <host>`
//! (plus `--account-id <id>` for an accounts host). Requires `host` and the CLI: `databricks_cli_path` /
//! `DATABRICKS_CLI_PATH`, else `databricks` on `PATH`.
//!
//! As in the SDK, a `databricks` found on `PATH` that is smaller than 1 MiB is the legacy Python CLI (which has
//! no `auth token`) and is passed over, and a CLI that is not there means the strategy does not apply, unless
//! it was asked for: with `auth_type = databricks-cli` or an explicit `databricks_cli_path`, a missing CLI is
//! an error that says so (the SDK then reports "cannot configure default credentials").
//!
//! The CLI runs at the first call (not when the strategy is chosen), with a timeout, and prints JSON
//! `access_token`, `token_type` and `expiry` (RFC 3339); the token is kept until near `expiry`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::token::Token;
use super::{Credentials, CredentialsStrategy, Source};
use crate::config::Config;
use crate::error::{Error, Result};

use crate::small_file;

/// The SDK's name for this strategy.
pub const NAME: &str = "databricks-cli";
/// The CLI's name on `PATH`.
pub const PROGRAM: &str = "databricks";
/// A `databricks` smaller than this is the legacy Python CLI (the SDK's rule).
const MIN_SIZE: u64 = 1024 * 1024;
/// Longest we wait for the CLI (it may refresh its own token over the network).
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Most of the CLI's error output we quote.
const MAX_QUOTE: usize = 1000;

/// The `databricks-cli` strategy.
pub struct DatabricksCli;

/// Why no CLI was found.
enum NotFound {
    Missing(String),
    Legacy(PathBuf),
}

impl CredentialsStrategy for DatabricksCli {
    fn name(&self) -> &'static str {
        NAME
    }

    fn configure(&self, cfg: &Config) -> Result<Option<Credentials>> {
        let Some(host) = cfg.host() else { return Ok(None) };
        let explicit = cfg.get("databricks_cli_path");
        let found = match explicit {
            Some(p) if p.contains('/') => {
                if is_executable(Path::new(p)) {
                    Ok(PathBuf::from(p))
                } else {
                    Err(NotFound::Missing(format!(
                        "databricks_cli_path {p} is not an executable file"
                    )))
                }
            }
            Some(name) => find_on_path(name, cfg.ambient.path.as_deref()),
            None => find_on_path(PROGRAM, cfg.ambient.path.as_deref()),
        };
        let program = match found {
            Ok(p) => p,
            Err(why) => {
                let asked = explicit.is_some() || cfg.get("auth_type") == Some(NAME);
                let reason = match why {
                    NotFound::Missing(r) => r,
                    NotFound::Legacy(p) => format!(
                        "{} is the legacy Databricks CLI (< 0.100), which cannot print tokens",
                        p.display()
                    ),
                };
                if asked {
                    return Err(Error::Auth(format!(
                        "{reason}: install the Databricks CLI (https://docs.databricks.com/dev-tools/cli/install.html) \
                         or set databricks_cli_path"
                    )));
                }
                log::debug!("{NAME}: {reason}");
                return Ok(None);
            }
        };
        let mut args = vec!["auth".to_string(), "token".into(), "--host".into(), host.to_string()];
        if let Some(account) = cfg.get("account_id").filter(|_| cfg.is_account_client()) {
            args.extend(["--account-id".to_string(), account.to_string()]);
        }
        Ok(Some(Credentials::refreshing(
            NAME,
            Source::Cli(CliToken { program, args }),
        )))
    }
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

fn find_on_path(name: &str, path: Option<&str>) -> std::result::Result<PathBuf, NotFound> {
    let mut legacy = None;
    for dir in std::env::split_paths(path.unwrap_or_default()) {
        let candidate = dir.join(name);
        if !is_executable(&candidate) {
            continue;
        }
        if std::fs::metadata(&candidate).map_or(0, |m| m.len()) < MIN_SIZE {
            legacy.get_or_insert(candidate);
            continue;
        }
        return Ok(candidate);
    }
    Err(legacy.map_or_else(
        || NotFound::Missing(format!("the Databricks CLI ({name}) is not on PATH")),
        NotFound::Legacy,
    ))
}

/// How to run the CLI.
pub struct CliToken {
    program: PathBuf,
    args: Vec<String>,
}

#[derive(Deserialize)]
struct Output {
    access_token: Option<String>,
    token_type: Option<String>,
    expiry: Option<String>,
}

impl CliToken {
    /// Run the CLI and read its token. The CLI gets our environment minus the Databricks secrets, and each of
    /// its output streams is read up to [`small_file::MAX_BYTES`]: a CLI that prints more is stopped.
    pub async fn fetch(&self, cfg: &Config) -> Result<Token> {
        log::debug!("running {} auth token", self.program.display());
        let limit = TIMEOUT.max(cfg.http_timeout);
        let shown = self.program.display();
        let out = tokio::time::timeout(limit, self.run()).await.map_err(|_| {
            Error::Auth(format!(
                "{shown} auth token did not finish within {} s",
                limit.as_secs()
            ))
        })??;
        if !out.status.success() {
            // A failing CLI may still have printed a token: mask it too.
            if let Ok(parsed) = serde_json::from_slice::<Output>(&out.stdout)
                && let Some(t) = parsed.access_token
            {
                crate::secret::register(&t);
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message = Some(stdout.trim()).filter(|s| !s.is_empty()).unwrap_or(stderr.trim());
            let message: String = message.chars().take(MAX_QUOTE).collect();
            let message = crate::secret::redact(&message, &[]);
            return Err(Error::Auth(format!("cannot get access token: {message}")));
        }
        parse_output(&out.stdout)
    }

    async fn run(&self) -> Result<std::process::Output> {
        let shown = self.program.display();
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for name in crate::secret::child_env_removals() {
            command.env_remove(name);
        }
        let mut child = command
            .spawn()
            .map_err(|e| Error::Auth(format!("cannot run {shown}: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Auth(format!("cannot read the output of {shown}")));
        };
        // The first stream over the limit ends the wait (the child is killed when dropped).
        let (stdout, stderr) = tokio::try_join!(
            read_capped(stdout, "stdout", &self.program),
            read_capped(stderr, "stderr", &self.program)
        )?;
        let status = child
            .wait()
            .await
            .map_err(|e| Error::Auth(format!("cannot wait for {shown}: {e}")))?;
        Ok(std::process::Output { status, stdout, stderr })
    }
}

/// All of a child's output stream, or an error once it passes [`small_file::MAX_BYTES`].
async fn read_capped(stream: impl tokio::io::AsyncRead + Unpin, name: &str, program: &Path) -> Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    stream
        .take(small_file::MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::Auth(format!("cannot read the {name} of {}: {e}", program.display())))?;
    if bytes.len() as u64 > small_file::MAX_BYTES {
        return Err(Error::Auth(format!(
            "{} auth token printed more than {} on {name}; it was stopped",
            program.display(),
            small_file::MAX_SHOWN
        )));
    }
    Ok(bytes)
}

fn parse_output(stdout: &[u8]) -> Result<Token> {
    let bad = |what: &str| Error::Auth(format!("cannot unmarshal CLI result: {what}"));
    let parsed: Output = serde_json::from_slice(stdout).map_err(|_| bad("not JSON"))?;
    let access = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no access_token"))?;
    let token_type = parsed
        .token_type
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "Bearer".into());
    let header = crate::secret::auth_header(&token_type, &access).map_err(|e| bad(&e))?;
    let expiry = parsed.expiry.ok_or_else(|| bad("no expiry"))?;
    let expires = parse_expiry(&expiry).ok_or_else(|| bad(&format!("expiry {expiry:?} is not a time")))?;
    let lifetime = (expires - OffsetDateTime::now_utc())
        .try_into()
        .unwrap_or(Duration::ZERO);
    Ok(Token::expiring_in(header, lifetime))
}

/// RFC 3339 (what the CLI prints). A time without an offset, which the SDK also accepts, is read as UTC.
fn parse_expiry(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        let naive = s.replacen(' ', "T", 1);
        OffsetDateTime::parse(&format!("{naive}Z"), &Rfc3339).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_formats() {
        let utc = parse_expiry("2030-01-02T03:04:05Z").unwrap();
        assert_eq!(utc.unix_timestamp(), 1_893_553_445);
        assert_eq!(
            parse_expiry("2030-01-02T05:04:05.123456789+02:00")
                .unwrap()
                .unix_timestamp(),
            1_893_553_445
        );
        assert_eq!(parse_expiry("2030-01-02 03:04:05").unwrap(), utc);
        assert_eq!(
            parse_expiry("2030-01-02T03:04:05.5").unwrap().unix_timestamp(),
            1_893_553_445
        );
        assert!(parse_expiry("tomorrow").is_none());
    }

    #[test]
    fn output_parsing() {
        let t =
            parse_output(br#"{"access_token":"at","token_type":"Bearer","expiry":"2999-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(t.header.expose(), "Bearer at");
        for (out, want) in [
            (&b"nope"[..], "cannot unmarshal CLI result: not JSON"),
            (
                br#"{"expiry":"2999-01-01T00:00:00Z"}"#,
                "cannot unmarshal CLI result: no access_token",
            ),
            (
                br#"{"access_token":"a b\r\nX-Evil: 1","expiry":"2999-01-01T00:00:00Z"}"#,
                "cannot unmarshal CLI result: access_token contains whitespace, which a token never holds",
            ),
            (
                br#"{"access_token":"a","expiry":"soon"}"#,
                "cannot unmarshal CLI result: expiry \"soon\" is not a time",
            ),
        ] {
            assert_eq!(parse_output(out).unwrap_err().to_string(), want);
        }
    }
}
