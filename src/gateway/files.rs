//! The gateway's two files beside the token cache: `gateway.key` (the key local callers present, 256 random bits
//! as 64 hex digits, 0600) and `gateway.json` (pid, port, url, started_at of the running gateway, 0600), which
//! lets other processes find it and keeps a second gateway off the same cache.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{Private, is_loose, read_private, secure_dir, write_private};

/// The key file's name in the cache folder.
pub const KEY_FILE: &str = "gateway.key";
/// The state file's name in the cache folder.
pub const STATE_FILE: &str = "gateway.json";

/// What `gateway.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The gateway's process id.
    pub pid: u32,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// When it started, epoch seconds.
    pub started_at: f64,
}

/// The folder of the gateway's files: the cache file's folder.
pub fn folder(cache_path: &Path) -> PathBuf {
    cache_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn is_key(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether others could read or write the file (a leaked key is replaced, not reused).
fn is_loose_file(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| is_loose(m.mode()))
}

/// The gateway key of this cache folder, created (0600) when missing. A key that others could read, a file that
/// is not a key, or one that cannot be trusted (another user's, a symlink: see `fsutil::check_file`) is replaced
/// by a new one; a folder that cannot be trusted is refused.
pub fn ensure_key(dir: &Path) -> Result<String> {
    secure_dir(dir)?;
    let path = dir.join(KEY_FILE);
    match read_private(&path)? {
        Private::Data(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if is_key(text.trim()) && !is_loose_file(&path) {
                return Ok(text.trim().to_string());
            }
            log::warn!(
                "{}: not a private gateway key; writing a new one (callers must read it again)",
                path.display()
            );
        }
        Private::Untrusted(f) => log::warn!(
            "{}: not trusted ({} is {}); writing a new key (callers must read it again)",
            path.display(),
            f.path.display(),
            f.problem
        ),
        Private::Missing => {}
    }
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Config("cannot get random bytes for the gateway key".into()))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, format!("{key}\n").as_bytes())?;
    Ok(key)
}

/// The key of this cache folder, if one was created (`devbox-native gateway key`). A key file that cannot be
/// trusted is an error, never read.
pub fn read_key(dir: &Path) -> Result<Option<String>> {
    let path = dir.join(KEY_FILE);
    match read_private(&path)? {
        Private::Data(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if is_key(text.trim()) {
                Ok(Some(text.trim().to_string()))
            } else {
                Err(Error::Config(format!("{}: is not a gateway key", path.display())))
            }
        }
        Private::Untrusted(f) => Err(Error::Config(format!(
            "{}: not trusted: {} is {}",
            path.display(),
            f.path.display(),
            f.problem
        ))),
        Private::Missing => Ok(None),
    }
}

/// The gateway recorded in this folder's `gateway.json` when it is really running (its process lives and its
/// port answers); a stale, unreadable or untrusted file reads as none.
pub fn running(dir: &Path) -> Option<State> {
    let Ok(Private::Data(text)) = read_private(&dir.join(STATE_FILE)) else {
        return None;
    };
    let mut state: State = serde_json::from_slice(&text).ok()?;
    let alive = Path::new(&format!("/proc/{}", state.pid)).exists();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, state.port));
    // The gateway listens on 127.0.0.1 only: the URL is derived from the port, never taken from the file.
    state.url = format!("http://{addr}");
    (alive && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()).then_some(state)
}

/// Record the running gateway.
pub fn write_state(dir: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::Config(format!("cannot serialise the gateway state: {e}")))?;
    write_private(&dir.join(STATE_FILE), &text)
}

/// Remove `gateway.json` if it still describes `ours` (a later gateway may have replaced it).
pub fn remove_state(dir: &Path, ours: &State) {
    let path = dir.join(STATE_FILE);
    let Ok(text) = std::fs::read(&path) else { return };
    if serde_json::from_slice::<State>(&text).is_ok_and(|s| s.pid == ours.pid && s.port == ours.port)
        && let Err(e) = std::fs::remove_file(&path)
    {
        log::warn!("{}: cannot remove it: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_created_private_once_and_a_loose_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_key(dir.path()).unwrap(), None);
        let k = ensure_key(dir.path()).unwrap();
        assert!(is_key(&k), "{k}");
        let path = dir.path().join(KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(ensure_key(dir.path()).unwrap(), k);
        assert_eq!(read_key(dir.path()).unwrap().as_deref(), Some(k.as_str()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let k2 = ensure_key(dir.path()).unwrap();
        assert_ne!(k2, k);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_stale_state_file_is_not_a_running_gateway() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()), None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = State {
            pid: std::process::id(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            started_at: 1.0,
        };
        write_state(dir.path(), &live).unwrap();
        assert_eq!(running(dir.path()), Some(live.clone()));
        drop(listener);
        assert_eq!(running(dir.path()), None, "nothing listens any more");
        let dead = State {
            pid: u32::MAX - 1,
            ..live.clone()
        };
        write_state(dir.path(), &dead).unwrap();
        assert_eq!(running(dir.path()), None, "no such process");
        remove_state(dir.path(), &live);
        assert!(dir.path().join(STATE_FILE).exists(), "not ours: left alone");
        remove_state(dir.path(), &dead);
        assert!(!dir.path().join(STATE_FILE).exists());
    }
}
