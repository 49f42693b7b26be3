//! The production [`Steps`]: the token broker, CCR's config.json, the hook command and port, and the
//! callbacks (plain closures here; the Python binding wraps Python callables in them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::{Broker, HookPending, Lease, RevokeReport, RotationLock};
use crate::ccr::{self, CcrPaths, CcrView, DEFAULT_CCR_HOST, DEFAULT_CCR_PORT, DEFAULT_MODEL};
use crate::error::{Error, Result};
use crate::rotation::hook;
use crate::rotation::{Control, Event, Failure, Steps, View};
use crate::runtime;

/// Called with each installed token; an error fails the step (retried).
pub type Callback = Box<dyn FnMut(&Event, &Control) -> Result<()> + Send>;
/// Called with each failure; it cannot fail the rotation.
pub type ErrorCallback = Box<dyn FnMut(&Failure, &Control) + Send>;

/// Which port to wait for after the hook command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortWait {
    /// config.json's `HOST`/`PORT` (default 127.0.0.1:3456), read after each write.
    FromConfig,
    /// This port (on config.json's `HOST`).
    Port(u16),
    /// Do not wait.
    Off,
}

/// What restarts CCR.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The command (an argument list, no shell); None runs nothing and waits for no port.
    pub command: Option<Vec<String>>,
    /// The port to wait for after the command.
    pub port: PortWait,
    /// How long the command may run, and then how long the port may take to answer.
    pub timeout: Duration,
    /// The command's whole environment (plus `HOME`); None: ours without the Databricks secret variables.
    pub env: Option<Vec<(String, String)>>,
}

/// The production steps.
pub struct CcrSteps {
    broker: Arc<Broker>,
    paths: CcrPaths,
    home: PathBuf,
    hook: Hook,
    on_rotate: Option<Callback>,
    on_error: Option<ErrorCallback>,
    control: Arc<Control>,
    /// Held for the rotation's life: one rotation per broker cache.
    _lock: RotationLock,
}

impl CcrSteps {
    /// Steps for the CCR config under `root` (made absolute now).
    pub fn new(
        broker: Arc<Broker>,
        root: &std::path::Path,
        hook: Hook,
        on_rotate: Option<Callback>,
        on_error: Option<ErrorCallback>,
        control: Arc<Control>,
    ) -> Result<CcrSteps> {
        if let Some(c) = &hook.command
            && c.first().is_none_or(String::is_empty)
        {
            return Err(Error::invalid(
                "command",
                "must be a non-empty list whose first item names a program",
            ));
        }
        let paths = CcrPaths::new(root)?;
        let home = paths.dir.parent().map(PathBuf::from).unwrap_or_default();
        let lock = broker.lock_rotation()?;
        Ok(CcrSteps {
            _lock: lock,
            broker,
            paths,
            home,
            hook,
            on_rotate,
            on_error,
            control,
        })
    }

    /// config.json's path.
    pub fn config_path(&self) -> &std::path::Path {
        &self.paths.config
    }

    /// Run a broker future on the shared runtime; `stop()` cancels it.
    fn cancellable<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let control = &self.control;
        runtime::block_on(async {
            tokio::select! {
                r = fut => r,
                () = control.until_stopped() => Err(Error::NotRunning("stopped".into())),
            }
        })?
    }
}

impl Steps for CcrSteps {
    fn view(&mut self) -> Result<View> {
        let lease = self.broker.current()?;
        let next_revocation = self
            .broker
            .pending()?
            .iter()
            .map(|p| p.next_attempt_at.min(p.expires_at))
            .reduce(f64::min);
        Ok(View {
            lease,
            next_revocation,
            hook_pending: self.broker.hook_pending()?,
        })
    }

    fn config_holds(&mut self, lease: &Lease) -> Result<bool> {
        Ok(CcrView::read(&self.paths.config)?.is_some_and(|v| v.holds(lease.token.expose())))
    }

    fn mint(&mut self, replacing: Option<&str>) -> Result<Lease> {
        let broker = self.broker.clone();
        self.cancellable(broker.rotate(replacing))
    }

    fn begin_hook(&mut self, lease: &Lease, replaced: Option<&str>) -> Result<()> {
        let pending = HookPending {
            token_id: lease.token_id.clone(),
            replaced_token_id: replaced.map(str::to_string),
        };
        runtime::block_on(self.broker.set_hook_pending(&lease.token_id, Some(pending)))?
    }

    fn end_hook(&mut self, lease: &Lease) -> Result<()> {
        runtime::block_on(self.broker.set_hook_pending(&lease.token_id, None))?
    }

    fn write(&mut self, lease: &Lease) -> Result<PathBuf> {
        let broker = &self.broker;
        ccr::update_ccr_token(
            &self.home,
            lease.token.expose(),
            || Ok(broker.host().to_string()),
            DEFAULT_MODEL,
        )
    }

    fn run_command(&mut self, lease: &Lease) -> Result<()> {
        match &self.hook.command {
            Some(argv) => hook::run_command(
                argv,
                self.hook.env.as_deref(),
                &self.home,
                self.hook.timeout,
                &[lease.token.expose()],
            ),
            None => Ok(()),
        }
    }

    fn wait_port(&mut self) -> Result<()> {
        if self.hook.command.is_none() || self.hook.port == PortWait::Off {
            return Ok(());
        }
        let view = CcrView::read(&self.paths.config)?;
        let host = view.as_ref().map_or(DEFAULT_CCR_HOST, |v| v.host.as_str());
        let port = match self.hook.port {
            PortWait::Port(p) => p,
            _ => view.as_ref().map_or(DEFAULT_CCR_PORT, |v| v.port),
        };
        let control = &self.control;
        hook::wait_port(host, port, self.hook.timeout, &|| control.stopped())
    }

    fn notify(&mut self, event: &Event) -> Result<()> {
        match self.on_rotate.as_mut() {
            Some(cb) => cb(event, &self.control),
            None => Ok(()),
        }
    }

    fn revoke(&mut self, all: bool) -> Result<RevokeReport> {
        // Not cancelled by stop(): each revocation has a short budget. After an install (`all`) the held
        // tokens are released first: each is then revoked once its grace period is over (by this rotation's
        // next turns, or any broker user of the cache), so others that got it just before are not cut off.
        let broker = self.broker.clone();
        runtime::block_on(async move {
            if all {
                broker.release_held().await?;
            }
            broker.revoke_pending(false).await
        })?
    }

    fn report(&mut self, failure: &Failure) {
        if let Some(cb) = self.on_error.as_mut() {
            cb(failure, &self.control);
        }
    }
}
