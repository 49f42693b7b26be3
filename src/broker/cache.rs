//! The cache file: its format, reading it (an untrusted or corrupt file reads as empty), writing it (a corrupt
//! file is kept aside first, a newer format is never overwritten) and its default place.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Env;
use crate::error::{Error, Result};
use crate::fsutil::{FILE_MODE, Private, read_private, secure_file, write_private};
use crate::hygiene;

/// Version of the cache file format.
pub const CACHE_VERSION: u32 = 1;

/// A token we minted and have not seen revoked or expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Minted {
    /// Its id.
    pub token_id: String,
    /// When it expires, epoch seconds.
    pub expires_at: f64,
}

/// A replaced token still to revoke.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Its id.
    pub token_id: String,
    /// When it expires anyway, epoch seconds (after that it is dropped, not revoked).
    pub expires_at: f64,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not retried before this time, epoch seconds.
    #[serde(default)]
    pub next_attempt_at: f64,
    /// The last failure (never a secret).
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was replaced, epoch seconds (its grace period counts from then; 0 in older caches).
    #[serde(default)]
    pub replaced_at: f64,
    /// Held by a rotation still installing its replacement: not revoked (not even with `force`) until the
    /// rotation releases it ([`super::Broker::release_held`]) or it expires.
    #[serde(default)]
    pub held: bool,
}

/// A rotation hook that has not succeeded yet for the installed token (issue 9 item 14): a rotation killed
/// during its hook left CCR on the old token, and the next rotation resumes from the hook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookPending {
    /// The token written into config.json.
    pub token_id: String,
    /// The token CCR ran with before, if known (released once the hook succeeded).
    #[serde(default)]
    pub replaced_token_id: Option<String>,
}

/// One cache entry: the current token of one host + identity. Not `Debug`: it holds the token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Workspace URL.
    pub host: String,
    /// `pat:<sha256 prefix>` or `oauth-m2m:<client id>`.
    pub identity: String,
    /// The token.
    pub token: String,
    /// Its id.
    pub token_id: String,
    /// When we minted it, epoch seconds.
    pub created_at: f64,
    /// When it expires, epoch seconds.
    pub expires_at: f64,
    /// Tokens we minted that may still be live (the current one included).
    #[serde(default)]
    pub minted: Vec<Minted>,
    /// Replaced tokens still to revoke.
    #[serde(default)]
    pub pending: Vec<Pending>,
    /// A rotation wrote this entry's token into CCR's config but its hook (and port wait) has not succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_pending: Option<HookPending>,
}

impl Entry {
    /// Every token id this entry records as ours: the current one, `minted` and `pending`.
    fn ids(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.token_id)
            .chain(self.minted.iter().map(|m| &m.token_id))
            .chain(self.pending.iter().map(|p| &p.token_id))
            .filter(|id| !id.is_empty())
    }
}

impl CacheFile {
    /// Every token id the cache records (current, minted, pending or held, of every entry): a cleanup never
    /// revokes one of them (issue 9 item 2).
    pub fn protected_ids(&self) -> HashSet<String> {
        self.entries.values().flat_map(Entry::ids).cloned().collect()
    }
}

/// The cache file.
#[derive(Default, Serialize, Deserialize)]
pub struct CacheFile {
    /// [`CACHE_VERSION`].
    pub version: u32,
    /// Entries by `<host> <identity>`.
    #[serde(default)]
    pub entries: BTreeMap<String, Entry>,
}

/// What the bytes of a cache file are.
enum Parsed {
    /// A cache of our format.
    Ours(CacheFile),
    /// A cache written by a newer build (its format number): never overwritten.
    Newer(u32),
    /// Not a cache we can read (the position of the first error, never the text: it may hold a token).
    Corrupt(String),
}

fn parse_cache(bytes: &[u8]) -> Parsed {
    #[derive(Deserialize)]
    struct Version {
        version: Option<serde_json::Value>,
    }
    if let Ok(Version { version: Some(v) }) = serde_json::from_slice::<Version>(bytes)
        && let Some(n) = v.as_u64().filter(|n| *n > u64::from(CACHE_VERSION))
    {
        return Parsed::Newer(u32::try_from(n).unwrap_or(u32::MAX));
    }
    match serde_json::from_slice::<CacheFile>(bytes) {
        Ok(c) if c.version == CACHE_VERSION => Parsed::Ours(c),
        Ok(c) => Parsed::Corrupt(format!("unknown format {}", c.version)),
        Err(e) => Parsed::Corrupt(format!("line {}, column {}", e.line(), e.column())),
    }
}

