//! The functions `devbox_native` exports: the DevBox app's drop-ins and the Token API, each sync with an
//! `_async` twin. Sync calls release the GIL for the whole network wait and stay interruptible (Ctrl-C).

use std::path::PathBuf;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::api::tokens::{self, CreatedToken, TokenInfo};
use crate::broker;
use crate::ccr::{self, CcrPaths, DEFAULT_MODEL};
use crate::config::{Config, Env, ProcessEnv, normalize_host};
use crate::dropin;
use crate::error::{Error, Result};
use crate::hygiene::{self, Cleanup};
use crate::py::config::PyConfig;
use crate::py::{asyncio, logging, values};
use crate::runtime;
use crate::workspace::Workspace;

/// A minted token. `repr()` never shows the value.
#[pyclass(name = "CreatedToken", module = "devbox_native", frozen, get_all)]
pub struct PyCreatedToken {
    /// The token itself.
    token_value: String,
    /// Its id (used to revoke it).
    token_id: String,
    /// Creation time, epoch milliseconds.
    creation_time: i64,
    /// Expiry time, epoch milliseconds (-1: never).
    expiry_time: i64,
    /// The comment it was created with.
    comment: Option<String>,
}

#[pymethods]
impl PyCreatedToken {
    fn __repr__(&self) -> String {
        format!(
            "CreatedToken(token_id={}, creation_time={}, expiry_time={}, comment={}, token_value='***')",
            py_str(&self.token_id),
            self.creation_time,
            self.expiry_time,
            self.comment.as_deref().map_or_else(|| "None".to_string(), py_str)
        )
    }
}

/// A string the way Python's `repr()` shows simple ASCII strings.
pub(crate) fn py_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl From<CreatedToken> for PyCreatedToken {
    fn from(t: CreatedToken) -> Self {
        PyCreatedToken {
            token_value: t.value.expose().to_string(),
            token_id: t.info.token_id,
            creation_time: t.info.creation_time,
            expiry_time: t.info.expiry_time,
            comment: t.info.comment,
        }
    }
}

/// A whole number of seconds: `bool` and `float` are bad values (`ValueError`), other types `TypeError`.
pub(crate) fn seconds_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    if obj.is_instance_of::<PyBool>() {
        return Err(PyValueError::new_err(format!(
            "{name}: must be a whole number of seconds, not a bool"
        )));
    }
    if obj.is_instance_of::<PyFloat>() {
        return Err(PyValueError::new_err(format!(
            "{name}: must be a whole number of seconds, not a float ({obj})"
        )));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .map_err(|_| PyValueError::new_err(format!("{name}: {obj} is out of range")));
    }
    Err(PyTypeError::new_err(format!(
        "{name}: expected int, got {}",
        obj.get_type().name()?
    )))
}

