//! What rotation (and `doctor`) learn from an existing CCR `config.json`: where CCR listens and whether it
//! holds a token.

use std::path::Path;

use serde_json::Value;

use super::merge::PROVIDER;
use crate::error::Result;
use crate::fsutil::{Private, read_private};

/// What rotation needs to know about an existing `config.json`: whether the `databricks` provider holds a
/// token, and where CCR listens (`HOST`/`PORT`, defaults [`DEFAULT_CCR_HOST`]:[`DEFAULT_CCR_PORT`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CcrView {
    /// `HOST`, or the default.
    pub host: String,
    /// `PORT` (a number, or a string of digits), or the default.
    pub port: u16,
    value: Value,
}

/// Where CCR listens unless its config says otherwise.
pub const DEFAULT_CCR_HOST: &str = "127.0.0.1";
/// CCR's default port.
pub const DEFAULT_CCR_PORT: u16 = 3456;

impl CcrView {
    /// Read `config.json`; None when it is missing or not a JSON object (nothing to learn from it).
    /// A file that cannot be trusted ([`crate::fsutil::check_file`]) is an error naming it and why.
    pub fn read(path: &Path) -> Result<Option<CcrView>> {
        Ok(match Self::inspect(path)? {
            CcrFile::View(v) => Some(v),
            CcrFile::Missing | CcrFile::NotAConfig(_) => None,
        })
    }

    /// [`CcrView::read`], saying why there is no view (what `doctor` reports): the same trust-checked read.
    pub fn inspect(path: &Path) -> Result<CcrFile> {
        let bytes = match read_private(path)? {
            Private::Data(b) => b,
            Private::Missing => return Ok(CcrFile::Missing),
            Private::Untrusted(f) => return Err(f.to_error()),
        };
        // The parser's message carries a position, never the text around it (which may hold a token).
        let value = match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v,
            Err(e) => return Ok(CcrFile::NotAConfig(format!("not valid JSON ({e})"))),
        };
        let Some(obj) = value.as_object() else {
            return Ok(CcrFile::NotAConfig("the top level is not a JSON object".into()));
        };
        let host = obj
            .get("HOST")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_CCR_HOST)
            .to_string();
        let port = match obj.get("PORT") {
            Some(Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(DEFAULT_CCR_PORT);
        Ok(CcrFile::View(CcrView { host, port, value }))
    }

    /// The `api_key` of each `databricks` provider, in order (None: not a string).
    pub fn provider_keys(&self) -> Vec<Option<&str>> {
        self.value
            .get("Providers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p.get("name").and_then(Value::as_str) == Some(PROVIDER))
            .map(|p| p.get("api_key").and_then(Value::as_str))
            .collect()
    }

    /// Whether every `databricks` provider's `api_key` is `token` (compared here: the value is never returned).
    pub fn holds(&self, token: &str) -> bool {
        let keys = self.provider_keys();
        !keys.is_empty() && keys.iter().all(|k| *k == Some(token))
    }
}

/// What [`CcrView::inspect`] found in `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum CcrFile {
    /// No such file.
    Missing,
    /// Not JSON, or not a JSON object: why (a parser position, never the file's text).
    NotAConfig(String),
    /// A JSON object: its view.
    View(CcrView),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_reads_the_listen_address_and_compares_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        assert_eq!(CcrView::read(&p).unwrap(), None);
        std::fs::write(&p, "{not json").unwrap();
        assert_eq!(CcrView::read(&p).unwrap(), None);
        std::fs::write(&p, r#"{"Providers": [{"name": "databricks", "api_key": "tok-1"}]}"#).unwrap();
        let v = CcrView::read(&p).unwrap().unwrap();
        assert_eq!((v.host.as_str(), v.port), ("127.0.0.1", 3456));
        assert!(v.holds("tok-1") && !v.holds("tok-2"));
        std::fs::write(&p, r#"{"HOST": "0.0.0.0", "PORT": "4000", "Providers": []}"#).unwrap();
        let v = CcrView::read(&p).unwrap().unwrap();
        assert_eq!((v.host.as_str(), v.port), ("0.0.0.0", 4000));
        assert!(!v.holds("tok-1"));
        std::fs::write(&p, r#"{"PORT": 70000}"#).unwrap();
        assert_eq!(CcrView::read(&p).unwrap().unwrap().port, 3456);
    }

    #[test]
    fn inspect_says_why_there_is_no_view_and_lists_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        assert_eq!(CcrView::inspect(&p).unwrap(), CcrFile::Missing);
        std::fs::write(&p, "{\"api_key\": \"s3cret\", ").unwrap();
        let CcrFile::NotAConfig(why) = CcrView::inspect(&p).unwrap() else {
            panic!()
        };
        assert!(why.starts_with("not valid JSON (") && !why.contains("s3cret"), "{why}");
        std::fs::write(&p, "[1]").unwrap();
        assert_eq!(
            CcrView::inspect(&p).unwrap(),
            CcrFile::NotAConfig("the top level is not a JSON object".into())
        );
        let text = r#"{"PORT": true, "Providers": [{"name": "databricks", "api_key": "a"}, {"name": "x", "api_key": "b"},
            {"name": "databricks", "api_key": 5}]}"#;
        std::fs::write(&p, text).unwrap();
        let CcrFile::View(v) = CcrView::inspect(&p).unwrap() else {
            panic!()
        };
        assert_eq!((v.port, v.provider_keys()), (3456, vec![Some("a"), None]));
        assert!(!v.holds("a"));
    }
}
