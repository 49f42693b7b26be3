//! Turning an HTTP error response into an [`ApiFailure`], from every body shape the Databricks SDK handles:
//! JSON (`error_code`/`message`, API 1.2 `error`, SCIM `detail`, OAuth `error`/`error_description`), plain
//! text `CODE: message`, HTML `<pre>`/`<title>`, and an empty body (the reason phrase).
//!
//! Unlike databricks-sdk-py 0.67 we never put request headers into the message (SDK-BEHAVIOUR.md §9).

use crate::error::ApiFailure;

/// Longest message we keep from a body we could not parse.
const MAX_RAW_MESSAGE: usize = 300;

/// Parse an error response. `retry_after` is the already-parsed `Retry-After` header.
pub fn parse_failure(status: u16, body: &[u8], retry_after: Option<f64>) -> ApiFailure {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let (error_code, message) = parse_json(text)
        .or_else(|| parse_code_message(text))
        .or_else(|| parse_html(text).map(|m| (None, m)))
        .unwrap_or_else(|| (None, fallback_message(status, text)));
    ApiFailure {
        status,
        error_code,
        message,
        retry_after,
    }
}

fn parse_json(text: &str) -> Option<(Option<String>, String)> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let obj = value.as_object()?;
    let s = |k: &str| obj.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
    // Databricks 2.0: {"error_code": "...", "message": "..."}
    if let Some(code) = s("error_code") {
        let message = s("message").or_else(|| s("error")).unwrap_or_default();
        return Some((Some(code), message));
    }
    // OAuth 2 (RFC 6749 §5.2): {"error": "invalid_client", "error_description": "..."}
    if let Some(code) = s("error").filter(|_| obj.contains_key("error_description")) {
        return Some((Some(code), s("error_description").unwrap_or_default()));
    }
    // API 1.2: {"error": "..."}; SCIM: {"detail": "...", "status": "..."}; plain {"message": "..."}
    if let Some(message) = s("message").or_else(|| s("error")).or_else(|| s("detail")) {
        return Some((None, message));
    }
    None
}

/// `RESOURCE_DOES_NOT_EXIST: Token does not exist` style bodies.
fn parse_code_message(text: &str) -> Option<(Option<String>, String)> {
    let (code, message) = text.split_once(": ")?;
    let is_code = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
    (is_code && !message.contains('\n')).then(|| (Some(code.to_string()), message.trim().to_string()))
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find(open)? + open.len();
    let end = start + lower[start..].find(close)?;
    // ASCII lower-casing keeps byte offsets, so they index the original text too.
    Some(text[start..end].trim())
}

fn parse_html(text: &str) -> Option<String> {
    between(text, "<pre>", "</pre>")
        .or_else(|| between(text, "<title>", "</title>"))
        .map(str::to_string)
}

fn fallback_message(status: u16, text: &str) -> String {
    if text.is_empty() {
        return reason_phrase(status).to_string();
    }
    let mut cut: String = text.chars().take(MAX_RAW_MESSAGE).collect();
    if cut.len() < text.len() {
        cut.push_str("...");
    }
    format!("{}: {}", reason_phrase(status), cut.replace(['\r', '\n'], " "))
}

/// The HTTP reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown Status")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(status: u16, body: &str) -> (Option<String>, String) {
        let f = parse_failure(status, body.as_bytes(), None);
        (f.error_code, f.message)
    }

    #[test]
    fn every_body_shape() {
        let cases: &[(u16, &str, Option<&str>, &str)] = &[
            (
                400,
                r#"{"error_code":"QUOTA_EXCEEDED","message":"too many"}"#,
                Some("QUOTA_EXCEEDED"),
                "too many",
            ),
            (
                401,
                r#"{"error":"invalid_client","error_description":"bad"}"#,
                Some("invalid_client"),
                "bad",
            ),
            (400, r#"{"error":"api 1.2 style"}"#, None, "api 1.2 style"),
            (404, r#"{"detail":"scim","status":"404"}"#, None, "scim"),
            (
                404,
                "RESOURCE_DOES_NOT_EXIST: no such token",
                Some("RESOURCE_DOES_NOT_EXIST"),
                "no such token",
            ),
            (
                502,
                "<html><head><title>502 Bad Gateway</title></head></html>",
                None,
                "502 Bad Gateway",
            ),
            (500, "<html><body><pre>Oops\n</pre></body></html>", None, "Oops"),
            (503, "", None, "Service Unavailable"),
            (500, "not json at all", None, "Internal Server Error: not json at all"),
        ];
        for (status, body, code, msg) in cases {
            assert_eq!(
                p(*status, body),
                (code.map(str::to_string), (*msg).to_string()),
                "{body}"
            );
        }
    }

    #[test]
    fn long_raw_bodies_are_cut() {
        let body = "x".repeat(5000);
        let (_, msg) = p(500, &body);
        assert!(msg.len() < 400 && msg.ends_with("..."));
    }
}
