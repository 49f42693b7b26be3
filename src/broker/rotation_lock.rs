//! What a rotation keeps in the broker: its lock on the cache, and the record of a hook it has not finished.

use super::{Broker, HookPending};
use crate::error::{Error, Result};
use crate::fsutil::{secure_dir, secure_file};

impl Broker {
    /// The hook a rotation left unfinished for this identity's token, if any.
    pub fn hook_pending(&self) -> Result<Option<HookPending>> {
        Ok(self.load()?.entries.get(&self.key).and_then(|e| e.hook_pending.clone()))
    }

    /// Record (`Some`) or clear (`None`, only when it names `token_id`) the unfinished hook of `token_id`.
    pub async fn set_hook_pending(&self, token_id: &str, pending: Option<HookPending>) -> Result<()> {
        let _lock = self.lock().await?;
        let mut cache = self.load()?;
        let Some(entry) = cache.entries.get_mut(&self.key) else {
            return Ok(());
        };
        match pending {
            Some(p) => entry.hook_pending = Some(p),
            None if entry.hook_pending.as_ref().is_some_and(|h| h.token_id == token_id) => entry.hook_pending = None,
            None => return Ok(()),
        }
        self.save(&cache)
    }
}

/// The lock a rotation holds on its broker cache for its whole life (issue 9 item 15): two rotations on one
/// cache would revoke the token the other one is installing. The file `<cache>.rotation.lock` (0600) holds the
/// holder's pid; the lock (`flock`) goes with the process, so a killed rotation leaves nothing to clean.
#[derive(Debug)]
pub struct RotationLock {
    file: std::fs::File,
}

impl Drop for RotationLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl Broker {
    /// Take this cache's rotation lock, or fail at once naming the pid of the rotation that holds it.
    pub fn lock_rotation(&self) -> Result<RotationLock> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        // The same trust rule as the cache itself: our folder, no link another user controls.
        if let Some(dir) = self.opts.cache_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secure_dir(dir)?;
        }
        let target = secure_file(&self.opts.cache_path, true)?;
        let mut name = target
            .file_name()
            .map(std::ffi::OsStr::to_os_string)
            .unwrap_or_default();
        name.push(".rotation.lock");
        let path = target.with_file_name(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("open the rotation lock", &path, e))?;
        match file.try_lock() {
            Ok(()) => {
                let pid = std::process::id().to_string();
                let written = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(pid.as_bytes()));
                written.map_err(|e| Error::io("write", &path, e))?;
                Ok(RotationLock { file })
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.take(32).read_to_string(&mut text);
                let holder = text
                    .trim()
                    .parse::<u32>()
                    .map_or_else(|_| "unknown".into(), |p| p.to_string());
                Err(Error::Busy(format!(
                    "another rotation (pid {holder}) is running on the broker cache {}: run one rotation per cache",
                    self.opts.cache_path.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }
}
