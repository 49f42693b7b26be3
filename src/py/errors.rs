//! The single mapping from core [`Error`]s to Python exceptions. The exception classes are defined in Python
//! (`python/devbox_native/errors.py`) and imported here, so they can carry attributes and be documented there.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::error::Error;
use crate::secret::redact;

pyo3::import_exception!(devbox_native.errors, ConfigError);
pyo3::import_exception!(devbox_native.errors, AuthError);
pyo3::import_exception!(devbox_native.errors, TransportError);
pyo3::import_exception!(devbox_native.errors, MissingEnvVarError);
pyo3::import_exception!(devbox_native.errors, HookError);
pyo3::import_exception!(devbox_native.errors, NotRunningError);
pyo3::import_exception!(devbox_native.errors, BusyError);
pyo3::import_exception!(devbox_native.errors, DevboxTimeoutError);

/// `devbox_native.errors.<factory>(*args)` as the exception to raise (the factory picks the subclass).
fn made_by<'py>(py: Python<'py>, factory: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    let made = py
        .import("devbox_native.errors")
        .and_then(|m| m.getattr(factory)?.call1(args));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

/// The errno of an I/O error: the OS's own number, else the one its kind stands for (std reports a NUL in a
/// path as `InvalidInput` without a number), and `EIO` only when nothing closer fits.
fn errno_of(e: &std::io::Error) -> i32 {
    use std::io::ErrorKind as K;
    if let Some(n) = e.raw_os_error() {
        return n;
    }
    match e.kind() {
        K::NotFound => 2,                           // ENOENT
        K::PermissionDenied => 13,                  // EACCES
        K::AlreadyExists => 17,                     // EEXIST
        K::NotADirectory => 20,                     // ENOTDIR
        K::IsADirectory => 21,                      // EISDIR
        K::InvalidInput | K::InvalidFilename => 22, // EINVAL
        K::StorageFull => 28,                       // ENOSPC
        K::ReadOnlyFilesystem => 30,                // EROFS
        K::WouldBlock => 11,                        // EAGAIN
        K::Interrupted => 4,                        // EINTR
        K::TimedOut => 110,                         // ETIMEDOUT
        K::DirectoryNotEmpty => 39,                 // ENOTEMPTY
        K::CrossesDevices => 18,                    // EXDEV
        K::FileTooLarge => 27,                      // EFBIG
        _ => 5,                                     // EIO
    }
}

fn to_pyerr(py: Python<'_>, e: Error) -> PyErr {
    // Every message crossing into Python is masked: it may quote a server's or a child's text.
    let message = redact(&e.to_string(), &[]);
    match e {
        Error::InvalidArgument { .. } => PyValueError::new_err(message),
        Error::Config(_) => ConfigError::new_err(message),
        Error::MissingEnv(name) => MissingEnvVarError::new_err((message, name)),
        Error::Auth(_) => AuthError::new_err(message),
        Error::Transport(_) => TransportError::new_err(message),
        Error::Hook(_) => HookError::new_err(message),
        Error::HookRaised { cause, .. } => {
            let err = HookError::new_err(message);
            if let Some(raised) = cause.0.downcast_ref::<Py<PyAny>>() {
                err.set_cause(py, Some(PyErr::from_value(raised.bind(py).clone())));
            }
            err
        }
        Error::NotRunning(_) => NotRunningError::new_err(message),
        Error::Busy(_) => BusyError::new_err(message),
        Error::Api(f) => made_by(
            py,
            "_from_failure",
            (redact(&f.message, &[]), f.status, f.error_code, f.retry_after),
        ),
        Error::Timeout { last, .. } => {
            let err = DevboxTimeoutError::new_err(message);
            if let Some(last) = last {
                err.set_cause(py, Some(to_pyerr(py, *last)));
            }
            err
        }
        Error::Io { op, path, source } => {
            let text = source.to_string();
            // std appends " (os error N)"; Python shows the number itself as "[Errno N]".
            let text = source
                .raw_os_error()
                .map_or(text.as_str(), |n| text.trim_end_matches(&format!(" (os error {n})")));
            let strerror = redact(&format!("cannot {op}: {text}"), &[]);
            made_by(
                py,
                "_file_error",
                (errno_of(&source), strerror, path.to_string_lossy().into_owned()),
            )
        }
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        Python::attach(|py| to_pyerr(py, e))
    }
}
