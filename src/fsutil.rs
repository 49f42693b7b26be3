//! Private, atomic file writes.
//!
//! Every file is written to a temporary file in the same folder, created with mode 0600 from its first byte
//! (never chmod-after), then fsynced, renamed over the target and the folder fsynced. Any failure removes the
//! temporary file, so the previous file stays byte-identical and nothing is left behind.
//!
//! We use `tempfile` (0600 temp files, rename that hands the file back on failure) and do the two fsyncs
//! ourselves. atomic-write-file 0.3.1 was tried first: it leaves its temporary file behind when the final
//! rename fails (it marks itself finished before renaming), which our tests caught.
//! Folders we create are 0700. A target that is a symlink is written through: the link's final target is
//! replaced atomically and the link is kept.
//!
//! **Trust** (like OpenSSH's `StrictModes`). Before a private file is read or written, [`check_file`] walks
//! every folder from `/` down to it, following symlinks: each must belong to the caller's uid or root and must
//! not be writable by group or others (a sticky folder such as `/tmp` is fine above, never as the file's own
//! folder). A symlink (every link of a chain, one hop at a time) is followed only when the caller or root owns
//! it; its target's folders pass the same walk. The file itself must be a regular file of the caller or root.
//! Our own folder or file that is only too loose is tightened (0700 / 0600) with a warning; anything else is
//! refused with an [`Error::Io`] naming the path and why. Files are opened with `O_NOFOLLOW | O_NONBLOCK`, so a planted FIFO never blocks a read.
//!
//! Read-modify-write updates ([`update_file`]) hold a cross-process lock on a sidecar file `<target>.lock`
//! (`flock(2)` through std's `File::lock`), so concurrent writers in any number of processes never lose an
//! update; readers need no lock, since the rename means they see the old or the new file, never a mix. The
//! kernel drops the lock when its holder dies, even by SIGKILL.

use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Mode of every file we write.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every folder we create.
pub const DIR_MODE: u32 = 0o700;

/// Create `dir` and any missing parents with mode 0700 (existing folders are left as they are).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Where a write to `path` really lands: the final target when `path` is a symlink, else `path`.
pub fn write_target(path: &Path) -> PathBuf {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).unwrap_or_else(|_| {
            // A dangling link: follow it one level (relative to the link's folder).
            std::fs::read_link(path)
                .map(|t| path.parent().map_or(t.clone(), |p| p.join(&t)))
                .unwrap_or_else(|_| path.to_path_buf())
        }),
        _ => path.to_path_buf(),
    }
}

/// The largest private file we read (a token cache, a CCR config): anything bigger is refused.
pub const MAX_PRIVATE_FILE: u64 = 1 << 20;

/// The effective uid of this process: besides root, the only owner whose files and folders we trust.
pub fn caller_uid() -> u32 {
    // SAFETY: geteuid(2) takes no arguments and always succeeds.
    unsafe { libc::geteuid() }
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == caller_uid()
}

/// One reason a file or folder cannot be trusted (see [`check_file`]). Never holds a secret: owners and modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file or folder.
    pub path: PathBuf,
    /// What is wrong, e.g. "owned by uid 65534, not by you (uid 0) or root".
    pub problem: String,
    /// Our own file or folder that is only too loose: setting this mode fixes it.
    pub tighten_to: Option<u32>,
    /// The problem is the target file itself (another owner, not a regular file): an atomic replace (rename
    /// in a trusted folder) does away with it, a read-modify-write must not read it.
    pub is_target: bool,
    /// The errno kind of the refusal: `NotADirectory` for a file where a folder must be, else `PermissionDenied`.
    pub kind: std::io::ErrorKind,
}

impl Finding {
    fn new(path: &Path, problem: impl Into<String>) -> Finding {
        Finding {
            path: path.to_path_buf(),
            problem: problem.into(),
            tighten_to: None,
            is_target: false,
            kind: std::io::ErrorKind::PermissionDenied,
        }
    }

    /// The refusal as an error naming the path and why.
    pub fn to_error(&self) -> Error {
        Error::io(
            "use",
            &self.path,
            std::io::Error::new(self.kind, format!("it is {}", self.problem)),
        )
    }
}

