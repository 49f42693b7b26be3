//! `devbox_native.TokenBroker` (core: `crate::broker`). `get()` answers a fresh cache hit without starting the
//! async runtime or touching the network, so a cold `devbox-native token get` stays cheap.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::broker::{self, Broker, Lease, Pending};
use crate::config::{Config, ProcessEnv};
use crate::error::Error;
use crate::py::config::PyConfig;
use crate::py::functions::{chosen, py_str, seconds_arg, wait};
use crate::py::{asyncio, logging};
use crate::secret::redact;

/// A token broker: a cached token shared by processes, refreshed before expiry, replaced tokens revoked.
#[pyclass(name = "TokenBroker", module = "devbox_native", frozen)]
pub struct PyTokenBroker {
    pub(crate) inner: Arc<Broker>,
}

fn token_of(py: Python<'_>, lease: &Lease) -> PyResult<Py<PyAny>> {
    Ok(lease.token.expose().into_pyobject(py)?.into_any().unbind())
}

fn pending_to_py<'py>(py: Python<'py>, pending: &[Pending]) -> PyResult<Vec<Bound<'py, PyDict>>> {
    pending
        .iter()
        .map(|p| {
            let d = PyDict::new(py);
            d.set_item("token_id", &p.token_id)?;
            d.set_item("expires_at", p.expires_at)?;
            d.set_item("attempts", p.attempts)?;
            d.set_item("next_attempt_at", p.next_attempt_at)?;
            d.set_item("last_error", p.last_error.as_deref().map(|e| redact(e, &[])))?;
            d.set_item("replaced_at", p.replaced_at)?;
            d.set_item("held", p.held)?;
            Ok(d)
        })
        .collect()
}

impl PyTokenBroker {
    /// The cached lease, read with the GIL released (a cache file on a stuck mount must not freeze Python).
    fn current(&self, py: Python<'_>) -> Result<Option<Lease>, Error> {
        py.detach(|| self.inner.current())
    }
}

