//! The one error type of the core. Every fallible core function returns [`Result`]; the binding layer
//! (`src/py/errors.rs`) is the single place that turns an [`Error`] into a Python exception.
//!
//! Messages are built so that they never hold a secret: tokens, client secrets and request headers are
//! never formatted into any variant (tests in `tests/` scan `str(exc)` and `repr(exc)` for them).

use std::path::PathBuf;

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
