//! The driver: the loop that calls the state machine, the shared [`Control`] (status, waiters, stop and
//! `rotate_now` requests), the clock, and the thread it runs on.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use super::machine::{CHECK_INTERVAL, Event, Failure, Rotator, Stage, Steps, Turn};
use crate::error::{Error, Result};

/// What users see of a rotation.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Whether the thread runs.
    pub running: bool,
    /// Rotations done.
    pub rotations: u64,
    /// The last failure, until a turn succeeds.
    pub last_error: Option<Failure>,
    /// When the next rotation or retry is planned, epoch seconds (None before the first look).
    pub next_attempt_at: Option<f64>,
    /// The last token installed.
    pub last_event: Option<Event>,
}

#[derive(Default)]
struct State {
    stop: bool,
    requested: u64,
    /// The newest request a finished turn answered, and how.
    answered: u64,
    answer: Option<std::result::Result<Event, Error>>,
    status: Status,
}

/// What the rotation thread and its callers share: the stop flag, `rotate_now` requests, the status.
#[derive(Default)]
pub struct Control {
    state: Mutex<State>,
    cond: Condvar,
}

impl Control {
    /// A control block for a rotation about to start.
    pub fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Holders only assign whole values: a panic cannot leave the state half-written.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `stop()` was called.
    pub fn stopped(&self) -> bool {
        self.lock().stop
    }

    /// Ask the thread to stop, and wake it.
    pub fn stop(&self) {
        self.lock().stop = true;
        self.cond.notify_all();
    }

    /// Resolves once `stop()` was called (checked every 50 ms), for cancelling async work.
    pub async fn until_stopped(&self) {
        while !self.stopped() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait up to `seconds`, returning early on `stop()` or a `rotate_now` request newer than `seen`.
    pub fn wait(&self, seconds: f64, seen: u64) {
        let deadline = Instant::now() + Duration::from_secs_f64(seconds.clamp(0.0, 3600.0));
        let mut st = self.lock();
        while !st.stop && st.requested == seen {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            st = self
                .cond
                .wait_timeout(st, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// A snapshot of the status.
    pub fn status(&self) -> Status {
        self.lock().status.clone()
    }

    /// The status without waiting for the lock (None when it is held): in a `fork()`ed child the lock may
    /// have been held by a thread that does not exist there.
    pub fn try_status(&self) -> Option<Status> {
        self.state.try_lock().ok().map(|st| st.status.clone())
    }

    fn record(&self, turn: &Turn, requested: u64) {
        let mut st = self.lock();
        if let Some(e) = &turn.event {
            st.status.rotations = e.rotation;
            st.status.last_event = Some(e.clone());
        }
        if let Some(f) = &turn.failure {
            st.status.last_error = Some(f.clone());
        } else if turn.succeeded {
            st.status.last_error = None;
        }
        st.status.next_attempt_at = Some(turn.next_attempt_at);
        if requested > st.answered {
            st.answered = requested;
            st.answer = match (&turn.event, &turn.failure) {
                (Some(e), _) => Some(Ok(e.clone())),
                (None, Some(f)) => Some(Err(f.error.clone())),
                (None, None) => st.status.last_event.clone().map(Ok),
            };
        }
        drop(st);
        self.cond.notify_all();
    }

    fn set_running(&self, running: bool) {
        self.lock().status.running = running;
        self.cond.notify_all();
    }
}

/// Wall-clock time and sleeping, injectable for tests.
pub trait Clock: Send + Sync {
    /// Seconds since the epoch.
    fn now(&self) -> f64;
    /// Sleep up to `seconds`, returning early on `stop()` or a `rotate_now` request newer than `seen`.
    fn sleep(&self, control: &Control, seconds: f64, seen: u64);
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        crate::broker::now()
    }
    fn sleep(&self, control: &Control, seconds: f64, seen: u64) {
        control.wait(seconds, seen);
    }
}

fn log_turn(turn: &Turn, now: f64) {
    if let Some(e) = &turn.event {
        log::info!(
            "token rotation {} ({}): token {} installed in {}{}",
            e.rotation,
            e.reason.name(),
            e.lease.token_id,
            e.config_path.display(),
            e.replaced_token_id
                .as_ref()
                .map(|r| format!(", replacing {r}"))
                .unwrap_or_default()
        );
    }
    if let Some(f) = &turn.failure {
        log::warn!(
            "token rotation failed at step {} (failure {} in a row; next attempt in {:.1} s): {}",
            f.stage.name(),
            f.attempt,
            (f.next_attempt_at - now).max(0.0),
            f.error
        );
    }
}

/// The driver: turn, record, sleep, until stopped.
pub fn run<S: Steps>(mut rotator: Rotator<S>, control: &Control, clock: &dyn Clock) {
    control.set_running(true);
    loop {
        let requested = {
            let st = control.lock();
            if st.stop {
                break;
            }
            st.requested
        };
        let now = clock.now();
        // A panic in a step must not end the rotation silently: it is a failure like any other.
        let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rotator.turn(now, requested)))
            .unwrap_or_else(|_| Turn {
                failure: Some(Failure {
                    stage: Stage::Cache,
                    error: Error::Hook("internal error: a rotation step panicked".into()),
                    attempt: 1,
                    next_attempt_at: now + CHECK_INTERVAL,
                }),
                next_attempt_at: now + CHECK_INTERVAL,
                wake_at: now + CHECK_INTERVAL,
                ..Turn::default()
            });
        if control.stopped() {
            // What failed was cancelled by stop(): not a failure to report. What succeeded is recorded.
            // A `rotate_now` caller is answered only by an installed token (else: "stopped").
            let done = Turn { failure: None, ..turn };
            control.record(&done, if done.event.is_some() { requested } else { 0 });
            break;
        }
        log_turn(&turn, now);
        control.record(&turn, requested);
        if let Some(f) = &turn.failure {
            rotator.steps_mut().report(f);
        }
        let wait = turn.wake_at - clock.now();
        if wait > 0.0 {
            clock.sleep(control, wait, requested);
        }
    }
    control.set_running(false);
}

/// A rotation running on its own thread.
pub struct Rotation {
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    pid: u32,
}

impl Rotation {
    /// Start the driver on a thread named `devbox-rotation`.
    pub fn spawn<S: Steps + Send + 'static>(
        rotator: Rotator<S>,
        control: Arc<Control>,
        clock: Arc<dyn Clock>,
    ) -> Result<Rotation> {
        let c = control.clone();
        // Running from the start: a status read right after spawn must not say "stopped".
        control.set_running(true);
        let handle = std::thread::Builder::new()
            .name("devbox-rotation".into())
            .spawn(move || run(rotator, &c, clock.as_ref()))
            .map_err(|e| {
                control.set_running(false);
                Error::NotRunning(format!("cannot start the rotation thread: {e}"))
            })?;
        Ok(Rotation {
            thread_id: handle.thread().id(),
            thread: Mutex::new(Some(handle)),
            control,
            pid: std::process::id(),
        })
    }

