//! Awaitables for asyncio, backed by our own fork-aware tokio runtime (see `runtime`).
//!
//! The coroutine's work runs as a tokio task; its result is handed back to the event loop with
//! `loop.call_soon_threadsafe`. Cancelling the asyncio future aborts the tokio task (an in-flight HTTP
//! request is dropped, closing its connection).

use std::future::Future;

use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use crate::error::Result;
use crate::runtime;

/// Run `fut` on the shared runtime and return an asyncio future for its result. `convert` turns the value
/// into a Python object (with the GIL held).
pub fn spawn<'py, T, F, C>(py: Python<'py>, fut: F, convert: C) -> PyResult<Bound<'py, PyAny>>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let py_future = event_loop.call_method0("create_future")?;
    let resolve = py.import("devbox_native._aio")?.getattr("_resolve")?.unbind();
    let shared = runtime::shared()?;
    let loop_ref = event_loop.unbind();
    let fut_ref = py_future.clone().unbind();
    let task = shared.runtime.spawn(async move {
        let result = fut.await;
        Python::attach(|py| {
            let (ok, value) = match result.map_err(PyErr::from).and_then(|v| convert(py, v)) {
                Ok(v) => (true, v),
                Err(e) => (false, e.into_value(py).into_any()),
            };
            // The loop may be closed by now; then nobody is waiting for the answer.
            let _ = loop_ref.call_method1(py, "call_soon_threadsafe", (resolve, fut_ref, ok, value));
        });
    });
    let abort = task.abort_handle();
    let on_done = PyCFunction::new_closure(
        py,
        None,
        None,
        move |_: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| {
            // Harmless when the task already finished; stops the request when the future was cancelled.
            abort.abort();
        },
    )?;
    py_future.call_method1("add_done_callback", (on_done,))?;
    Ok(py_future)
}

/// A coroutine that, once it starts, calls `make` and awaits the asyncio future it returns
/// (`_aio._await_call`): the future is created by the loop that awaits it, not by the caller of the method.
pub fn deferred<'py, M>(py: Python<'py>, make: M) -> PyResult<Bound<'py, PyAny>>
where
    M: for<'a> Fn(Python<'a>) -> PyResult<Bound<'a, PyAny>> + Send + Sync + 'static,
{
    let start = PyCFunction::new_closure(
        py,
        None,
        None,
        move |args: &Bound<'_, PyTuple>, _: Option<&Bound<'_, PyDict>>| -> PyResult<Py<PyAny>> {
            make(args.py()).map(Bound::unbind)
        },
    )?;
    py.import("devbox_native._aio")?.getattr("_await_call")?.call1((start,))
}
