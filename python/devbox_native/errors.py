"""Exceptions raised by devbox_native.

The Rust core raises these classes (it imports them from here), so they carry real attributes and
``except`` clauses written for the Databricks SDK keep working: :class:`ApiError` is an ``IOError`` with
``status_code``, ``error_code`` and ``retry_after_secs``, and its subclasses follow the SDK's mapping
(``error_code`` first, then the HTTP status). No message ever contains a token, a client secret or a
request header.

Every error the library raises on purpose is a :class:`DevboxError`, and each keeps the builtin base it had
(``TimeoutError``, ``OSError`` with ``errno`` and ``filename``, ``RuntimeError``, ``ValueError``), so
``except DevboxError`` catches them all and older ``except OSError`` clauses still work. Wrong argument types
stay plain ``TypeError`` (a programming error, not a failure).
"""

from __future__ import annotations

__all__ = [
    "Aborted",
    "AlreadyExists",
    "ApiError",
    "AuthError",
    "BadRequest",
    "BusyError",
    "Cancelled",
    "ConfigError",
    "DataLoss",
    "DeadlineExceeded",
    "DevboxError",
    "DevboxTimeoutError",
    "FileAlreadyExistsError",
    "FileError",
    "FilePermissionError",
    "HookError",
    "InternalError",
    "InvalidParameterValue",
    "InvalidState",
    "IsDirectoryError",
    "MissingEnvVarError",
    "NoSuchFileError",
    "NotDirectoryError",
    "NotFound",
    "NotImplemented",
    "NotRunningError",
    "PermissionDenied",
    "QuotaExceeded",
    "RequestLimitExceeded",
    "ResourceAlreadyExists",
    "ResourceConflict",
    "ResourceDoesNotExist",
    "ResourceExhausted",
    "TemporarilyUnavailable",
    "TooManyRequests",
    "TransportError",
    "Unauthenticated",
    "Unknown",
]


class DevboxError(Exception):
    """Base class of every devbox_native error."""

    def __str__(self) -> str:
        # One message argument, shown as is (KeyError subclasses would otherwise quote it).
        return str(self.args[0]) if self.args else ""


class ConfigError(DevboxError, ValueError):
    """The configuration (arguments, environment, config file) cannot be used."""


class MissingEnvVarError(ConfigError, KeyError):
    """A required environment variable is not set. Also a ``KeyError``, like ``os.environ[name]``."""

    def __init__(self, message: str, env_var: str | None = None) -> None:
        super().__init__(message)
        #: The name of the missing variable.
        self.env_var = env_var


class AuthError(DevboxError):
    """Authentication failed (e.g. the OAuth token endpoint refused the client credentials)."""


class TransportError(DevboxError, ConnectionError):
    """The request could not be completed: connection refused or reset, broken response, bad TLS."""


class HookError(DevboxError, RuntimeError):
    """A token rotation's hook failed: its command could not start or exited non-zero, or ``on_rotate`` raised."""


class DevboxTimeoutError(DevboxError, TimeoutError):
    """A time limit ran out: a call's retry budget (chained to the last error seen) or a wait for a file lock."""


class NotRunningError(DevboxError, RuntimeError):
    """The object cannot do that now: the rotation is stopped (or was inherited across ``fork()``)."""


class BusyError(DevboxError, RuntimeError):
    """Another holder has what this needs for its whole life: a second rotation on one broker cache (the
    message names the first one's pid)."""


class FileError(DevboxError, OSError):
    """A file operation failed: an ``OSError`` with ``errno``, ``strerror`` and ``filename``.

    Raised as the subclass that matches the errno (``FileNotFoundError``, ``PermissionError``,
    ``FileExistsError``, ``IsADirectoryError``, ``NotADirectoryError``), as ``OSError`` itself would be, so
    ``except FileNotFoundError`` works too.
    """

    __str__ = OSError.__str__


class NoSuchFileError(FileError, FileNotFoundError):
    """A :class:`FileError` for ``ENOENT``."""


class FilePermissionError(FileError, PermissionError):
    """A :class:`FileError` for ``EACCES`` / ``EPERM``."""


class FileAlreadyExistsError(FileError, FileExistsError):
    """A :class:`FileError` for ``EEXIST``."""


class IsDirectoryError(FileError, IsADirectoryError):
    """A :class:`FileError` for ``EISDIR``."""


class NotDirectoryError(FileError, NotADirectoryError):
    """A :class:`FileError` for ``ENOTDIR``."""