    /// Whether this handle was inherited across `fork()` (its thread is in the parent only).
    pub fn inherited(&self) -> bool {
        self.pid != std::process::id()
    }

    /// Whether the thread runs (never in a `fork()`ed child).
    pub fn is_running(&self) -> bool {
        !self.inherited() && self.control.try_status().is_none_or(|s| s.running)
    }

    /// The status (in a `fork()`ed child: what the parent had when it forked, not running).
    pub fn status(&self) -> Status {
        if self.inherited() {
            let mut s = self.control.try_status().unwrap_or_default();
            s.running = false;
            return s;
        }
        self.control.status()
    }

    /// Stop the thread and wait for it (idempotent). From the rotation's own thread (an `on_rotate` that
    /// stops its rotation) it only asks; in a `fork()`ed child it does nothing.
    pub fn stop(&self) {
        if self.inherited() {
            return;
        }
        self.control.stop();
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            // The thread catches panics of its steps; a panic elsewhere has nothing left to report.
            let _ = h.join();
        }
    }

    /// Ask for a rotation now (a new token even if the current one is fresh) and wait for the attempt:
    /// its event, or its error (the rotation keeps retrying in the background). `timeout` bounds the wait.
    pub fn rotate_now(&self, timeout: Option<Duration>) -> Result<Event> {
        if self.inherited() {
            return Err(Error::NotRunning(
                "this rotation runs in the parent process (it is not inherited across fork)".into(),
            ));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.control.lock();
        if st.stop || !st.status.running {
            return Err(Error::NotRunning("the rotation is stopped".into()));
        }
        st.requested += 1;
        let mine = st.requested;
        self.control.cond.notify_all();
        loop {
            if st.answered >= mine {
                return st
                    .answer
                    .clone()
                    .unwrap_or_else(|| Err(Error::NotRunning("the rotation made no attempt".into())));
            }
            // Not on stop() alone: the turn in progress may still install a token (its answer comes first).
            if !st.status.running {
                return Err(Error::NotRunning("the rotation stopped before rotating".into()));
            }
            let wait = match deadline {
                None => Duration::from_secs(1),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout {
                            message: format!(
                                "rotate_now: no answer within {:.1} s (the attempt goes on)",
                                timeout.unwrap_or_default().as_secs_f64()
                            ),
                            last: None,
                        });
                    }
                    left.min(Duration::from_secs(1))
                }
            };
            st = self
                .control
                .cond
                .wait_timeout(st, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}