fn owner_problem(md: &Metadata) -> Option<String> {
    (!trusted_owner(md.uid())).then(|| format!("owned by uid {}, not by you (uid {}) or root", md.uid(), caller_uid()))
}

/// How a folder is used, for [`check_dir_md`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A folder above: a sticky world-writable one (like `/tmp`) is fine.
    Above,
    /// The last existing folder, where the missing ones are created (0700): sticky is fine, our own loose
    /// folder is tightened.
    Creating,
    /// The folder the file itself goes into: never sticky, our own loose folder is tightened.
    Holding,
}

fn check_dir_md(path: &Path, md: &Metadata, role: Role, out: &mut Vec<Finding>) {
    if !md.is_dir() {
        out.push(Finding {
            kind: std::io::ErrorKind::NotADirectory,
            ..Finding::new(path, "not a folder")
        });
        return;
    }
    if let Some(p) = owner_problem(md) {
        out.push(Finding::new(path, p));
        return;
    }
    let mode = md.mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 == 0 || (sticky && role != Role::Holding) {
        return;
    }
    let mut f = Finding::new(path, format!("writable by others (mode {mode:04o})"));
    if role != Role::Above && !sticky && md.uid() == caller_uid() {
        f.tighten_to = Some(DIR_MODE);
    }
    out.push(f);
}

fn check_file_md(path: &Path, md: &Metadata, out: &mut Vec<Finding>) {
    let problem = if md.is_file() {
        owner_problem(md)
    } else {
        Some("not a regular file".to_string())
    };
    if let Some(p) = problem {
        let mut f = Finding::new(path, p);
        f.is_target = md.is_file();
        out.push(f);
        return;
    }
    let mode = md.mode() & 0o7777;
    if is_loose(mode) && md.uid() == caller_uid() {
        let mut f = Finding::new(path, format!("readable or writable by others (mode {mode:04o})"));
        f.tighten_to = Some(FILE_MODE);
        out.push(f);
    }
}

/// Most symlinks followed on one path (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: u32 = 40;

fn stat(p: &Path, out: &mut Vec<Finding>) -> Option<Metadata> {
    match std::fs::metadata(p) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            out.push(Finding::new(p, format!("not inspectable ({e})")));
            None
        }
    }
}

/// The next hop of the symlink at `link` (in the resolved folder `cur`), after checking its owner.
fn follow(link: &Path, md: &Metadata, cur: &Path, hops: &mut u32, out: &mut Vec<Finding>) -> Option<PathBuf> {
    if let Some(p) = owner_problem(md) {
        out.push(Finding::new(link, format!("a symlink {p}")));
        return None;
    }
    *hops += 1;
    if *hops > MAX_LINKS {
        out.push(Finding::new(link, format!("behind more than {MAX_LINKS} symlinks")));
        return None;
    }
    match std::fs::read_link(link) {
        Ok(t) => Some(cur.join(t)),
        Err(e) => {
            out.push(Finding::new(link, format!("not inspectable ({e})")));
            None
        }
    }
}

/// Walk the absolute `path` from `/`, one component at a time: every folder is checked as [`Role::Above`],
/// every symlink is followed one hop at a time (its owner checked, its target walked the same way, so a link
/// of another user anywhere in a chain is refused). Returns the resolved path; `None` when a part is refused
/// or missing (then the last existing folder, where the missing ones are created, is judged as
/// [`Role::Creating`]).
fn walk(path: &Path, hops: &mut u32, out: &mut Vec<Finding>) -> Option<PathBuf> {
    let mut cur = PathBuf::from("/");
    let root = stat(&cur, out)?;
    check_dir_md(&cur, &root, Role::Above, out);
    for c in path.components() {
        match c {
            Component::Normal(name) => {
                let next = cur.join(name);
                let md = match std::fs::symlink_metadata(&next) {
                    Ok(m) => m,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        out.retain(|f| f.path != cur);
                        let m = stat(&cur, out)?;
                        check_dir_md(&cur, &m, Role::Creating, out);
                        return None;
                    }
                    Err(e) => {
                        out.push(Finding::new(&next, format!("not inspectable ({e})")));
                        return None;
                    }
                };
                if md.file_type().is_symlink() {
                    let hop = follow(&next, &md, &cur, hops, out)?;
                    cur = walk(&hop, hops, out)?;
                } else {
                    check_dir_md(&next, &md, Role::Above, out);
                    cur = next;
                }
            }
            Component::ParentDir => {
                cur.pop();
            }
            _ => {}
        }
    }
    Some(cur)
}

