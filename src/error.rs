//! The one error type of the core. Every fallible core function returns [`Result`]; the binding layer
//! (`src/py/errors.rs`) is the single place that turns an [`Error`] into a Python exception.
//!
//! Messages are built so that they never hold a secret: tokens, client secrets and request headers are
//! never formatted into any variant (tests in `tests/` scan `str(exc)` and `repr(exc)` for them).

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used across the core.
pub type Result<T> = std::result::Result<T, Error>;

/// A Databricks REST API failure, parsed from the response (see `api::errors`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiFailure {
    /// HTTP status code of the response (0 when the failure is not an HTTP status, e.g. a bad body).
    pub status: u16,
    /// Databricks `error_code` (e.g. `QUOTA_EXCEEDED`), when the body carried one.
    pub error_code: Option<String>,
    /// Human-readable message, free of secrets.
    pub message: String,
    /// Seconds the server asked us to wait (`Retry-After`), when it said so.
    pub retry_after: Option<f64>,
}

/// Everything that can go wrong in the core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A function argument has a bad value (maps to `ValueError`; the message names the parameter).
    #[error("{param}: {reason}")]
    InvalidArgument {
        /// Name of the parameter or environment variable.
        param: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration is unusable (maps to `ConfigError`).
    #[error("{0}")]
    Config(String),
    /// A required environment variable is not set (maps to `MissingEnvVarError`, a `KeyError` too).
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    /// Authentication failed (maps to `AuthError`).
    #[error("{0}")]
    Auth(String),
    /// The API answered with an error (maps to `ApiError` or one of its subclasses).
    #[error("{}", .0.message)]
    Api(ApiFailure),
    /// The request could not be completed at the transport level (maps to `TransportError`).
    #[error("{0}")]
    Transport(String),
    /// The retry budget ran out (maps to `TimeoutError`, chained to the last error).
    #[error("{message}")]
    Timeout {
        /// What timed out and after how long.
        message: String,
        /// The last error seen before giving up.
        last: Option<Box<Error>>,
    },
    /// A rotation hook failed: its command could not start or exited non-zero, or the `on_rotate` callback
    /// raised (maps to `HookError`, a `RuntimeError` too).
    #[error("{0}")]
    Hook(String),
    /// A rotation callback raised (maps to `HookError`, with the raised exception as its `__cause__`).
    #[error("{message}")]
    HookRaised {
        /// What failed, with the exception's text.
        message: String,
        /// The binding's handle on what was raised (opaque to the core).
        cause: Cause,
    },
    /// The object is not running (a stopped rotation, or one inherited across `fork()`; maps to
    /// `NotRunningError`, a `RuntimeError` too).
    #[error("{0}")]
    NotRunning(String),
    /// Someone else holds what this needs for its whole life (a second rotation on one broker cache; maps to
    /// `BusyError`, a `RuntimeError` too).
    #[error("{0}")]
    Busy(String),
    /// A filesystem operation failed (maps to `OSError` with `filename`).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What we were doing ("write", "create directory", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Something a binding keeps with an error for its own use (the Python exception a callback raised).
#[derive(Clone)]
pub struct Cause(pub Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cause(..)")
    }
}

impl Clone for Error {
    /// A copy for a second reader (a rotation reports one failure to its status and to `rotate_now` callers).
    /// An I/O error keeps its kind, OS error number and message.
    fn clone(&self) -> Self {
        match self {
            Error::InvalidArgument { param, reason } => Error::invalid(param.clone(), reason.clone()),
            Error::Config(m) => Error::Config(m.clone()),
            Error::MissingEnv(m) => Error::MissingEnv(m.clone()),
            Error::Auth(m) => Error::Auth(m.clone()),
            Error::Api(f) => Error::Api(f.clone()),
            Error::Transport(m) => Error::Transport(m.clone()),
            Error::Timeout { message, last } => Error::Timeout {
                message: message.clone(),
                last: last.clone(),
            },
            Error::Hook(m) => Error::Hook(m.clone()),
            Error::HookRaised { message, cause } => Error::HookRaised {
                message: message.clone(),
                cause: cause.clone(),
            },
            Error::NotRunning(m) => Error::NotRunning(m.clone()),
            Error::Busy(m) => Error::Busy(m.clone()),
            Error::Io { op, path, source } => {
                let source = match source.raw_os_error() {
                    Some(n) => std::io::Error::from_raw_os_error(n),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                };
                Error::io(op, path.clone(), source)
            }
        }
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(param: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            param: param.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_keep_the_message_and_the_os_error() {
        let e = Error::io("read", "/x", std::io::Error::from_raw_os_error(2));
        let c = e.clone();
        assert_eq!(c.to_string(), e.to_string());
        assert!(matches!(c, Error::Io { ref source, .. } if source.raw_os_error() == Some(2)));
        let t = Error::Timeout {
            message: "slow".into(),
            last: Some(Box::new(Error::Hook("exit 1".into()))),
        };
        assert!(matches!(t.clone(), Error::Timeout { last: Some(l), .. } if l.to_string() == "exit 1"));
    }
}
