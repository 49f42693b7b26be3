//! `devbox_native.start_rotation` and the `Rotation` handle (core: `crate::rotation`). This file converts
//! arguments, wraps the Python callables into core callbacks (called on the rotation thread with the GIL; a
//! coroutine runs on the event loop given, and stop() cancels the wait) and maps errors.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::error::{Cause, Error, Result};
use crate::py::broker::PyTokenBroker;
use crate::py::config::PyConfig;
use crate::py::functions::{py_str, root_or_home};
use crate::py::{asyncio, logging};
use crate::rotation::ccr::{Callback, CcrSteps, ErrorCallback, Hook, PortWait};
use crate::rotation::{Control, Event, Failure, Policy, Rotation, Rotator, SystemClock};

/// A token rotation running on a background thread (see `start_rotation`).
#[pyclass(name = "Rotation", module = "devbox_native", frozen)]
pub struct PyRotation {
    inner: Arc<Rotation>,
    broker: Py<PyTokenBroker>,
    config_path: PathBuf,
    command: Option<Vec<String>>,
    include_token: bool,
}

/// Rotations still to stop when the interpreter exits (their threads call into Python).
static LIVE: Mutex<Vec<Arc<Rotation>>> = Mutex::new(Vec::new());
static AT_EXIT: AtomicBool = AtomicBool::new(false);

fn live() -> std::sync::MutexGuard<'static, Vec<Arc<Rotation>>> {
    LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stop every rotation of this process (registered with `atexit`).
#[pyfunction]
fn stop_rotations_at_exit(py: Python<'_>) {
    let all = std::mem::take(&mut *live());
    py.detach(|| all.iter().for_each(|r| r.stop()));
}

fn track(py: Python<'_>, rotation: &Arc<Rotation>) -> PyResult<()> {
    {
        let mut all = live();
        all.retain(|r| r.is_running());
        all.push(rotation.clone());
    }
    if !AT_EXIT.swap(true, Ordering::SeqCst) {
        let stop_all = wrap_pyfunction!(stop_rotations_at_exit, py)?;
        py.import("atexit")?.call_method1("register", (stop_all,))?;
    }
    Ok(())
}

fn event_dict<'py>(py: Python<'py>, e: &Event, include_token: bool) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("token_id", &e.lease.token_id)?;
    d.set_item("expires_at", e.lease.expires_at)?;
    d.set_item("replaced_token_id", e.replaced_token_id.as_deref())?;
    d.set_item("config_path", &e.config_path)?;
    d.set_item("reason", e.reason.name())?;
    d.set_item("rotation", e.rotation)?;
    if include_token {
        d.set_item("token", e.lease.token.expose())?;
    }
    Ok(d)
}

fn exception(py: Python<'_>, error: &Error) -> Py<PyAny> {
    PyErr::from(error.clone()).into_value(py).into_any()
}

fn failure_dict<'py>(py: Python<'py>, f: &Failure) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("stage", f.stage.name())?;
    d.set_item("error", exception(py, &f.error))?;
    d.set_item("attempt", f.attempt)?;
    d.set_item("next_attempt_at", f.next_attempt_at)?;
    Ok(d)
}

/// Why a callback failed: its text, and the exception it raised (when there is one).
struct Raised {
    text: String,
    exception: Option<Py<PyAny>>,
}

impl From<&str> for Raised {
    fn from(text: &str) -> Self {
        Raised {
            text: text.to_string(),
            exception: None,
        }
    }
}

impl From<PyErr> for Raised {
    fn from(e: PyErr) -> Self {
        Python::attach(|py| Raised {
            text: e.to_string(),
            exception: Some(e.into_value(py).into_any()),
        })
    }
}