/// Check the folders from `/` down to `dir`, following symlinks (see the module doc); `dir` itself is checked
/// as the folder a file is written into. Returns `dir` with every symlink resolved when it exists.
fn walk_dir(dir: &Path, out: &mut Vec<Finding>) -> Option<PathBuf> {
    walk_dir_counting(dir, &mut 0, out)
}

fn walk_dir_counting(dir: &Path, hops: &mut u32, out: &mut Vec<Finding>) -> Option<PathBuf> {
    let abs = match std::path::absolute(dir) {
        Ok(a) => a,
        Err(e) => {
            out.push(Finding::new(dir, format!("not a usable path ({e})")));
            return None;
        }
    };
    let cur = walk(&abs, hops, out)?;
    // The folder the file goes into: no sticky exemption, and our own loose folder can be tightened.
    out.retain(|f| f.path != cur);
    let m = stat(&cur, out)?;
    check_dir_md(&cur, &m, Role::Holding, out);
    Some(cur)
}

/// Everything that makes `dir` untrusted as a folder we write private files into (empty: trusted).
pub fn check_dir(dir: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    walk_dir(dir, &mut out);
    out
}

/// Check a private file before it is read or written: its folders ([`check_dir`]); when it is a symlink, the
/// link's owner and the folders of its target; and the file itself (when it exists): a regular file of the
/// caller or root, not readable or writable by others. Returns where a write lands (see [`write_target`]) and
/// every finding (empty: trusted).
pub fn check_file(path: &Path) -> (PathBuf, Vec<Finding>) {
    let mut out = Vec::new();
    let parent = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        out.push(Finding::new(path, "not a file name"));
        return (path.to_path_buf(), out);
    };
    let Some(dir) = walk_dir(parent, &mut out) else {
        return (path.to_path_buf(), out);
    };
    let mut target = dir.join(name);
    let mut hops = 0;
    let md = loop {
        let md = match std::fs::symlink_metadata(&target) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (target, out),
            Err(e) => {
                out.push(Finding::new(&target, format!("not inspectable ({e})")));
                return (target, out);
            }
        };
        if !md.file_type().is_symlink() {
            break md;
        }
        // One hop at a time: every link of a chain, and the folders of every hop, must be trusted.
        let folder = target.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
        let Some(hop) = follow(&target, &md, &folder, &mut hops, &mut out) else {
            return (target, out);
        };
        let (Some(hop_dir), Some(hop_name)) = (hop.parent(), hop.file_name()) else {
            out.push(Finding::new(&target, "a symlink to no file name"));
            return (target, out);
        };
        let Some(d) = walk_dir_counting(hop_dir, &mut hops, &mut out) else {
            return (hop, out);
        };
        target = d.join(hop_name);
    };
    check_file_md(&target, &md, &mut out);
    (target, out)
}

/// The first finding that tightening cannot fix (see [`enforce`]): what a check made before any write refuses.
pub fn refusal(findings: &[Finding], replacing: bool) -> Option<&Finding> {
    findings
        .iter()
        .find(|f| f.tighten_to.is_none() && !(replacing && f.is_target))
}

/// Refuse on the first finding that tightening cannot fix (before anything is changed); then tighten our own
/// loose files and folders, with a warning. With `replacing`, problems of the target file itself are let
/// through: the caller replaces it atomically.
pub fn enforce(findings: &[Finding], replacing: bool) -> Result<()> {
    if let Some(f) = refusal(findings, replacing) {
        return Err(f.to_error());
    }
    for f in findings {
        if let Some(mode) = f.tighten_to {
            std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("change the mode of", &f.path, e))?;
            log::warn!("{} was {}; it is now {mode:04o}", f.path.display(), f.problem);
        }
    }
    Ok(())
}

