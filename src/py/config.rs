//! `devbox_native.Config`: resolved configuration, passed as `config=` to every network call.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

use crate::auth::default;
use crate::config::{ATTRIBUTES, Config, ProcessEnv};

/// A resolved configuration: arguments, then environment, then `~/.databrickscfg`, then host normalisation,
/// validation and the credentials chain, in the SDK's order. Resolution happens in the constructor, so a bad configuration
/// fails here (with the SDK's messages) rather than at the first call.
#[pyclass(name = "Config", module = "devbox_native", frozen)]
pub struct PyConfig {
    pub(crate) inner: Config,
}

/// A number of seconds as the attribute's text (the core parses and checks it); `bool` and non-numbers are
/// `TypeError`.
fn seconds_text(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<String>> {
    let Some(obj) = obj else { return Ok(None) };
    if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>()) {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{name}: expected a number of seconds"
        )));
    }
    Ok(Some(obj.str()?.to_string()))
}

#[pymethods]
impl PyConfig {
    #[new]
    #[pyo3(signature = (
        *, host = None, account_id = None, token = None, token_audience = None, oidc_token_env = None,
        oidc_token_filepath = None, username = None, password = None, client_id = None, client_secret = None,
        profile = None, config_file = None, databricks_cli_path = None, auth_type = None,
        metadata_service_url = None, workspace_id = None, http_timeout_seconds = None, retry_timeout_seconds = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: Option<String>,
        account_id: Option<String>,
        token: Option<String>,
        token_audience: Option<String>,
        oidc_token_env: Option<String>,
        oidc_token_filepath: Option<String>,
        username: Option<String>,
        password: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
        profile: Option<String>,
        config_file: Option<String>,
        databricks_cli_path: Option<String>,
        auth_type: Option<String>,
        metadata_service_url: Option<String>,
        workspace_id: Option<String>,
        http_timeout_seconds: Option<&Bound<'_, PyAny>>,
        retry_timeout_seconds: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let args = [
            ("host", host),
            ("account_id", account_id),
            ("token", token),
            ("token_audience", token_audience),
            ("oidc_token_env", oidc_token_env),
            ("oidc_token_filepath", oidc_token_filepath),
            ("username", username),
            ("password", password),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("profile", profile),
            ("config_file", config_file),
            ("databricks_cli_path", databricks_cli_path),
            ("auth_type", auth_type),
            ("metadata_service_url", metadata_service_url),
            ("workspace_id", workspace_id),
            (
                "http_timeout_seconds",
                seconds_text(http_timeout_seconds, "http_timeout_seconds")?,
            ),
            (
                "retry_timeout_seconds",
                seconds_text(retry_timeout_seconds, "retry_timeout_seconds")?,
            ),
        ];
        // Reading the config file and choosing the strategy touch only local files: release the GIL anyway.
        let inner = py.detach(|| -> crate::error::Result<Config> {
            let mut inner = Config::resolve(&args, &ProcessEnv)?;
            let credentials = default::resolve(&inner)?;
            inner.set("auth_type", credentials.auth_type());
            Ok(inner)
        })?;
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