#[pymethods]
impl PyTokenBroker {
    #[new]
    #[pyo3(signature = (
        lifetime_seconds = None, refresh_margin = None, cache_path = None,
        *, config = None, comment_prefix = "devbox-native-", auto_cleanup = false, revoke_grace = None, kind = "auto"
    ))]
    #[allow(clippy::too_many_arguments)] // the Python constructor's keyword arguments, one each
    pub(crate) fn new(
        lifetime_seconds: Option<&Bound<'_, PyAny>>,
        refresh_margin: Option<&Bound<'_, PyAny>>,
        cache_path: Option<PathBuf>,
        config: Option<&Bound<'_, PyConfig>>,
        comment_prefix: &str,
        auto_cleanup: bool,
        revoke_grace: Option<&Bound<'_, PyAny>>,
        kind: &str,
    ) -> PyResult<Self> {
        let kind = broker::Kind::parse("kind", kind)?;
        let lifetime = lifetime_seconds.map_or(Ok(broker::DEFAULT_LIFETIME), |l| seconds_arg(l, "lifetime_seconds"))?;
        let revoke_grace = revoke_grace.map_or(Ok(broker::DEFAULT_REVOKE_GRACE), |g| seconds_arg(g, "revoke_grace"))?;
        let cache_path = match cache_path {
            Some(p) => std::path::absolute(&p).map_err(|e| Error::io("resolve", &p, e))?,
            None => broker::default_cache_path(&ProcessEnv)?,
        };
        let config = Config::given_or_default(chosen(config), &ProcessEnv)?;
        let margin = match refresh_margin {
            Some(m) => seconds_arg(m, "refresh_margin")?,
            None => kind.default_margin(broker::yields_oauth(&config)?),
        };
        let opts = broker::Options {
            lifetime_seconds: lifetime,
            refresh_margin: margin,
            cache_path,
            comment_prefix: comment_prefix.to_string(),
            auto_cleanup,
            revoke_grace,
            kind,
        };
        Ok(PyTokenBroker {
            inner: Arc::new(Broker::new(config, opts)?),
        })
    }

    /// A token with more than `refresh_margin` seconds left (cached, or minted once across processes).
    fn get(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        // Reading the cache is file-system work: never with the GIL held.
        if let Some(lease) = py.detach(|| self.inner.fast_path())? {
            return token_of(py, &lease);
        }
        let inner = self.inner.clone();
        let lease = wait(py, async move { inner.get().await })?;
        token_of(py, &lease)
    }

    /// Async version of `get`: a coroutine.
    fn get_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        asyncio::deferred(py, move |py| {
            let inner = inner.clone();
            logging::ensure(py);
            asyncio::spawn(py, async move { inner.get().await }, |py, l| token_of(py, &l))
        })
    }

    /// Mint a new token now; the one it replaces is revoked after the grace period.
    #[pyo3(signature = (replacing = None))]
    fn force_refresh(&self, py: Python<'_>, replacing: Option<String>) -> PyResult<Py<PyAny>> {
        let inner = self.inner.clone();
        let lease = wait(py, async move { inner.force_refresh(replacing.as_deref()).await })?;
        token_of(py, &lease)
    }

    /// Async version of `force_refresh`: a coroutine.
    #[pyo3(signature = (replacing = None))]
    fn force_refresh_async<'py>(&self, py: Python<'py>, replacing: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        let inner = self.inner.clone();
        asyncio::deferred(py, move |py| {
            let (inner, replacing) = (inner.clone(), replacing.clone());
            logging::ensure(py);
            asyncio::spawn(
                py,
                async move { inner.force_refresh(replacing.as_deref()).await },
                |py, l| token_of(py, &l),
            )
        })
    }

    /// Revoke the replaced tokens that are due (all with `force`); returns the revoked ids.
    #[pyo3(signature = (force = false))]
    fn revoke_pending(&self, py: Python<'_>, force: bool) -> PyResult<Vec<String>> {
        let inner = self.inner.clone();
        let report = wait(py, async move { inner.revoke_pending(force).await })?;
        Ok(report.revoked)
    }

    /// Whether `token` is the cached token of this identity (compared in Rust; the cached value is never exposed
    /// by a property).
    fn is_current(&self, py: Python<'_>, token: &str) -> PyResult<bool> {
        Ok(self.current(py)?.is_some_and(|l| l.token.expose() == token))
    }

    /// The cached token's id, or None.
    #[getter]
    fn token_id(&self, py: Python<'_>) -> PyResult<Option<String>> {
        Ok(self.current(py)?.map(|l| l.token_id))
    }

    /// When the cached token expires (epoch seconds), or None.
    #[getter]
    fn expires_at(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self.current(py)?.map(|l| l.expires_at))
    }

    /// When the cached token was minted (epoch seconds), or None.
    #[getter]
    fn created_at(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        Ok(self.current(py)?.map(|l| l.created_at))
    }

    /// Replaced tokens still to revoke.
    #[getter]
    fn pending_revocations<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        pending_to_py(py, &py.detach(|| self.inner.pending())?)
    }

    /// The cache file.
    #[getter]
    fn cache_path(&self) -> PathBuf {
        self.inner.options().cache_path.clone()
    }

    /// Lifetime of minted tokens, seconds.
    #[getter]
    fn lifetime_seconds(&self) -> i64 {
        self.inner.options().lifetime_seconds
    }

    /// A token with less than this left is replaced, seconds.
    #[getter]
    fn refresh_margin(&self) -> i64 {
        self.inner.options().refresh_margin
    }

    /// A replaced token is revoked no sooner than this many seconds after it was replaced.
    #[getter]
    fn revoke_grace(&self) -> i64 {
        self.inner.options().revoke_grace
    }

    /// The workspace URL.
    #[getter]
    fn host(&self) -> &str {
        self.inner.host()
    }

    /// Who the tokens are for, without secrets (`oauth-m2m:<client id>`, `pat:<sha256 prefix>`).
    #[getter]
    fn identity(&self) -> &str {
        self.inner.identity()
    }

    /// The kind of token handed out: `"oauth"` or `"pat"` (`"auto"` resolved).
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind().as_str()
    }

    /// The credentials strategy the tokens come from (`"oauth-m2m"`, `"pat"`, ...).
    #[getter]
    fn strategy(&self) -> &'static str {
        self.inner.strategy()
    }

    fn __repr__(&self) -> String {
        let o = self.inner.options();
        format!(
            "TokenBroker(host={}, kind={}, identity={}, cache_path={}, lifetime_seconds={}, refresh_margin={})",
            py_str(self.inner.host()),
            py_str(self.inner.kind().as_str()),
            py_str(self.inner.identity()),
            py_str(&o.cache_path.display().to_string()),
            o.lifetime_seconds,
            o.refresh_margin
        )
    }
}