/// How often a sync call checks for signals while it waits.
const SIGNAL_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// Run a core future to completion with the GIL released. While it waits, signals are checked every
/// [`SIGNAL_CHECK`] (Python runs handlers only in the main thread): when a handler raises (Ctrl-C's
/// `KeyboardInterrupt`), the future is dropped, which aborts its request, and the exception propagates.
pub(crate) fn wait<T: Send>(py: Python<'_>, fut: impl Future<Output = Result<T>> + Send) -> PyResult<T> {
    logging::ensure(py);
    let outcome = py.detach(|| {
        runtime::block_on(async {
            let mut fut = std::pin::pin!(fut);
            loop {
                tokio::select! {
                    r = &mut fut => return Ok(r),
                    () = tokio::time::sleep(SIGNAL_CHECK) => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    });
    match outcome {
        Ok(Ok(r)) => Ok(r?),
        Ok(Err(interrupted)) => Err(interrupted),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn root_or_home(root_dir: Option<PathBuf>) -> Result<PathBuf> {
    match root_dir {
        Some(r) => Ok(r),
        None => std::env::home_dir()
            .filter(|h| !h.as_os_str().is_empty())
            .ok_or_else(|| Error::Config("cannot find the home folder (HOME is not set): pass root_dir".into())),
    }
}

pub(crate) fn host_or_env(host: Option<String>) -> Result<String> {
    match host {
        Some(h) => Ok(h),
        None => ProcessEnv
            .var("DATABRICKS_HOST")
            .ok_or_else(|| Error::MissingEnv("DATABRICKS_HOST".into())),
    }
}

/// The configuration to use: the caller's `config=`, else one resolved from the environment now.
pub(crate) fn chosen(config: Option<&Bound<'_, PyConfig>>) -> Option<Config> {
    config.map(|c| c.get().inner.clone())
}

pub(crate) fn workspace(config: Option<Config>) -> Result<Workspace> {
    Workspace::new(Config::given_or_default(config, &ProcessEnv)?)
}

/// `duration_seconds` as the caller gave it, or omitted (the app's default, 3600). An explicit `None` is given,
/// so it is a `TypeError`, as `int(None)` is in the app.
pub enum DurationArg {
    /// Not passed.
    Omitted,
    /// Passed, to be checked by [`seconds_arg`].
    Given(Py<PyAny>),
}

impl<'a, 'py> FromPyObject<'a, 'py> for DurationArg {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Self::Given(obj.to_owned().unbind()))
    }
}

impl DurationArg {
    fn seconds(&self, py: Python<'_>) -> PyResult<i64> {
        match self {
            Self::Omitted => Ok(dropin::DEFAULT_DURATION),
            Self::Given(obj) => seconds_arg(obj.bind(py), "duration_seconds"),
        }
    }
}

/// Mint a personal access token for the configured identity, like the DevBox app's function.
///
/// Credentials are found the way ``databricks.sdk.WorkspaceClient()`` finds them (see `Config`: environment,
/// ``~/.databrickscfg``, then ``pat``, ``basic``, ``metadata-service``, ``oauth-m2m``, ``env-oidc``,
/// ``file-oidc``, ``databricks-cli``). OAuth access tokens are cached in-process and refreshed before expiry.
///
/// Args:
///     duration_seconds: Token lifetime (default 3600). ``CLAUDE_CODE_TOKEN_EXPIRY_SECONDS``, when set,
///         overrides it, as in the app, read exactly as Python's ``int()`` reads it (``' 3600 '``, ``'+3600'``,
///         ``'3_600'``, other scripts' digits).
///
/// Returns:
///     The token value.
///
/// Raises:
///     TypeError: ``duration_seconds`` is not an int.
///     ValueError: the lifetime is not a positive whole number (naming the parameter or env var).
///     ConfigError: credentials cannot be configured (the SDK's message, secrets masked).
///     AuthError: OAuth authentication failed (or discovery named a token endpoint on another origin).
///     ApiError: the Token API refused (e.g. ``QuotaExceeded``).
///     TransportError: the host does not resolve, refused connections for 10 s, TLS failed, or the response was
///         malformed or over 8 MiB.
///     DevboxTimeoutError: the retry budget ran out (also while fetching an OAuth token); a ``TimeoutError``
///         too, whose ``__cause__`` is the last error.
///
/// Keyword Args:
///     config: Use this configuration instead of resolving one from the environment.
#[pyfunction]
#[pyo3(
    signature = (duration_seconds = DurationArg::Omitted, *, config = None),
    text_signature = "(duration_seconds=3600, *, config=None)"
)]
pub fn generate_spn_token(
    py: Python<'_>,
    duration_seconds: DurationArg,
    config: Option<&Bound<'_, PyConfig>>,
) -> PyResult<String> {
    let seconds = duration_seconds.seconds(py)?;
    let token = wait(py, dropin::generate_spn_token(&ProcessEnv, seconds, chosen(config)))?;
    Ok(token.value.expose().to_string())
}

/// Async version of :func:`generate_spn_token`.
#[pyfunction]
#[pyo3(
    signature = (duration_seconds = DurationArg::Omitted, *, config = None),
    text_signature = "(duration_seconds=3600, *, config=None)"
)]
pub fn generate_spn_token_async<'py>(
    py: Python<'py>,
    duration_seconds: DurationArg,
    config: Option<&Bound<'py, PyConfig>>,
) -> PyResult<Bound<'py, PyAny>> {
    let seconds = duration_seconds.seconds(py)?;
    let config = chosen(config);
    logging::ensure(py);
    let fut = async move { dropin::generate_spn_token(&ProcessEnv, seconds, config).await };
    asyncio::spawn(py, fut, |py, t| {
        Ok(t.value.expose().into_pyobject(py)?.into_any().unbind())
    })
}