/// Call `callable(arg(py))` with the GIL. A coroutine it returns runs on `event_loop` and is waited for with
/// the GIL released (stop() cancels it); without a loop, a coroutine is an error (it could never run).
fn call_python(
    callable: &Py<PyAny>,
    event_loop: Option<&Py<PyAny>>,
    control: &Control,
    arg: impl for<'py> FnOnce(Python<'py>) -> PyResult<Bound<'py, PyDict>>,
) -> std::result::Result<(), Raised> {
    let started = Python::try_attach(|py| -> PyResult<Option<Py<PyAny>>> {
        let result = callable.bind(py).call1((arg(py)?,))?;
        if !py
            .import("inspect")?
            .call_method1("iscoroutine", (&result,))?
            .is_truthy()?
        {
            return Ok(None);
        }
        let Some(event_loop) = event_loop else {
            result.call_method0("close")?;
            return Err(PyTypeError::new_err(
                "it returned a coroutine: pass coroutine functions to start_rotation_async",
            ));
        };
        let asyncio = py.import("asyncio")?;
        Ok(Some(
            asyncio
                .call_method1("run_coroutine_threadsafe", (result, event_loop))?
                .unbind(),
        ))
    })
    .ok_or("the interpreter is shutting down")??;
    let Some(future) = started else {
        return Ok(());
    };
    loop {
        let finished = Python::try_attach(|py| -> PyResult<bool> {
            let f = future.bind(py);
            if f.call_method0("done")?.is_truthy()? {
                f.call_method0("result")?;
                return Ok(true);
            }
            let waiting = py.import("concurrent.futures")?;
            waiting.call_method1("wait", (vec![f.clone()], 0.1))?;
            Ok(false)
        })
        .ok_or("the interpreter is shutting down")??;
        if finished {
            return Ok(());
        }
        if control.stopped() {
            Python::try_attach(|py| future.bind(py).call_method0("cancel").map(|_| ()));
            return Err("cancelled: the rotation stopped".into());
        }
    }
}

fn on_rotate_callback(callable: Py<PyAny>, event_loop: Option<Py<PyAny>>, include_token: bool) -> Callback {
    Box::new(move |event, control| {
        call_python(&callable, event_loop.as_ref(), control, |py| {
            event_dict(py, event, include_token)
        })
        .map_err(|e| {
            let message = format!("on_rotate raised {}", e.text);
            match e.exception {
                Some(raised) => Error::HookRaised {
                    message,
                    cause: Cause(Arc::new(raised)),
                },
                None => Error::Hook(message),
            }
        })
    })
}

fn on_error_callback(callable: Py<PyAny>, event_loop: Option<Py<PyAny>>) -> ErrorCallback {
    Box::new(move |failure, control| {
        if let Err(e) = call_python(&callable, event_loop.as_ref(), control, |py| failure_dict(py, failure)) {
            log::warn!("on_error raised {}", e.text);
        }
    })
}

fn callable_arg(obj: Option<Bound<'_, PyAny>>, name: &str) -> PyResult<Option<Py<PyAny>>> {
    match obj {
        Some(o) if !o.is_callable() => Err(PyTypeError::new_err(format!(
            "{name}: expected a callable, got {}",
            o.get_type().name()?
        ))),
        o => Ok(o.map(Bound::unbind)),
    }
}

fn command_arg(command: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<String>>> {
    let Some(command) = command else {
        return Ok(None);
    };
    let wrong = || PyTypeError::new_err("command: expected a list of arguments (str or os.PathLike), not a string");
    if command.is_instance_of::<PyString>() || command.extract::<&[u8]>().is_ok() {
        return Err(wrong());
    }
    let fspath = command.py().import("os")?.getattr("fspath")?;
    command
        .try_iter()
        .map_err(|_| wrong())?
        .map(|item| fspath.call1((item?,))?.extract::<String>().map_err(|_| wrong()))
        .collect::<PyResult<Vec<String>>>()
        .map(Some)
}

fn env_arg(env: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let wrong = || PyTypeError::new_err("env: expected a mapping of str to str");
    let items = env.call_method0("items").map_err(|_| wrong())?;
    let mut vars = Vec::new();
    for item in items.try_iter().map_err(|_| wrong())? {
        let (key, value): (String, String) = item?.extract().map_err(|_| wrong())?;
        if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
            return Err(PyValueError::new_err(format!(
                "env: {key:?} is not a usable variable name, or its value holds a NUL"
            )));
        }
        vars.push((key, value));
    }
    Ok(vars)
}