/// [`check_file`] then [`enforce`]: the file's write target, once it is trusted.
pub fn secure_file(path: &Path, replacing: bool) -> Result<PathBuf> {
    let (target, findings) = check_file(path);
    enforce(&findings, replacing)?;
    Ok(target)
}

/// Make `dir` (and missing parents) exist as a trusted folder: refused when an existing part is not trusted,
/// created 0700, our own loose folder tightened with a warning.
pub fn secure_dir(dir: &Path) -> Result<()> {
    enforce(&check_dir(dir), false)?;
    ensure_private_dir(dir)?;
    enforce(&check_dir(dir), false)
}

/// What [`read_private`] found.
#[derive(Debug)]
pub enum Private {
    /// No such file.
    Missing,
    /// The file's bytes.
    Data(Vec<u8>),
    /// The file (or a folder above it) cannot be trusted: not read.
    Untrusted(Finding),
}

/// Open an existing regular file without following a symlink and without blocking (a FIFO answers at once).
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// The bytes of a regular file (at most [`MAX_PRIVATE_FILE`]), `Ok(None)` when it does not exist. A symlink,
/// FIFO, device or folder at `path` is [`Private::Untrusted`].
fn read_regular(path: &Path) -> Result<Private> {
    let file = match open_regular(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Private::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Private::Untrusted(Finding::new(
                path,
                "a symlink where none was expected",
            )));
        }
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let md = file.metadata().map_err(|e| Error::io("read", path, e))?;
    let mut found = Vec::new();
    check_file_md(path, &md, &mut found);
    if let Some(f) = found.into_iter().find(|f| f.tighten_to.is_none()) {
        return Ok(Private::Untrusted(f));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PRIVATE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    if bytes.len() as u64 > MAX_PRIVATE_FILE {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {MAX_PRIVATE_FILE} bytes"),
            ),
        ));
    }
    Ok(Private::Data(bytes))
}

/// Read a private file after [`check_file`]: nothing is read from a file or folder that is not trusted (only
/// too loose is fine for reading: the next write tightens it).
pub fn read_private(path: &Path) -> Result<Private> {
    let (target, findings) = check_file(path);
    if let Some(f) = findings.into_iter().find(|f| f.tighten_to.is_none()) {
        return Ok(Private::Untrusted(f));
    }
    read_regular(&target)
}

/// Atomically replace `path` with `contents`, private (0600) from the first byte, once [`check_file`] trusts
/// it (a file of another owner in a trusted folder is replaced, never read).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let target = secure_file(path, true)?;
    replace_private(&target, contents)
}

/// The atomic replace itself, of an already checked target.
fn replace_private(target: &Path, contents: &[u8]) -> Result<()> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| format!(".{}.", n.to_string_lossy()))
        .unwrap_or_default();
    // Dropping `tmp` on any early return removes the temporary file.
    let mut tmp = tempfile::Builder::new()
        .prefix(&name)
        .suffix(TMP_SUFFIX)
        .rand_bytes(TMP_RAND_LEN)
        .permissions(std::fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a temporary file in", &dir, e))?;
    tmp.write_all(contents).map_err(|e| Error::io("write", target, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("sync", target, e))?;
    // On failure `persist` hands the temporary file back inside the error; dropping it removes it.
    tmp.persist(target).map_err(|e| Error::io("replace", target, e.error))?;
    // The rename is done: the new file is in place whatever happens next. Syncing the folder only makes it
    // durable across a power loss, so a failure is logged, never reported as a failed write.
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        log::warn!("{} was written, but syncing its folder failed: {e}", target.display());
    }
    Ok(())
}

/// Suffix of our temporary files: `.<name>.<TMP_RAND_LEN letters or digits>.tmp`.
const TMP_SUFFIX: &str = ".tmp";
/// Length of the random part of a temporary file's name.
const TMP_RAND_LEN: usize = 6;