fn lifetime_opt(lifetime_seconds: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    lifetime_seconds
        .map(|l| seconds_arg(l, "lifetime_seconds").and_then(|s| Ok(tokens::check_lifetime("lifetime_seconds", s)?)))
        .transpose()
}

/// What `auto_cleanup=True` revokes on `QUOTA_EXCEEDED`: our tokens, except every one the broker cache
/// records (`cache_path`, else the default cache). When that cache cannot be read there is no automatic cleanup
/// (a warning says why): revoking what it may protect is worse than the quota error.
pub(crate) fn auto_cleanup_opts(auto_cleanup: bool, cache_path: Option<PathBuf>) -> Option<Cleanup> {
    if !auto_cleanup {
        return None;
    }
    let Some(path) = cache_path.or_else(|| broker::default_cache_path(&ProcessEnv).ok()) else {
        return Some(Cleanup::ours(Default::default()));
    };
    match broker::protected_token_ids(&path) {
        Ok(keep) => Some(Cleanup::ours(keep)),
        Err(e) => {
            log::warn!("auto_cleanup is off: cannot read the broker cache to keep its tokens ({e})");
            None
        }
    }
}

/// Mint a token with the default configuration (``POST /api/2.0/token/create``).
///
/// Args:
///     lifetime_seconds: Lifetime in seconds; None lets the workspace decide.
///     comment: A comment stored with the token.
///
/// Keyword Args:
///     config: Use this configuration instead of resolving one from the environment.
///     auto_cleanup: On ``QUOTA_EXCEEDED``, revoke this library's stale tokens (``devbox-native-`` comments,
///         never a token the broker cache records: current, minted, pending or held) and retry once. When that
///         cache cannot be read there is no automatic cleanup (a warning says why).
///     cache_path: The broker cache whose tokens ``auto_cleanup`` keeps (None: the default cache file).
///
/// Raises:
///     QuotaExceeded: the identity holds too many tokens; the message says how many are live and how to
///         clean up.
#[pyfunction]
#[pyo3(signature = (
    lifetime_seconds = None, comment = None, *, config = None, auto_cleanup = false, cache_path = None
))]
pub fn create_token(
    py: Python<'_>,
    lifetime_seconds: Option<&Bound<'_, PyAny>>,
    comment: Option<String>,
    config: Option<&Bound<'_, PyConfig>>,
    auto_cleanup: bool,
    cache_path: Option<PathBuf>,
) -> PyResult<PyCreatedToken> {
    let lifetime = lifetime_opt(lifetime_seconds)?;
    let config = chosen(config);
    let auto = auto_cleanup_opts(auto_cleanup, cache_path);
    let created = wait(py, async move {
        hygiene::create_token(&workspace(config)?, lifetime, comment.as_deref(), auto.as_ref()).await
    })?;
    Ok(created.into())
}

