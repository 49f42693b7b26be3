//! `devbox_native.start_gateway` and `Gateway` (core: `crate::gateway`). The gateway runs on the shared runtime
//! in this process; `stop()` (or leaving the `with` block) drains it.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::broker::{self, Kind};
use crate::config::{Config, ProcessEnv};
use crate::error::Error;
use crate::gateway::{self, Gateway};
use crate::py::config::PyConfig;
use crate::py::functions::{chosen, py_str, seconds_arg, wait};

/// A running credential gateway.
#[pyclass(name = "Gateway", module = "devbox_native", frozen)]
pub struct PyGateway {
    inner: Arc<Gateway>,
}

#[pymethods]
impl PyGateway {
    /// `http://127.0.0.1:<port>`.
    #[getter]
    fn url(&self) -> &str {
        &self.inner.url
    }

    /// The port on 127.0.0.1.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.port
    }

    /// The kind of token forwarded: `"oauth"` or `"pat"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    /// The file holding the gateway key.
    #[getter]
    fn key_path(&self) -> PathBuf {
        self.inner.folder.join(gateway::files::KEY_FILE)
    }

    /// Stop accepting, let running requests finish (up to 30 s), then return. Idempotent.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        wait(py, async move {
            inner.stop().await;
            Ok(())
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (_exc_type = None, _exc = None, _tb = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyType>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Gateway(url={}, kind={})",
            py_str(&self.inner.url),
            py_str(self.inner.kind.as_str())
        )
    }
}

/// Start the loopback credential gateway in this process (on the shared runtime) and return at once.
///
/// It listens on ``127.0.0.1:<port>`` only and forwards ``/serving-endpoints/...`` and ``/ai-gateway/...``
/// (path and query unchanged) to the workspace, replacing ``Authorization``, ``x-api-key`` and
/// ``x-goog-api-key`` with ``Authorization: Bearer <fresh token>`` from a `TokenBroker` of ``kind``. Callers
/// present the gateway key (``<cache dir>/gateway.key``, 0600, created on first start) in one of those headers;
/// without it they get 401, and other paths get 404, neither forwarded. Bodies stream both ways. A 401/403 from
/// the workspace on a request whose body was at most 8 MiB is retried once with a new token. The workspace
/// unreachable gives 502 with a JSON body naming the cause. ``GET /health`` needs no key. The running gateway
/// is recorded in ``<cache dir>/gateway.json`` (pid, port, url, started_at).
///
/// Args:
///     port: Port on 127.0.0.1; 0 picks a free one.
///     config: Use this configuration instead of resolving one from the environment.
///     kind: Which tokens to forward (see `TokenBroker`).
///     cache_path: The broker's cache file; the gateway's files go in its folder.
///     drain_seconds: How long ``stop()`` lets running requests finish (default 30).
///
/// Raises:
///     ConfigError: credentials cannot be configured, or another gateway runs on the same cache (the message
///         names its pid and url).
///     OSError: the port cannot be bound, or a file cannot be written.
///     ValueError: a bad port or kind.
#[pyfunction]
#[pyo3(signature = (port = 0, *, config = None, kind = "auto", cache_path = None, drain_seconds = None))]
pub fn start_gateway(
    py: Python<'_>,
    port: i64,
    config: Option<&Bound<'_, PyConfig>>,
    kind: &str,
    cache_path: Option<PathBuf>,
    drain_seconds: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyGateway> {
    let port = u16::try_from(port).map_err(|_| Error::invalid("port", format!("must be 0 to 65535, got {port}")))?;
    let drain = match drain_seconds {
        None => gateway::DRAIN,
        Some(d) => std::time::Duration::from_secs(
            u64::try_from(seconds_arg(d, "drain_seconds")?)
                .map_err(|_| Error::invalid("drain_seconds", "must not be negative"))?,
        ),
    };
    let kind = Kind::parse("kind", kind)?;
    let cache_path = match cache_path {
        Some(p) => std::path::absolute(&p).map_err(|e| Error::io("resolve", &p, e))?,
        None => broker::default_cache_path(&ProcessEnv)?,
    };
    let config = Config::given_or_default(chosen(config), &ProcessEnv)?;
    let opts = gateway::Options {
        port,
        config,
        kind,
        cache_path,
        drain,
    };
    let gw = wait(py, Gateway::start(opts))?;
    Ok(PyGateway { inner: Arc::new(gw) })
}

/// The gateway key of the cache folder of ``cache_path`` (created, 0600, when missing).
#[pyfunction]
#[pyo3(signature = (cache_path = None))]
pub fn gateway_key(cache_path: Option<PathBuf>) -> PyResult<String> {
    let cache_path = match cache_path {
        Some(p) => p,
        None => broker::default_cache_path(&ProcessEnv)?,
    };
    let folder = gateway::files::folder(&cache_path);
    crate::fsutil::ensure_private_dir(&folder)?;
    Ok(gateway::files::ensure_key(&folder)?)
}

/// The gateway running on this cache, from ``gateway.json``: ``(pid, port, url, started_at)``, or None when
/// none runs (a stale file of a dead gateway reads as none).
#[pyfunction]
#[pyo3(signature = (cache_path = None))]
pub fn running_gateway(cache_path: Option<PathBuf>) -> PyResult<Option<(u32, u16, String, f64)>> {
    let cache_path = match cache_path {
        Some(p) => p,
        None => broker::default_cache_path(&ProcessEnv)?,
    };
    Ok(gateway::files::running(&gateway::files::folder(&cache_path)).map(|s| (s.pid, s.port, s.url, s.started_at)))
}
