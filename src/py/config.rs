//! `devbox_native.Config`: resolved configuration, passed as `config=` to every network call.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::auth::default;
use crate::config::{ATTRIBUTES, Config, ProcessEnv};

/// A resolved configuration: arguments, then environment, then host normalisation, validation and the
/// credentials chain, in the SDK's order. Resolution happens in the constructor, so a bad configuration
/// fails here (with the SDK's messages) rather than at the first call.
#[pyclass(name = "Config", module = "devbox_native", frozen)]
pub struct PyConfig {
    pub(crate) inner: Config,
}

fn timeout_arg(obj: Option<&Bound<'_, PyAny>>, name: &str, default: Duration) -> PyResult<Duration> {
    let Some(obj) = obj else { return Ok(default) };
    if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>()) {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{name}: expected a number of seconds"
        )));
    }
    let secs: f64 = obj.extract()?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(PyValueError::new_err(format!(
            "{name}: must be more than 0 and at most 86400 seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (
        *, host = None, token = None, client_id = None, client_secret = None, username = None, password = None,
        profile = None, config_file = None, auth_type = None, account_id = None, workspace_id = None,
        http_timeout_seconds = None, retry_timeout_seconds = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        host: Option<String>,
        token: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        username: Option<String>,
        password: Option<String>,
        profile: Option<String>,
        config_file: Option<String>,
        auth_type: Option<String>,
        account_id: Option<String>,
        workspace_id: Option<String>,
        http_timeout_seconds: Option<&Bound<'_, PyAny>>,
        retry_timeout_seconds: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let args = [
            ("host", host),
            ("token", token),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("username", username),
            ("password", password),
            ("profile", profile),
            ("config_file", config_file),
            ("auth_type", auth_type),
            ("account_id", account_id),
            ("workspace_id", workspace_id),
        ];
        let mut inner = Config::resolve(&args, &ProcessEnv)?;
        inner.http_timeout = timeout_arg(http_timeout_seconds, "http_timeout_seconds", inner.http_timeout)?;
        inner.retry_timeout = timeout_arg(retry_timeout_seconds, "retry_timeout_seconds", inner.retry_timeout)?;
        let credentials = default::resolve(&inner)?;
        inner.set("auth_type", credentials.auth_type());
        Ok(PyConfig { inner })
    }

    /// The normalised workspace URL.
    #[getter]
    fn host(&self) -> Option<&str> {
        self.inner.host()
    }

    /// The credentials strategy chosen (`pat`, `oauth-m2m`, ...).
    #[getter]
    fn auth_type(&self) -> Option<&str> {
        self.inner.get("auth_type")
    }

    /// Per-attempt HTTP timeout, seconds.
    #[getter]
    fn http_timeout_seconds(&self) -> f64 {
        self.inner.http_timeout.as_secs_f64()
    }

    /// Total retry budget per call, seconds.
    #[getter]
    fn retry_timeout_seconds(&self) -> f64 {
        self.inner.retry_timeout.as_secs_f64()
    }

    /// Any resolved attribute by name; sensitive ones are masked as `***`.
    fn get(&self, name: &str) -> PyResult<Option<String>> {
        let attr = ATTRIBUTES
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| PyValueError::new_err(format!("name: unknown attribute {name:?}")))?;
        Ok(self.inner.get(name).map(|v| {
            if attr.sensitive {
                "***".to_string()
            } else {
                v.to_string()
            }
        }))
    }

    /// The SDK's debug string: `Config: host=..., token=***. Env: ...`.
    fn debug_string(&self) -> String {
        self.inner.debug_string()
    }

    fn __repr__(&self) -> String {
        format!("<Config {}>", self.inner.debug_string())
    }
}