fn port_arg(port: Option<i64>) -> PyResult<PortWait> {
    match port {
        None => Ok(PortWait::FromConfig),
        Some(0) => Ok(PortWait::Off),
        Some(p) => u16::try_from(p)
            .map(PortWait::Port)
            .map_err(|_| PyValueError::new_err(format!("port: must be 0 to 65535, got {p}"))),
    }
}

pub(crate) fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err(format!("{name}: must be a positive number of seconds, got {value}")))
}

/// Keep ``<root_dir>/.claude-code-router/config.json`` on a fresh broker token, on a background thread.
///
/// When the broker's token enters its refresh margin (or is missing, or ``rotate_now()`` is called), a
/// rotation mints a new token through the broker, with the replaced token's revocation held back; puts it into
/// config.json with :func:`update_ccr_token` (every other key, the user's ``PORT`` included, stays); runs
/// ``command`` (e.g. ``["ccr", "restart"]``) and waits until CCR's port answers again; calls ``on_rotate``; and
/// only then releases the replaced token, which is revoked once the broker's ``revoke_grace`` has passed since
/// it was replaced. When config.json holds a token other than the broker's current one (at start, or because
/// another process refreshed the shared cache), the current token is installed the same way without minting
/// (reason ``sync``); when it already holds it, nothing happens at start, unless the cache records that a
/// rotation (killed meanwhile) wrote it but its command and port wait never succeeded: then they are run again.
///
/// One rotation per broker cache: a rotation holds the cache's rotation lock (``<cache>.rotation.lock``, with
/// its pid) for its life, and a second one on the same cache, in any process, is refused.
///
/// A failed step is retried from that step (a failing ``on_rotate`` does not restart CCR again) after
/// ``retry_delay`` seconds, doubling up to ``max_retry_delay``. Every failure is logged at WARNING (logger
/// ``devbox_native``), passed to ``on_error`` and kept in ``last_error``/``last_error_stage``/``failures``
/// with ``next_attempt_at``, until an attempt succeeds. The rotation runs until :meth:`Rotation.stop` (or the
/// interpreter exits), even if the returned object is dropped. It is not inherited by a ``fork()``ed child.
///
/// Args:
///     root_dir: The folder holding ``.claude-code-router`` (default: the home folder). A missing config.json
///         is written in full (the broker's host, the default model).
///     on_rotate: Called on the rotation thread with a :class:`RotationEvent` after CCR runs with the new token
///         and before the old one is revoked. If it raises, the step fails (``HookError``) and is retried.
///     command: The hook, as an argument list (no shell), run with ``HOME=root_dir`` (where CCR looks for its
///         config), stdin closed and its output captured (the last line, secrets masked, appears in the error
///         when it fails), in a process group of its own. It must exit 0 within ``restart_timeout`` seconds,
///         else its whole process group is killed. None runs nothing.
///
/// Keyword Args:
///     broker: The :class:`TokenBroker` to use (default: ``TokenBroker(lifetime_seconds, refresh_margin,
///         config=config)`` with the default cache). Do not pass the other three with it.
///     lifetime_seconds: Lifetime of minted tokens (default 3600).
///     refresh_margin: Rotate when less than this is left of the token (default 600).
///     config: Credentials to mint with (default: resolved from the environment).
///     port: After ``command``, wait until this port answers (``HOST`` from config.json); None reads config.json's
///         ``PORT`` (default 3456) after each write; 0 does not wait. Nothing is waited for without a command.
///     restart_timeout: Seconds the command may run, and then seconds the port may take to answer.
///     retry_delay: First wait after a failure, seconds.
///     max_retry_delay: Longest wait between retries, seconds.
///     on_error: Called on the rotation thread with a :class:`RotationFailure` for each failure; its own
///         exceptions are logged and ignored.
///     include_token: Put the token itself into the events (key ``token``). Off by default: events are safe to
///         log.
///     event_loop: An asyncio loop to run coroutine callbacks on (``start_rotation_async`` passes the running
///         one). Without it, a callback returning a coroutine fails the step.
///     env: The command's whole environment (``HOME`` is still set to ``root_dir``). None: this process's
///         environment without the Databricks secrets (``DATABRICKS_TOKEN``, ``DATABRICKS_CLIENT_SECRET``,
///         ``DATABRICKS_PASSWORD``, the OIDC token variables; see README "Secrets").
///
/// Returns:
///     The running :class:`Rotation`.
///
/// Raises:
///     ValueError: a bad ``port``, timeout or delay, ``broker`` together with its settings, or a bad ``env`` name.
///     TypeError: ``command`` is a string rather than a list, a callback is not callable, or ``env`` is not a
///         mapping of str to str.
///     ConfigError: credentials cannot be configured.
///     RuntimeError: another rotation runs on the same broker cache (the message names its pid).
#[pyfunction]
#[pyo3(signature = (
    root_dir = None, on_rotate = None, command = None, *, broker = None, lifetime_seconds = None,
    refresh_margin = None, config = None, port = None, restart_timeout = 30.0, retry_delay = 5.0,
    max_retry_delay = 300.0, on_error = None, include_token = false, event_loop = None, env = None
))]
#[allow(clippy::too_many_arguments)]
pub fn start_rotation(
    py: Python<'_>,
    root_dir: Option<PathBuf>,
    on_rotate: Option<Bound<'_, PyAny>>,
    command: Option<&Bound<'_, PyAny>>,
    broker: Option<Bound<'_, PyTokenBroker>>,
    lifetime_seconds: Option<&Bound<'_, PyAny>>,
    refresh_margin: Option<&Bound<'_, PyAny>>,
    config: Option<&Bound<'_, PyConfig>>,
    port: Option<i64>,
    restart_timeout: f64,
    retry_delay: f64,
    max_retry_delay: f64,
    on_error: Option<Bound<'_, PyAny>>,
    include_token: bool,
    event_loop: Option<Bound<'_, PyAny>>,
    env: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyRotation> {
    let on_rotate = callable_arg(on_rotate, "on_rotate")?;
    let on_error = callable_arg(on_error, "on_error")?;
    let command = command_arg(command)?;
    let hook = Hook {
        command: command.clone(),
        port: port_arg(port)?,
        timeout: seconds(restart_timeout, "restart_timeout")?,
        env: env.map(env_arg).transpose()?,
    };
    if broker.is_some() && (lifetime_seconds.is_some() || refresh_margin.is_some() || config.is_some()) {
        return Err(PyValueError::new_err(
            "broker: pass lifetime_seconds, refresh_margin and config to the TokenBroker, not with it",
        ));
    }
    let broker = match broker {
        Some(b) => b.unbind(),
        None => Py::new(
            py,
            PyTokenBroker::new(
                lifetime_seconds,
                refresh_margin,
                None,
                config,
                "devbox-native-",
                false,
                None,
                "pat",
            )?,
        )?,
    };
    let core = broker.get().inner.clone();
    #[allow(clippy::cast_precision_loss)]
    let policy = Policy::new(core.options().refresh_margin as f64, retry_delay, max_retry_delay)?;
    let event_loop = event_loop.map(Bound::unbind);
    let control = Control::new();
    let steps = CcrSteps::new(
        core,
        &root_or_home(root_dir)?,
        hook,
        on_rotate.map(|c| on_rotate_callback(c, event_loop.as_ref().map(|l| l.clone_ref(py)), include_token)),
        on_error.map(|c| on_error_callback(c, event_loop.as_ref().map(|l| l.clone_ref(py)))),
        control.clone(),
    )?;
    let config_path = steps.config_path().to_path_buf();
    logging::ensure(py);
    let inner = Arc::new(Rotation::spawn(
        Rotator::new(steps, policy),
        control,
        Arc::new(SystemClock),
    )?);
    track(py, &inner)?;
    Ok(PyRotation {
        inner,
        broker,
        config_path,
        command,
        include_token,
    })
}

fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout.map(|t| seconds(t, "timeout")).transpose()
}

