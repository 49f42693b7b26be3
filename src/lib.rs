//! devbox_native: Databricks credentials for coding assistants, with a Rust core and a Python face.
//!
//! The core (`config`, `auth`, `api`, `workspace`, `ccr`, `fsutil`, `databrickscfg`, `broker`, `hygiene`, `rotation`, `dropin`,
//! `agents`)
//! never touches pyo3; the binding
//! lives in `py` and this file only registers the module.

pub mod agents;
pub mod api;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod ccr;
pub mod config;
pub mod databrickscfg;
pub mod dropin;
pub mod error;
pub mod fsutil;
pub mod gateway;
pub mod hygiene;
pub mod rotation;
pub mod runtime;
pub mod secret;
pub mod small_file;
pub mod workspace;

mod py;

#[pyo3::pymodule(gil_used = false)]
mod _native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::py::agents::{agent_config_file, configure_agent, known_agents, unconfigure_agent};
    #[pymodule_export]
    use crate::py::broker::PyTokenBroker;
    #[pymodule_export]
    use crate::py::ccr_view::ccr_view;
    #[pymodule_export]
    use crate::py::ccr3::{get_ccr3_config, install_ccr3_provider};
    #[pymodule_export]
    use crate::py::config::PyConfig;
    #[pymodule_export]
    use crate::py::functions::{
        PyCreatedToken, create_token, create_token_async, delete_token, delete_token_async, ensure_https_url,
        generate_spn_token, generate_spn_token_async, get_databricks_transformers_js, list_tokens, list_tokens_async,
        make_config, materialize_configs, setup_databricks_cfg, write_ccr_config,
    };
    #[pymodule_export]
    use crate::py::gateway::{PyGateway, gateway_key, running_gateway, start_gateway};
    #[pymodule_export]
    use crate::py::hygiene::{cleanup_tokens, cleanup_tokens_async};
    #[pymodule_export]
    use crate::py::logging::refresh_logging;
    #[pymodule_export]
    use crate::py::rotation::{PyRotation, start_rotation};
    #[pymodule_export]
    use crate::py::store::{check_path, update_ccr_token, update_databricks_cfg};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add(
            "__version__",
            env!("CARGO_PKG_VERSION").replace("-alpha", "a").replace("-beta", "b"),
        )?;
        let py = m.py();
        let info = py.version_info();
        crate::api::http::set_python_version(&format!("{}.{}.{}", info.major, info.minor, info.patch));
        Ok(())
    }
}
