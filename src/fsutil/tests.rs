use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use super::private::{TMP_RAND_LEN, TMP_SUFFIX};
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
