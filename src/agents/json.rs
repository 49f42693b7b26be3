//! Merging our keys into an agent's JSON file: parse, edit the object, write it back in the same order (with
//! `preserve_order`), two-space indented. A file that is not a JSON object is an error naming it, and the file
//! is left untouched: we do not guess what the user meant.

use std::path::Path;

use serde_json::{Map, Value};

use crate::ccr::to_python_json;
use crate::error::{Error, Result};
use crate::fsutil::{ensure_private_dir, update_file};

/// Edit the JSON object in `path` (an absent or empty file is `{}`) under the file's lock. `edit` says
/// whether it changed anything; nothing is written when it did not, and nothing is created by an edit that
/// changes nothing. Returns whether the file was rewritten.
pub fn update_object(path: &Path, edit: impl FnOnce(&mut Map<String, Value>) -> Result<bool>) -> Result<bool> {
    if let Some(dir) = path.parent() {
        ensure_private_dir(dir)?;
    }
    update_file(path, |current| {
        let mut obj = match current {
            None => Map::new(),
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Some(b) => match serde_json::from_slice::<Value>(b) {
                Ok(Value::Object(o)) => o,
                Ok(_) => return Err(untouched(path, "the top level is not a JSON object".into())),
                // The parser's message carries a position, never the text around it.
                Err(e) => return Err(untouched(path, format!("not valid JSON ({e})"))),
            },
        };
        if !edit(&mut obj)? {
            return Ok(None);
        }
        Ok(Some((to_python_json(&Value::Object(obj)) + "\n").into_bytes()))
    })
}

/// Like [`update_object`], but only for a file that exists (removing our keys never creates a file).
pub fn update_existing(path: &Path, edit: impl FnOnce(&mut Map<String, Value>) -> Result<bool>) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    update_object(path, edit)
}

/// The error for a file we refuse to edit.
pub fn untouched(path: &Path, what: String) -> Error {
    Error::Config(format!("{}: {what}; the file was left untouched", path.display()))
}

/// The object under `key`, created when absent; an error naming `what` when it is something else.
pub fn object_at<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
    path: &Path,
    what: &str,
) -> Result<&'a mut Map<String, Value>> {
    obj.entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| untouched(path, format!("{what} is not a JSON object")))
}

/// Set `key` to `value`; whether that changed anything (an existing key keeps its position).
pub fn set(obj: &mut Map<String, Value>, key: &str, value: Value) -> bool {
    if obj.get(key) == Some(&value) {
        return false;
    }
    obj.insert(key.to_string(), value);
    true
}

/// Remove `key` (keeping the order of the rest); whether it was there.
pub fn remove(obj: &mut Map<String, Value>, key: &str) -> bool {
    obj.shift_remove(key).is_some()
}

/// Remove the object under `key` when it is empty; whether it was removed.
pub fn prune(obj: &mut Map<String, Value>, key: &str) -> bool {
    if obj.get(key).and_then(Value::as_object).is_some_and(Map::is_empty) {
        return remove(obj, key);
    }
    false
}
