//! Trust checks: who owns every folder and link on the way to a private file, and what is refused or
//! tightened (see the module above).

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{DIR_MODE, FILE_MODE, ensure_private_dir};
use crate::error::{Error, Result};

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
    pub(super) fn new(path: &Path, problem: impl Into<String>) -> Finding {
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

pub(super) fn check_file_md(path: &Path, md: &Metadata, out: &mut Vec<Finding>) {
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
/// caller or root, not readable or writable by others. Returns where a write lands (see [`super::write_target`]) and
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

/// Whether `mode` lets anyone but the owner read or write.
pub fn is_loose(mode: u32) -> bool {
    mode & 0o077 != 0
}
