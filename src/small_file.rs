//! Bounded reads of files the user or the environment names (`.databrickscfg`, an OIDC token file): only a
//! regular file is read, at most [`MAX_BYTES`], and opening it never blocks (a FIFO, `/dev/zero` or
//! `/dev/urandom` fails at once instead of hanging or filling memory).

use std::io::Read;
use std::path::Path;

/// The most we read of a configuration or token file, and of the `databricks` CLI's output.
pub const MAX_BYTES: u64 = 1024 * 1024;

/// How the limit is shown in messages.
pub const MAX_SHOWN: &str = "1 MiB";

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// Opening or reading failed (`NotFound` included).
    Io(std::io::Error),
    /// It is not a regular file (a folder, a FIFO, a device).
    NotRegular,
    /// It is larger than [`MAX_BYTES`].
    TooLarge,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::NotRegular => f.write_str("is not a regular file"),
            ReadError::TooLarge => write!(f, "is larger than the limit of {MAX_SHOWN}"),
        }
    }
}

/// The bytes of the regular file at `path`, at most [`MAX_BYTES`].
pub fn read(path: &Path) -> std::result::Result<Vec<u8>, ReadError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A FIFO with no writer would block `open` itself; a regular file ignores the flag.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(ReadError::Io)?;
    if !file.metadata().map_err(ReadError::Io)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"[a]\n").unwrap();
        assert_eq!(read(&ok).unwrap(), b"[a]\n");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(&big), Err(ReadError::TooLarge)));
        std::fs::write(&big, vec![b'x'; MAX_BYTES as usize]).unwrap();
        assert_eq!(read(&big).unwrap().len(), MAX_BYTES as usize);
        assert!(matches!(read(dir.path()), Err(ReadError::NotRegular)));
        let t0 = std::time::Instant::now();
        for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
            assert!(matches!(read(Path::new(dev)), Err(ReadError::NotRegular)), "{dev}");
        }
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        assert!(matches!(read(&fifo), Err(ReadError::NotRegular)));
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        assert!(
            matches!(read(&dir.path().join("missing")), Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound)
        );
        assert_eq!(ReadError::TooLarge.to_string(), "is larger than the limit of 1 MiB");
    }
}
