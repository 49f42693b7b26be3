//! The Token API: `POST /api/2.0/token/create`, `GET /api/2.0/token/list`, `POST /api/2.0/token/delete`.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::http::Body;
use crate::error::{ApiFailure, Error, Result};
use crate::secret::{Secret, check_token_value};
use crate::workspace::Workspace;

/// What the workspace says about a token (never its value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Token id (used to revoke it).
    pub token_id: String,
    /// Creation time, epoch milliseconds.
    #[serde(default)]
    pub creation_time: i64,
    /// Expiry time, epoch milliseconds; -1 when it never expires.
    #[serde(default)]
    pub expiry_time: i64,
    /// The comment given at creation.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A freshly minted token.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// The token itself.
    pub value: Secret,
    /// Its metadata.
    pub info: TokenInfo,
}

#[derive(Deserialize)]
struct CreateResponse {
    token_value: Option<String>,
    token_info: Option<TokenInfo>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    token_infos: Vec<TokenInfo>,
}

fn bad_response(path: &str, status: u16, what: &str) -> Error {
    Error::Api(ApiFailure {
        status,
        error_code: None,
        message: format!("{path}: unexpected response: {what}"),
        retry_after: None,
    })
}

/// Check a lifetime in seconds: a positive whole number.
pub fn check_lifetime(param: &str, seconds: i64) -> Result<i64> {
    if seconds <= 0 {
        return Err(Error::invalid(
            param,
            format!("must be a positive number of seconds, got {seconds}"),
        ));
    }
    Ok(seconds)
}

/// Mint a personal access token. Not idempotent: only retried when the request surely did not reach the
/// server, or the server answered 429/503.
pub async fn create(ws: &Workspace, lifetime_seconds: Option<i64>, comment: Option<&str>) -> Result<CreatedToken> {
    const PATH: &str = "/api/2.0/token/create";
    let mut body = serde_json::Map::new();
    if let Some(c) = comment {
        body.insert("comment".into(), json!(c));
    }
    if let Some(l) = lifetime_seconds {
        body.insert("lifetime_seconds".into(), json!(l));
    }
    let resp = ws.api(Method::POST, PATH, Body::Json(body.into()), false).await?;
    let parsed: CreateResponse =
        serde_json::from_slice(&resp.body).map_err(|_| bad_response(PATH, resp.status, "the body is not JSON"))?;
    let value = parsed
        .token_value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad_response(PATH, resp.status, "no token_value"))?;
    let info = parsed.token_info.unwrap_or(TokenInfo {
        token_id: String::new(),
        creation_time: 0,
        expiry_time: -1,
        comment: comment.map(str::to_string),
    });
    if let Err(reason) = check_token_value("token_value", &value) {
        // The workspace minted a token we cannot use: revoke it before saying so.
        if !info.token_id.is_empty()
            && let Err(e) = delete(ws, &info.token_id).await
        {
            log::warn!("cannot revoke the unusable token {}: {e}", info.token_id);
        }
        return Err(bad_response(PATH, resp.status, &reason));
    }
    Ok(CreatedToken {
        value: Secret::new(value),
        info,
    })
}

/// List the caller's live tokens.
pub async fn list(ws: &Workspace) -> Result<Vec<TokenInfo>> {
    const PATH: &str = "/api/2.0/token/list";
    let resp = ws.api(Method::GET, PATH, Body::Empty, true).await?;
    let parsed: ListResponse =
        serde_json::from_slice(&resp.body).map_err(|_| bad_response(PATH, resp.status, "the body is not JSON"))?;
    Ok(parsed.token_infos)
}

/// Revoke a token by id. Idempotent in effect (a second delete answers RESOURCE_DOES_NOT_EXIST).
pub async fn delete(ws: &Workspace, token_id: &str) -> Result<()> {
    if token_id.trim().is_empty() {
        return Err(Error::invalid("token_id", "must not be empty"));
    }
    ws.api(
        Method::POST,
        "/api/2.0/token/delete",
        Body::Json(json!({ "token_id": token_id })),
        true,
    )
    .await?;
    Ok(())
}