/// Async version of :func:`create_token`.
#[pyfunction]
#[pyo3(signature = (
    lifetime_seconds = None, comment = None, *, config = None, auto_cleanup = false, cache_path = None
))]
pub fn create_token_async<'py>(
    py: Python<'py>,
    lifetime_seconds: Option<&Bound<'py, PyAny>>,
    comment: Option<String>,
    config: Option<&Bound<'py, PyConfig>>,
    auto_cleanup: bool,
    cache_path: Option<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let lifetime = lifetime_opt(lifetime_seconds)?;
    let config = chosen(config);
    let auto = auto_cleanup_opts(auto_cleanup, cache_path);
    logging::ensure(py);
    let fut =
        async move { hygiene::create_token(&workspace(config)?, lifetime, comment.as_deref(), auto.as_ref()).await };
    asyncio::spawn(py, fut, |py, t| Ok(Py::new(py, PyCreatedToken::from(t))?.into_any()))
}

fn infos_to_py(py: Python<'_>, infos: &[TokenInfo]) -> PyResult<Py<PyAny>> {
    let value = serde_json::to_value(infos).map_err(|e| PyValueError::new_err(e.to_string()))?;
    values::to_py(py, &value)
}

/// The caller's live tokens (``GET /api/2.0/token/list``), metadata only.
#[pyfunction]
#[pyo3(signature = (*, config = None))]
pub fn list_tokens(py: Python<'_>, config: Option<&Bound<'_, PyConfig>>) -> PyResult<Py<PyAny>> {
    let config = chosen(config);
    let infos = wait(py, async move { tokens::list(&workspace(config)?).await })?;
    infos_to_py(py, &infos)
}

/// Async version of :func:`list_tokens`.
#[pyfunction]
#[pyo3(signature = (*, config = None))]
pub fn list_tokens_async<'py>(py: Python<'py>, config: Option<&Bound<'py, PyConfig>>) -> PyResult<Bound<'py, PyAny>> {
    let config = chosen(config);
    logging::ensure(py);
    let fut = async move { tokens::list(&workspace(config)?).await };
    asyncio::spawn(py, fut, |py, infos| infos_to_py(py, &infos))
}

/// Revoke a token by id (``POST /api/2.0/token/delete``).
#[pyfunction]
#[pyo3(signature = (token_id, *, config = None))]
pub fn delete_token(py: Python<'_>, token_id: String, config: Option<&Bound<'_, PyConfig>>) -> PyResult<()> {
    let config = chosen(config);
    wait(py, async move { tokens::delete(&workspace(config)?, &token_id).await })
}

/// Async version of :func:`delete_token`.
#[pyfunction]
#[pyo3(signature = (token_id, *, config = None))]
pub fn delete_token_async<'py>(
    py: Python<'py>,
    token_id: String,
    config: Option<&Bound<'py, PyConfig>>,
) -> PyResult<Bound<'py, PyAny>> {
    let config = chosen(config);
    logging::ensure(py);
    let fut = async move { tokens::delete(&workspace(config)?, &token_id).await };
    asyncio::spawn(py, fut, |py, ()| Ok(py.None()))
}

/// ``https://`` + host when no scheme is given; an existing scheme is kept (never doubled); no trailing
/// slash, no default ``:443``.
///
/// Raises:
///     ValueError: ``url`` is not a host or http(s) URL.
#[pyfunction]
pub fn ensure_https_url(url: &str) -> PyResult<String> {
    normalize_host(url).map_err(|r| PyValueError::new_err(format!("url: {r}")))
}

/// Write ``<root_dir>/.databrickscfg`` (``[DEFAULT]`` host, client_id, client_secret) from the environment.
///
/// Args:
///     root_dir: Folder to write into; None means the home folder.
///
/// Raises:
///     MissingEnvVarError: ``DATABRICKS_HOST``, ``DATABRICKS_CLIENT_ID`` or ``DATABRICKS_CLIENT_SECRET`` is
///         not set (also a ``KeyError``).
///     ValueError: a value contains a line break.
///     FileError: (an ``OSError``, with ``filename``) the file cannot be written (the old one is left as it was).
#[pyfunction]
#[pyo3(signature = (*, root_dir = None))]
pub fn setup_databricks_cfg(py: Python<'_>, root_dir: Option<PathBuf>) -> PyResult<()> {
    py.detach(|| dropin::setup_databricks_cfg(&ProcessEnv, &root_or_home(root_dir)?))?;
    Ok(())
}

