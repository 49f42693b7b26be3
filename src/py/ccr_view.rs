//! `_native._ccr_view`: CCR's `config.json` as rotation reads it (core: `crate::ccr::CcrView`), for `doctor`,
//! so that both read one file one way (issue 13, item 5).

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::ccr::{CcrFile, CcrView, DEFAULT_CCR_HOST, DEFAULT_CCR_PORT};
use crate::py::broker::PyTokenBroker;

/// What rotation sees in ``config.json`` (the same trust-checked read): a dict with ``state`` (``"missing"``,
/// ``"invalid"`` or ``"ok"``), ``reason`` (why invalid), ``host`` and ``port`` (where CCR listens, the defaults
/// unless a valid config says otherwise), ``providers`` (how many ``databricks`` providers) and ``holds``
/// (whether every one holds ``broker``'s cached token; None without a broker or a cached token). With ``key``,
/// and only when ``holds`` is False, ``api_key`` is the first of their keys that is not the broker's (None: not
/// a string): the one secret a caller may need (to ask the workspace about it), never otherwise returned.
#[pyfunction(name = "_ccr_view")]
#[pyo3(signature = (path, broker = None, *, key = false))]
pub fn ccr_view<'py>(
    py: Python<'py>,
    path: PathBuf,
    broker: Option<&Bound<'py, PyTokenBroker>>,
    key: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let inner = broker.map(|b| b.get().inner.clone());
    let (found, current) = py.detach(|| -> crate::error::Result<_> {
        let found = CcrView::inspect(&path)?;
        let current = match (&found, inner) {
            (CcrFile::View(_), Some(b)) => b.current()?.map(|l| l.token.expose().to_string()),
            _ => None,
        };
        Ok((found, current))
    })?;
    let d = PyDict::new(py);
    let (state, reason, view) = match &found {
        CcrFile::Missing => ("missing", None, None),
        CcrFile::NotAConfig(why) => ("invalid", Some(why.as_str()), None),
        CcrFile::View(v) => ("ok", None, Some(v)),
    };
    d.set_item("state", state)?;
    d.set_item("reason", reason)?;
    d.set_item("host", view.map_or(DEFAULT_CCR_HOST, |v| v.host.as_str()))?;
    d.set_item("port", view.map_or(DEFAULT_CCR_PORT, |v| v.port))?;
    let keys = view.map(CcrView::provider_keys).unwrap_or_default();
    d.set_item("providers", keys.len())?;
    let holds = view.zip(current.as_deref()).map(|(v, token)| v.holds(token));
    d.set_item("holds", holds)?;
    if key && holds == Some(false) {
        let other = keys.iter().find(|k| **k != current.as_deref()).copied().flatten();
        d.set_item("api_key", other)?;
    }
    Ok(d)
}