/// An exclusive cross-process lock on `<target>.lock`, released when dropped (or when the process dies).
/// The longest we wait for another process's lock: more than a mint's whole retry budget (300 s), which is
/// the longest a healthy holder keeps it.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(360);

/// How long a call whose retry budget is `budget` waits for a lock: no longer than it would wait for the
/// server (the budget), and never more than [`LOCK_TIMEOUT`]. Pass it to [`FileLock::acquire_within`].
pub fn lock_wait(budget: Duration) -> Duration {
    budget.min(LOCK_TIMEOUT)
}

#[derive(Debug)]
pub struct FileLock {
    file: std::fs::File,
    path: PathBuf,
}

impl FileLock {
    /// Wait (at most [`LOCK_TIMEOUT`]) until the lock that guards writes to `target` (after following symlinks)
    /// is ours. The lock file is created 0600 next to the target, whose folder must exist.
    pub fn acquire(target: &Path) -> Result<FileLock> {
        Self::acquire_within(target, LOCK_TIMEOUT)
    }

    /// [`FileLock::acquire`] with another time limit; running out of it is [`Error::Timeout`] naming the lock.
    pub fn acquire_within(target: &Path, timeout: Duration) -> Result<FileLock> {
        let path = lock_path(target);
        let file = open_lock_file(&path)?;
        // Poll rather than block in flock(2): a holder that hangs must not hang us without a limit.
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { file, path }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::Timeout {
                        message: format!(
                            "waited {:.0} s for the lock {} (another process holds it)",
                            timeout.as_secs_f64(),
                            path.display()
                        ),
                        last: None,
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
            }
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Open (creating it 0600) the lock file at `path`, never through a symlink and never blocking. A lock file
/// that is not a regular file of the caller or root (planted while its folder was loose) is removed and
/// created afresh, with a warning: another user's lock must not hold us up.
fn open_lock_file(path: &Path) -> Result<std::fs::File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    for _ in 0..3 {
        let problem = match open() {
            Ok(file) => {
                let md = file.metadata().map_err(|e| Error::io("open lock file", path, e))?;
                let mut found = Vec::new();
                check_file_md(path, &md, &mut found);
                match found.into_iter().find(|f| f.tighten_to.is_none()) {
                    None => return Ok(file),
                    Some(f) => {
                        // Remove only the file we looked at (not one another process put there meanwhile).
                        let same =
                            std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == md.ino() && m.dev() == md.dev());
                        if !same {
                            continue;
                        }
                        f.problem
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => "a symlink".to_string(),
            Err(e) => return Err(Error::io("open lock file", path, e)),
        };
        log::warn!("{} was {problem}; replacing it", path.display());
        match std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove the untrusted lock file", path, e)),
        }
    }
    Err(Error::io(
        "open lock file",
        path,
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "it keeps being replaced by an untrusted file",
        ),
    ))
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first just makes it explicit.
        let _ = self.file.unlock();
    }
}

/// The sidecar lock file that guards writes to `path`: `<final target>.lock`, so a symlink and its target
/// share one lock.
pub fn lock_path(path: &Path) -> PathBuf {
    let target = write_target(path);
    let mut name = target
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push(".lock");
    target.with_file_name(name)
}

