//! Token hygiene: revoking the stale tokens this library (or the DevBox app) minted, and a `QUOTA_EXCEEDED`
//! error that says how many tokens are live and how to clean up.
//!
//! A workspace lets one identity hold 600 live tokens (FACTS.md §1). The DevBox app mints one per restart and
//! never revokes it, so long-lived apps hit the quota. We only ever revoke tokens whose comment we wrote: the
//! `devbox-native-` prefix (or the caller's), and with `include_app_tokens` the app's `sdk-<time_ns>`.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::api::tokens::{self, CreatedToken, TokenInfo};
use crate::error::{ApiFailure, Error, Result};
use crate::workspace::Workspace;

/// The comment prefix of every token this library mints.
pub const COMMENT_PREFIX: &str = "devbox-native-";
/// The error code of the quota error.
pub const QUOTA_EXCEEDED: &str = "QUOTA_EXCEEDED";

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether a comment is the DevBox app's: `sdk-` followed by digits (`time.time_ns()`).
pub fn is_app_comment(comment: &str) -> bool {
    comment
        .strip_prefix("sdk-")
        .is_some_and(|ns| !ns.is_empty() && ns.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an error means "this token is not there" (already revoked or expired): revoking is then done.
pub fn is_already_gone(e: &Error) -> bool {
    matches!(e, Error::Api(f) if f.status == 404 || f.error_code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST"))
}

/// Which tokens a cleanup revokes.
#[derive(Debug, Clone)]
pub struct Cleanup {
    /// Tokens whose comment starts with this (never empty).
    pub comment_prefix: String,
    /// Only tokens created at least this many seconds ago.
    pub older_than: Option<i64>,
    /// Also the DevBox app's `sdk-<time_ns>` tokens.
    pub include_app_tokens: bool,
    /// Token ids never revoked (the broker's current tokens).
    pub keep: HashSet<String>,
    /// List what would be revoked, revoke nothing.
    pub dry_run: bool,
}

impl Cleanup {
    /// Our tokens with the default prefix, any age, keeping `keep`.
    pub fn ours(keep: HashSet<String>) -> Cleanup {
        Cleanup {
            comment_prefix: COMMENT_PREFIX.to_string(),
            older_than: None,
            include_app_tokens: false,
            keep,
            dry_run: false,
        }
    }

    /// Check the options (an empty prefix would match every token).
    pub fn check(&self) -> Result<()> {
        if self.comment_prefix.is_empty() {
            return Err(Error::invalid(
                "comment_prefix",
                "must not be empty (it would match every token)",
            ));
        }
        if let Some(s) = self.older_than
            && s < 0
        {
            return Err(Error::invalid(
                "older_than",
                format!("must be zero or more seconds, got {s}"),
            ));
        }
        Ok(())
    }

    /// Whether this cleanup revokes `info` at `now_ms`.
    pub fn selects(&self, info: &TokenInfo, now_ms: i64) -> bool {
        let comment = info.comment.as_deref().unwrap_or_default();
        let ours = comment.starts_with(&self.comment_prefix) || (self.include_app_tokens && is_app_comment(comment));
        let old_enough = self
            .older_than
            .is_none_or(|s| now_ms.saturating_sub(info.creation_time) >= s.saturating_mul(1000));
        ours && old_enough && !self.keep.contains(&info.token_id)
    }
}

/// List the identity's tokens and revoke those `opts` selects. Returns the revoked ids (with `dry_run`, the ids
/// that would be revoked). A token someone else revoked meanwhile counts as revoked. When a revocation fails,
/// the others are still tried and the first error is returned.
pub async fn cleanup(ws: &Workspace, opts: &Cleanup) -> Result<Vec<String>> {
    opts.check()?;
    let now = now_ms();
    let stale: Vec<String> = tokens::list(ws)
        .await?
        .into_iter()
        .filter(|t| opts.selects(t, now))
        .map(|t| t.token_id)
        .collect();
    if opts.dry_run {
        return Ok(stale);
    }
    let mut revoked = Vec::new();
    let mut first_error = None;
    for id in stale {
        match tokens::delete(ws, &id).await {
            Ok(()) => revoked.push(id),
            Err(e) if is_already_gone(&e) => revoked.push(id),
            Err(e) => {
                log::warn!("cleanup: could not revoke token {id}: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    if !revoked.is_empty() {
        log::info!("cleanup: revoked {} stale token(s)", revoked.len());
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(revoked),
    }
}

/// How many of `infos` this library (comment `prefix`), the DevBox app and others minted, as the quota message
/// says it. Each token counts once: a prefix that also matches the app's `sdk-` comments counts those as ours.
pub fn describe_counts(infos: &[TokenInfo], prefix: &str) -> String {
    let comment = |t: &TokenInfo| t.comment.clone().unwrap_or_default();
    let ours = infos.iter().filter(|t| comment(t).starts_with(prefix)).count();
    let app = infos
        .iter()
        .filter(|t| !comment(t).starts_with(prefix) && is_app_comment(&comment(t)))
        .count();
    format!(
        "This identity has {} live tokens ({ours} minted by devbox-native, {app} by the DevBox app, {} other). ",
        infos.len(),
        infos.len().saturating_sub(ours + app)
    )
}

/// The quota error, completed with how many tokens are live (counted with `token/list`) and how to clean up.
pub async fn explain_quota(ws: &Workspace, mut failure: ApiFailure, prefix: &str) -> Error {
    let live = tokens::list(ws)
        .await
        .map(|infos| describe_counts(&infos, prefix))
        .unwrap_or_default();
    failure.message = format!(
        "{}. {live}Revoke stale ones with `devbox-native token cleanup` (add `--include-app-tokens` for the app's \
         sdk- tokens) or devbox_native.cleanup_tokens(), or pass auto_cleanup=True to clean up and retry once.",
        failure.message.trim_end_matches('.')
    );
    Error::Api(failure)
}

/// Mint a token; on `QUOTA_EXCEEDED`, with `auto_cleanup` run that cleanup and retry once, and otherwise (or when
/// the retry hits the quota again) fail with [`explain_quota`]'s message.
pub async fn create_token(
    ws: &Workspace,
    lifetime_seconds: Option<i64>,
    comment: Option<&str>,
    auto_cleanup: Option<&Cleanup>,
) -> Result<CreatedToken> {
    let prefix = auto_cleanup.map_or(COMMENT_PREFIX, |c| c.comment_prefix.as_str());
    let failure = match tokens::create(ws, lifetime_seconds, comment).await {
        Err(Error::Api(f)) if f.error_code.as_deref() == Some(QUOTA_EXCEEDED) => f,
        other => return other,
    };
    let Some(opts) = auto_cleanup else {
        return Err(explain_quota(ws, failure, prefix).await);
    };
    match cleanup(ws, opts).await {
        Ok(revoked) if !revoked.is_empty() => {
            log::warn!(
                "QUOTA_EXCEEDED: revoked {} stale token(s), minting again",
                revoked.len()
            );
        }
        Ok(_) => return Err(explain_quota(ws, failure, prefix).await),
        Err(e) => {
            log::warn!("QUOTA_EXCEEDED: the automatic cleanup failed: {e}");
            return Err(explain_quota(ws, failure, prefix).await);
        }
    }
    match tokens::create(ws, lifetime_seconds, comment).await {
        Err(Error::Api(f)) if f.error_code.as_deref() == Some(QUOTA_EXCEEDED) => {
            Err(explain_quota(ws, f, prefix).await)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(id: &str, comment: Option<&str>, created: i64) -> TokenInfo {
        TokenInfo {
            token_id: id.into(),
            creation_time: created,
            expiry_time: -1,
            comment: comment.map(str::to_string),
        }
    }

    #[test]
    fn selection_by_prefix_age_app_and_keep() {
        let mut c = Cleanup::ours(HashSet::from(["kept".to_string()]));
        let now = 10_000_000;
        assert!(c.selects(&info("a", Some("devbox-native-broker-1"), now), now));
        assert!(!c.selects(&info("kept", Some("devbox-native-x"), 0), now));
        assert!(!c.selects(&info("b", Some("sdk-123"), 0), now));
        assert!(!c.selects(&info("c", None, 0), now));
        assert!(!c.selects(&info("d", Some("my devbox-native-"), 0), now));
        c.include_app_tokens = true;
        assert!(c.selects(&info("b", Some("sdk-123"), 0), now));
        assert!(!c.selects(&info("e", Some("sdk-12x"), 0), now));
        c.older_than = Some(60);
        assert!(!c.selects(&info("a", Some("devbox-native-1"), now - 59_000), now));
        assert!(c.selects(&info("a", Some("devbox-native-1"), now - 60_000), now));
        c.comment_prefix.clear();
        assert!(c.check().unwrap_err().to_string().starts_with("comment_prefix: "));
    }

    #[test]
    fn counts_never_underflow_when_the_prefix_matches_app_comments() {
        let infos = [
            info("a", Some("sdk-1"), 0),
            info("b", Some("sdk-2"), 0),
            info("c", Some("other"), 0),
        ];
        assert_eq!(
            describe_counts(&infos, "sdk-"),
            "This identity has 3 live tokens (2 minted by devbox-native, 0 by the DevBox app, 1 other). "
        );
        assert_eq!(
            describe_counts(&infos, "devbox-native-"),
            "This identity has 3 live tokens (0 minted by devbox-native, 2 by the DevBox app, 1 other). "
        );
    }
}