fn newer_error(path: &Path, version: u32) -> Error {
    Error::Config(format!(
        "{}: the token cache has format {version}, newer than this build's {CACHE_VERSION}; it was left \
         untouched (upgrade devbox-native, or pass another cache_path)",
        path.display()
    ))
}

/// Read a cache file. A missing file is empty. A file that cannot be trusted (another user's, a symlink of
/// another user, in a folder others can write, not a regular file: see [`crate::fsutil::check_file`]) is not
/// used: a warning, and it reads as empty. A corrupt file reads as empty with a warning (the next write keeps
/// it aside, see [`save_cache`]); a newer format is an error (never overwritten). Other I/O errors are errors.
pub fn load_cache(path: &Path) -> Result<CacheFile> {
    let bytes = match read_private(path)? {
        Private::Missing => return Ok(CacheFile::default()),
        Private::Data(b) => b,
        Private::Untrusted(f) => {
            log::warn!(
                "not using the token cache {}: {} is {}",
                path.display(),
                f.path.display(),
                f.problem
            );
            return Ok(CacheFile::default());
        }
    };
    match parse_cache(&bytes) {
        Parsed::Ours(c) => Ok(c),
        Parsed::Newer(v) => Err(newer_error(path, v)),
        Parsed::Corrupt(why) => {
            log::warn!("{}: not a token cache ({why}); starting afresh", path.display());
            Ok(CacheFile::default())
        }
    }
}

/// Write a cache file; call with its lock held. A corrupt file in the way is kept aside first, as
/// `<name>.corrupt-<epoch ms>` (0600), so the entries it held can still be recovered by hand; a newer format
/// is never overwritten (an error). A file another user owns is replaced, never read.
pub fn save_cache(path: &Path, cache: &CacheFile) -> Result<()> {
    let target = secure_file(path, true)?;
    if let Private::Data(bytes) = read_private(&target)? {
        match parse_cache(&bytes) {
            Parsed::Ours(_) => {}
            Parsed::Newer(v) => return Err(newer_error(path, v)),
            Parsed::Corrupt(why) => {
                let mut name = target.file_name().unwrap_or_default().to_os_string();
                name.push(format!(".corrupt-{}", hygiene::now_ms()));
                let aside = target.with_file_name(name);
                std::fs::rename(&target, &aside).map_err(|e| Error::io("keep aside", &target, e))?;
                std::fs::set_permissions(
                    &aside,
                    <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(FILE_MODE),
                )
                .map_err(|e| Error::io("change the mode of", &aside, e))?;
                log::warn!(
                    "{}: not a token cache ({why}); kept it as {} and started afresh",
                    path.display(),
                    aside.display()
                );
            }
        }
    }
    let text = serde_json::to_vec_pretty(cache)
        .map_err(|e| Error::Config(format!("cannot serialise the token cache: {e}")))?;
    write_private(&target, &text)
}

/// Every token id a cache file records (current, minted, pending, held): what a cleanup must keep.
/// A cache that cannot be trusted or read is an error here, not an empty set: a cleanup that cannot see which
/// tokens to keep must not revoke any.
pub fn protected_token_ids(path: &Path) -> Result<HashSet<String>> {
    if let Private::Untrusted(f) = read_private(path)? {
        return Err(Error::Config(format!(
            "cannot tell which tokens the cache {} protects: {} is {}",
            path.display(),
            f.path.display(),
            f.problem
        )));
    }
    Ok(load_cache(path)?.protected_ids())
}

/// The default cache file: `$XDG_CACHE_HOME/devbox-native/token.json` (when absolute), else
/// `~/.cache/devbox-native/token.json`. Both variables are taken as bytes: a path that is not UTF-8 is kept
/// exactly.
pub fn default_cache_path(env: &dyn Env) -> Result<PathBuf> {
    if let Some(xdg) = env.var_os("XDG_CACHE_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Ok(PathBuf::from(xdg).join("devbox-native").join("token.json"));
    }
    let home = env
        .var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
        .ok_or_else(|| Error::Config("cannot find the home folder (HOME is not set): pass cache_path".into()))?;
    Ok(home.join(".cache").join("devbox-native").join("token.json"))
}