#[pymethods]
impl PyRotation {
    /// Stop the rotation and wait for its thread (idempotent).
    fn stop(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || inner.stop());
    }

    /// Async version of `stop`: a coroutine.
    fn stop_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        stop_later(py, &self.inner)
    }

    /// Rotate now (a new token even if the current one is fresh) and wait for the attempt.
    #[pyo3(signature = (timeout = None))]
    fn rotate_now<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let timeout = timeout_arg(timeout)?;
        let inner = self.inner.clone();
        let event = py.detach(move || inner.rotate_now(timeout))?;
        event_dict(py, &event, self.include_token)
    }

    /// Async version of `rotate_now`: a coroutine.
    #[pyo3(signature = (timeout = None))]
    fn rotate_now_async<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout_arg(timeout)?;
        let inner = self.inner.clone();
        let include_token = self.include_token;
        asyncio::deferred(py, move |py| {
            let inner = inner.clone();
            asyncio::spawn(py, joined(move || inner.rotate_now(timeout)), move |py, e| {
                Ok(event_dict(py, &e, include_token)?.into_any().unbind())
            })
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) {
        self.stop(py);
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.py().import("devbox_native._aio")?.getattr("_ready")?.call1((slf,))
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(&self, py: Python<'py>, _exc: &Bound<'py, pyo3::types::PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        stop_later(py, &self.inner)
    }

    /// Whether the rotation thread runs (never in a forked child).
    #[getter]
    fn running(&self) -> bool {
        self.inner.is_running()
    }

    /// Tokens installed so far.
    #[getter]
    fn rotations(&self) -> u64 {
        self.inner.status().rotations
    }

    /// The last failure's exception, until an attempt succeeds.
    #[getter]
    fn last_error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.status().last_error.map(|f| exception(py, &f.error))
    }

    /// The step the last failure happened at.
    #[getter]
    fn last_error_stage(&self) -> Option<&'static str> {
        self.inner.status().last_error.map(|f| f.stage.name())
    }

    /// Failures in a row (0 after a success).
    #[getter]
    fn failures(&self) -> u32 {
        self.inner.status().last_error.map_or(0, |f| f.attempt)
    }

    /// When the next rotation or retry is planned, epoch seconds.
    #[getter]
    fn next_attempt_at(&self) -> Option<f64> {
        self.inner.status().next_attempt_at
    }

    /// The last rotation's event, or None.
    #[getter]
    fn last_rotation<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.inner
            .status()
            .last_event
            .map(|e| event_dict(py, &e, self.include_token))
            .transpose()
    }

    /// The broker the tokens come from.
    #[getter]
    fn broker(&self, py: Python<'_>) -> Py<PyTokenBroker> {
        self.broker.clone_ref(py)
    }

    /// The CCR config file kept up to date.
    #[getter]
    fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// The hook command, or None.
    #[getter]
    fn command(&self) -> Option<Vec<String>> {
        self.command.clone()
    }

    fn __repr__(&self) -> String {
        let st = self.inner.status();
        format!(
            "Rotation(config_path={}, running={}, rotations={}, next_attempt_at={}, last_error_stage={})",
            py_str(&self.config_path.display().to_string()),
            if self.inner.is_running() { "True" } else { "False" },
            st.rotations,
            st.next_attempt_at.map_or_else(|| "None".into(), |t| format!("{t:.0}")),
            st.last_error.map_or_else(|| "None".into(), |f| py_str(f.stage.name()))
        )
    }
}

/// A blocking call (a join, a wait) as a future, run off the async workers.
async fn joined<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::NotRunning(format!("the waiting task failed: {e}")))?
}

/// A coroutine that stops the rotation and waits for its thread without blocking the loop.
fn stop_later<'py>(py: Python<'py>, rotation: &Arc<Rotation>) -> PyResult<Bound<'py, PyAny>> {
    let rotation = rotation.clone();
    asyncio::deferred(py, move |py| {
        let inner = rotation.clone();
        let stop = move || {
            inner.stop();
            Ok(())
        };
        asyncio::spawn(py, joined(stop), |py, ()| Ok(py.None()))
    })
}