/// Whether `mode` lets anyone but the owner read or write.
pub fn is_loose(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Whether `file_name` is exactly a temporary file [`write_private`] makes for `target_name`:
/// `.<target_name>.` + [`TMP_RAND_LEN`] ASCII letters or digits + `.tmp` (a user's `.config.json.bak.tmp` is not).
pub fn is_our_temp_file(file_name: &std::ffi::OsStr, target_name: &std::ffi::OsStr) -> bool {
    let (n, t) = (file_name.as_encoded_bytes(), target_name.as_encoded_bytes());
    let Some(rest) = n.strip_prefix(b".").and_then(|r| r.strip_prefix(t)) else {
        return false;
    };
    let Some(mid) = rest
        .strip_prefix(b".")
        .and_then(|r| r.strip_suffix(TMP_SUFFIX.as_bytes()))
    else {
        return false;
    };
    mid.len() == TMP_RAND_LEN && mid.iter().all(u8::is_ascii_alphanumeric)
}

/// Remove temporary files a killed writer left next to `target` (see [`is_our_temp_file`]). Only safe while
/// holding `target`'s lock: then no other writer of `target` can be midway.
pub fn sweep_leftovers(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if is_our_temp_file(&entry.file_name(), name) && entry.file_type().is_ok_and(|t| t.is_file()) {
            log::debug!(
                "removing {}, left behind by an interrupted write",
                entry.path().display()
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Read-modify-write `path` under its lock. `edit` gets the current bytes (`None` when the file does not exist)
/// and returns the new bytes, or `None` to leave the file as it is. The path must pass [`check_file`] first
/// (a file of another owner is refused, never read); an existing file looser than 0600 is tightened either
/// way, with a warning. The folder must exist. The new file is written like [`write_private`]. Returns
/// whether the file was rewritten.
pub fn update_file(path: &Path, edit: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>>) -> Result<bool> {
    let target = secure_file(path, false)?;
    let _lock = FileLock::acquire(&target)?;
    sweep_leftovers(&target);
    let current = match read_regular(&target)? {
        Private::Missing => None,
        Private::Data(bytes) => Some(bytes),
        Private::Untrusted(f) => return Err(f.to_error()),
    };
    match edit(current.as_deref())? {
        Some(bytes) => {
            replace_private(&target, &bytes)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Replace `path` with `contents` like [`write_private`], under `path`'s lock (see [`update_file`]).
pub fn write_locked(path: &Path, contents: &[u8]) -> Result<()> {
    update_file(path, |_| Ok(Some(contents.to_vec()))).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_are_private_and_replace_looser_files() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).unwrap();
        assert_eq!(mode(&sub), DIR_MODE);
        assert_eq!(mode(&dir.path().join("a")), DIR_MODE);
        let f = sub.join("f.json");
        std::fs::write(&f, "old").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"new");
        assert_eq!(mode(&f), FILE_MODE);
        let leftovers: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn symlinks_are_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/folder/f");
        let err = write_private(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/folder"), "{err}");
    }

    #[test]
    fn updates_are_serialised_by_the_lock_and_tighten_modes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("n.txt");
        std::fs::write(&f, "0").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        update_file(&f, |cur| {
                            let n: u32 = std::str::from_utf8(cur.unwrap()).unwrap().parse().unwrap();
                            Ok(Some((n + 1).to_string().into_bytes()))
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "200");
        assert_eq!(mode(&f), FILE_MODE);
        assert_eq!(mode(&lock_path(&f)), FILE_MODE);
    }

    #[test]
    fn an_unchanged_loose_file_is_tightened_and_leftovers_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        std::fs::write(&f, "{}").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let leftover = dir.path().join(".c.json.AbC123.tmp");
        std::fs::write(&leftover, "partial").unwrap();
        assert!(!update_file(&f, |_| Ok(None)).unwrap());
        assert_eq!(mode(&f), FILE_MODE);
        assert!(!leftover.exists());
        assert_eq!(std::fs::read(&f).unwrap(), b"{}");
    }

    #[test]
    fn a_held_lock_times_out_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("config.json");
        let held = FileLock::acquire(&target).unwrap();
        let started = Instant::now();
        let err = FileLock::acquire_within(&target, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("config.json.lock"), "{err}");
        drop(held);
        FileLock::acquire_within(&target, Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn a_symlink_and_its_target_share_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        let link = dir.path().join("link.json");
        std::fs::write(&real, "x").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            lock_path(&link),
            dir.path().canonicalize().unwrap().join("real.json.lock")
        );
    }
    /// Root can plant files as another user (uid 65534) with chown; as anyone else these tests are skipped.
    fn as_root() -> bool {
        caller_uid() == 0
    }

    const OTHER: u32 = 65534;

    /// A symlink at `at` to `to`, owned by the other user.
    fn their_link(to: &Path, at: &Path) {
        std::os::unix::fs::symlink(to, at).unwrap();
        std::os::unix::fs::lchown(at, Some(OTHER), Some(OTHER)).unwrap();
    }

    fn set_mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn a_folder_of_another_user_is_refused_and_nothing_is_written() {
        if !as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(OTHER), Some(OTHER)).unwrap();
        let f = theirs.join("token.json");
        let err = write_private(&f, b"secret").unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == &theirs), "{err:?}");
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        assert!(err.to_string().contains("not by you (uid 0) or root"), "{err}");
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0);
        let err = update_file(&f, |_| Ok(Some(b"x".to_vec()))).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0, "no lock file either");
        // Below it, too: every folder on the way counts.
        let below = theirs.join("sub");
        std::fs::create_dir(&below).unwrap();
        assert!(
            write_private(&below.join("f"), b"x")
                .unwrap_err()
                .to_string()
                .contains("65534")
        );
    }

    #[test]
    fn our_loose_folder_is_tightened_but_a_sticky_or_loose_parent_is_judged() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        std::fs::create_dir(&ours).unwrap();
        set_mode(&ours, 0o777);
        write_private(&ours.join("f"), b"x").unwrap();
        assert_eq!(mode(&ours), DIR_MODE);
        // A sticky world-writable folder (like /tmp) is fine above, never as the file's own folder.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        set_mode(&shared, 0o1777);
        let err = write_private(&shared.join("f"), b"x").unwrap_err();
        assert!(err.to_string().contains("writable by others (mode 1777)"), "{err}");
        let full = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
        assert_eq!(full, 0o1777, "a shared folder is never chmod-ed");
        secure_dir(&shared.join("mine")).unwrap();
        write_private(&shared.join("mine/f"), b"x").unwrap();
        // A loose folder above without the sticky bit: anyone could swap our folder out.
        let open = dir.path().join("open");
        std::fs::create_dir_all(open.join("mine")).unwrap();
        set_mode(&open, 0o777);
        let err = write_private(&open.join("mine/f"), b"x").unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == &open), "{err:?}");
        assert_eq!(mode(&open), 0o777);
    }

    #[test]
    fn symlinks_are_followed_only_when_the_link_and_its_target_are_trusted() {
        if !as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        // A link another user made.
        let link = dir.path().join("token.json");
        their_link(&victim, &link);
        let err = write_private(&link, b"new").unwrap_err();
        assert!(err.to_string().contains("a symlink owned by uid 65534"), "{err}");
        assert!(matches!(read_private(&link).unwrap(), Private::Untrusted(_)));
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // Our link into another user's folder.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("cfg"), "keep").unwrap();
        std::os::unix::fs::chown(&theirs, Some(OTHER), Some(OTHER)).unwrap();
        let link2 = dir.path().join("config.json");
        std::os::unix::fs::symlink(theirs.join("cfg"), &link2).unwrap();
        let err = update_file(&link2, |_| Ok(Some(b"new".to_vec()))).unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == &theirs), "{err:?}");
        assert_eq!(std::fs::read(theirs.join("cfg")).unwrap(), b"keep");
        // A symlinked folder pointing into another user's folder.
        let dlink = dir.path().join("cache");
        std::os::unix::fs::symlink(&theirs, &dlink).unwrap();
        assert!(
            write_private(&dlink.join("t.json"), b"x")
                .unwrap_err()
                .to_string()
                .contains("65534")
        );
        // Our link to their link (which they may point anywhere, e.g. at a file of root's): refused.
        their_link(&victim, &theirs.join("hop"));
        let chain = dir.path().join("chain.json");
        std::os::unix::fs::symlink(theirs.join("hop"), &chain).unwrap();
        let err = write_private(&chain, b"new").unwrap_err();
        assert!(matches!(&err, Error::Io { path, .. } if path == &theirs), "{err:?}");
        // Even in a folder of ours, a link they own is refused.
        let plain = dir.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        their_link(&victim, &plain.join("hop"));
        let chain2 = dir.path().join("chain2.json");
        std::os::unix::fs::symlink(plain.join("hop"), &chain2).unwrap();
        let err = write_private(&chain2, b"new").unwrap_err();
        assert!(err.to_string().contains("a symlink owned by uid 65534"), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // A chain of our own links is followed to the end.
        let own_target = dir.path().join("own-target");
        let own1 = dir.path().join("own1");
        std::os::unix::fs::symlink("own-target", &own1).unwrap();
        let own2 = dir.path().join("own2");
        std::os::unix::fs::symlink(&own1, &own2).unwrap();
        write_private(&own2, b"x").unwrap();
        assert_eq!(std::fs::read(&own_target).unwrap(), b"x");
        assert!(std::fs::symlink_metadata(&own2).unwrap().file_type().is_symlink());
        // A file of another owner is replaced by an atomic write, never read by an update.
        let planted = dir.path().join("planted.json");
        std::fs::write(&planted, "theirs").unwrap();
        std::os::unix::fs::chown(&planted, Some(OTHER), Some(OTHER)).unwrap();
        assert!(matches!(read_private(&planted).unwrap(), Private::Untrusted(f) if f.problem.contains("65534")));
        assert!(update_file(&planted, |_| Ok(None)).is_err());
        write_private(&planted, b"ours").unwrap();
        assert_eq!(std::fs::metadata(&planted).unwrap().uid(), 0);
    }

    #[test]
    fn a_fifo_or_folder_is_never_read_and_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("token.json");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let started = Instant::now();
        let got = read_private(&fifo).unwrap();
        assert!(
            matches!(&got, Private::Untrusted(f) if f.problem == "not a regular file"),
            "{got:?}"
        );
        assert!(
            update_file(&fifo, |_| Ok(None))
                .unwrap_err()
                .to_string()
                .contains("not a regular file")
        );
        assert!(started.elapsed() < Duration::from_secs(5), "well under any hang");
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(matches!(
            read_private(&dir.path().join("d")).unwrap(),
            Private::Untrusted(_)
        ));
        assert!(matches!(
            read_private(&dir.path().join("none")).unwrap(),
            Private::Missing
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b' '; usize::try_from(MAX_PRIVATE_FILE).unwrap() + 1]).unwrap();
        set_mode(&big, FILE_MODE);
        assert!(
            read_private(&big)
                .unwrap_err()
                .to_string()
                .contains("larger than 1048576 bytes")
        );
    }

    #[test]
    fn a_lock_file_another_user_planted_is_replaced_not_waited_for() {
        if !as_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("token.json");
        let lock = lock_path(&target);
        std::fs::write(&lock, "").unwrap();
        std::os::unix::fs::chown(&lock, Some(OTHER), Some(OTHER)).unwrap();
        // Their process holds it: flock on the planted file.
        let theirs = std::fs::File::open(&lock).unwrap();
        theirs.lock().unwrap();
        let started = Instant::now();
        let ours = FileLock::acquire_within(&target, Duration::from_secs(5)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(std::fs::metadata(&lock).unwrap().uid(), 0);
        drop(ours);
        // A symlink as the lock file is replaced too (never followed).
        let elsewhere = dir.path().join("elsewhere");
        std::fs::write(&elsewhere, "keep").unwrap();
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        FileLock::acquire_within(&target, Duration::from_secs(5)).unwrap();
        assert!(!std::fs::symlink_metadata(&lock).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"keep");
    }

    #[test]
    fn only_our_exact_temp_file_names_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        let names = [
            (".config.json.AbC123.tmp", true),
            (".config.json.bak.tmp", false),
            (".config.json.my-backup-2024.tmp", false),
            (".config.json.AbC12.tmp", false),
            (".config.json.AbC1234.tmp", false),
            (".config.json.Ab-123.tmp", false),
            ("config.json.AbC123.tmp", false),
        ];
        for (n, _) in names {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        sweep_leftovers(&f);
        for (n, ours) in names {
            assert_eq!(!dir.path().join(n).exists(), ours, "{n}");
        }
        // What write_private really creates matches the pattern.
        let name = std::ffi::OsStr::new("config.json");
        for _ in 0..20 {
            let tmp = tempfile::Builder::new()
                .prefix(".config.json.")
                .suffix(TMP_SUFFIX)
                .rand_bytes(TMP_RAND_LEN)
                .tempfile_in(dir.path())
                .unwrap();
            assert!(is_our_temp_file(tmp.path().file_name().unwrap(), name));
        }
    }
}