/// The Claude Code Router config as a dict (see CCR-CONFIG.md for its structure).
///
/// Args:
///     databricks_token: The token CCR sends as ``Authorization: Bearer``.
///     root_dir: The folder holding ``.claude-code-router`` (None: the home folder).
///     host: Workspace host with or without scheme (None: ``DATABRICKS_HOST``).
///     model: Serving endpoint name.
#[pyfunction]
#[pyo3(signature = (databricks_token, root_dir = None, *, host = None, model = "databricks-claude-sonnet-4"))]
pub fn make_config(
    py: Python<'_>,
    databricks_token: &str,
    root_dir: Option<PathBuf>,
    host: Option<String>,
    model: &str,
) -> PyResult<Py<PyAny>> {
    let paths = CcrPaths::new(&root_or_home(root_dir)?)?;
    let value = ccr::render_config(databricks_token, &paths, &host_or_env(host)?, model)?;
    values::to_py(py, &value)
}

/// The JavaScript source of the CCR transformer plugin ``databricks-custom``.
#[pyfunction]
pub fn get_databricks_transformers_js() -> &'static str {
    ccr::PLUGIN_JS
}

/// Write ``<root>/.claude-code-router/config.json`` and the plugin, atomically and 0600 (folders 0700).
///
/// With ``gateway_url`` (gateway mode, e.g. the ``url`` of the loopback credential gateway), the ``databricks``
/// provider points at ``<gateway_url>/serving-endpoints/<model>/invocations`` and ``databricks_token`` is the
/// gateway key it presents, so the file never holds a Databricks token and a new token never needs a CCR
/// restart; ``host`` is not used. The structure is otherwise exactly the one without a gateway.
///
/// Returns:
///     The path of ``config.json``.
///
/// Raises:
///     TypeError: an argument has the wrong type.
///     ValueError: empty token or one with whitespace, bad host, gateway_url or model (naming the parameter).
///     MissingEnvVarError: ``host`` and ``gateway_url`` are None and ``DATABRICKS_HOST`` is not set.
///     FileError: (an ``OSError``, with ``filename``) a file cannot be written (files already there are left
///         byte-identical), or a target is not trusted (another user's file, symlink or folder; see the README's
///         "Security model"). Every target is checked first, and what a failed call created is removed again.
#[pyfunction]
#[pyo3(signature = (
    databricks_token, root_dir = None, *, host = None, model = "databricks-claude-sonnet-4", gateway_url = None
))]
pub fn write_ccr_config(
    py: Python<'_>,
    databricks_token: &str,
    root_dir: Option<PathBuf>,
    host: Option<String>,
    model: &str,
    gateway_url: Option<String>,
) -> PyResult<PathBuf> {
    Ok(py.detach(|| {
        let root = root_or_home(root_dir)?;
        match gateway_url {
            // Gateway mode: the first argument is the gateway key.
            Some(g) => ccr::write_ccr_gateway_config(&root, databricks_token, &g, model),
            None => ccr::write_ccr_config(&root, databricks_token, &host_or_env(host)?, model),
        }
    })?)
}

/// The app's ``materialize_configs``: :func:`write_ccr_config` under the home folder.
#[pyfunction]
#[pyo3(signature = (databricks_token, *, root_dir = None))]
pub fn materialize_configs(py: Python<'_>, databricks_token: &str, root_dir: Option<PathBuf>) -> PyResult<()> {
    write_ccr_config(py, databricks_token, root_dir, None, DEFAULT_MODEL, None).map(|_| ())
}