_FILE_ERRORS: dict[type[OSError], type[FileError]] = {
    FileNotFoundError: NoSuchFileError,
    PermissionError: FilePermissionError,
    FileExistsError: FileAlreadyExistsError,
    IsADirectoryError: IsDirectoryError,
    NotADirectoryError: NotDirectoryError,
}


def _file_error(errno: int, strerror: str, filename: str) -> FileError:
    """Build the exception for a file failure (called by the Rust core): the subclass ``OSError`` would pick."""
    cls = _FILE_ERRORS.get(type(OSError(errno, strerror)), FileError)
    return cls(errno, strerror, filename)


class ApiError(DevboxError, IOError):
    """The Databricks API answered with an error.

    Attributes:
        status_code: HTTP status of the response (0 when the failure is not an HTTP status).
        error_code: Databricks ``error_code`` such as ``QUOTA_EXCEEDED``, or None.
        message: The error message.
        retry_after_secs: Seconds the server asked to wait (``Retry-After``), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str | None = None,
        retry_after_secs: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.error_code = error_code
        self.retry_after_secs = retry_after_secs

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"error_code={self.error_code!r}, retry_after_secs={self.retry_after_secs!r})"
        )


class BadRequest(ApiError):
    """400."""


class InvalidParameterValue(BadRequest):
    """``INVALID_PARAMETER_VALUE``."""


class InvalidState(BadRequest):
    """``INVALID_STATE``."""


class Unauthenticated(ApiError):
    """401."""


class PermissionDenied(ApiError):
    """403."""


class NotFound(ApiError):
    """404."""


class ResourceDoesNotExist(NotFound):
    """``RESOURCE_DOES_NOT_EXIST``."""


class ResourceConflict(ApiError):
    """409."""


class Aborted(ResourceConflict):
    """``ABORTED``."""


class AlreadyExists(ResourceConflict):
    """``ALREADY_EXISTS``."""


class ResourceAlreadyExists(ResourceConflict):
    """``RESOURCE_ALREADY_EXISTS``."""


class TooManyRequests(ApiError):
    """429."""


class ResourceExhausted(TooManyRequests):
    """``RESOURCE_EXHAUSTED``."""


class RequestLimitExceeded(TooManyRequests):
    """``REQUEST_LIMIT_EXCEEDED``."""


class QuotaExceeded(ResourceExhausted):
    """``QUOTA_EXCEEDED``: the identity already has the most live tokens a workspace allows (600).

    Revoke tokens you no longer need (``devbox_native.list_tokens`` / ``delete_token``), then retry.
    """


class Cancelled(ApiError):
    """499."""


class InternalError(ApiError):
    """500."""


class Unknown(InternalError):
    """``UNKNOWN``."""


class DataLoss(InternalError):
    """``DATA_LOSS``."""


class NotImplemented(ApiError):
    """501."""


class TemporarilyUnavailable(ApiError):
    """503."""


class DeadlineExceeded(ApiError):
    """504."""


_BY_ERROR_CODE: dict[str, type[ApiError]] = {
    "INVALID_PARAMETER_VALUE": InvalidParameterValue,
    "INVALID_STATE": InvalidState,
    "RESOURCE_DOES_NOT_EXIST": ResourceDoesNotExist,
    "ABORTED": Aborted,
    "ALREADY_EXISTS": AlreadyExists,
    "RESOURCE_ALREADY_EXISTS": ResourceAlreadyExists,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "REQUEST_LIMIT_EXCEEDED": RequestLimitExceeded,
    "QUOTA_EXCEEDED": QuotaExceeded,
    "UNKNOWN": Unknown,
    "DATA_LOSS": DataLoss,
}

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: ResourceConflict,
    429: TooManyRequests,
    499: Cancelled,
    500: InternalError,
    501: NotImplemented,
    503: TemporarilyUnavailable,
    504: DeadlineExceeded,
}


def error_class(status_code: int, error_code: str | None) -> type[ApiError]:
    """The exception class for a response: by ``error_code`` first, then by status (the SDK's order)."""
    if error_code is not None and error_code in _BY_ERROR_CODE:
        return _BY_ERROR_CODE[error_code]
    return _BY_STATUS.get(status_code, ApiError)


def _from_failure(message: str, status_code: int, error_code: str | None, retry_after_secs: float | None) -> ApiError:
    """Build the exception for an API failure (called by the Rust core)."""
    cls = error_class(status_code, error_code)
    return cls(message, status_code=status_code, error_code=error_code, retry_after_secs=retry_after_secs)
