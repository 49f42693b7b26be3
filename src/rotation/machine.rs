//! The state machine: stages, one turn of a rotation, where a failure resumes and the back-off (pure: no clock,
//! no thread; its work goes through [`Steps`]).

use std::path::PathBuf;

use crate::backoff;
use crate::broker::{HookPending, Lease, RevokeReport};
use crate::error::{Error, Result};

/// The longest the driver sleeps between two looks at the cache, seconds: it notices a token refreshed by
/// another process (or a wall-clock jump) within this time.
pub const CHECK_INTERVAL: f64 = 30.0;

/// The step of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the broker cache.
    Cache,
    /// Minting the new token.
    Mint,
    /// Writing it into config.json.
    Write,
    /// Running the hook command.
    Command,
    /// Waiting for CCR's port.
    Port,
    /// Calling `on_rotate`.
    Callback,
    /// Revoking the replaced token.
    Revoke,
}

impl Stage {
    /// The name shown to users (`"mint"`, `"command"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Cache => "cache",
            Stage::Mint => "mint",
            Stage::Write => "write",
            Stage::Command => "command",
            Stage::Port => "port",
            Stage::Callback => "callback",
            Stage::Revoke => "revoke",
        }
    }
}

/// Why a token was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The cached token was missing, expired or inside the refresh margin.
    Refresh,
    /// [`super::Rotation::rotate_now`] asked for a new token.
    Requested,
    /// config.json did not hold the broker's current token (at start, or another process refreshed it).
    Sync,
}

impl Reason {
    /// The name shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Refresh => "refresh",
            Reason::Requested => "requested",
            Reason::Sync => "sync",
        }
    }
}

/// A token installed in CCR. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct Event {
    /// The new token (for callers that asked for it explicitly).
    pub lease: Lease,
    /// The token it replaced, when there was one.
    pub replaced_token_id: Option<String>,
    /// The config file written.
    pub config_path: PathBuf,
    /// Why.
    pub reason: Reason,
    /// How many rotations this one makes (1 for the first).
    pub rotation: u64,
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The step that failed.
    pub stage: Stage,
    /// The error (never holds a secret).
    pub error: Error,
    /// Failures in a row, this one included.
    pub attempt: u32,
    /// When the next attempt is made, epoch seconds.
    pub next_attempt_at: f64,
}

/// What the broker cache says now.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The current token, if any.
    pub lease: Option<Lease>,
    /// When the earliest pending revocation is due, epoch seconds.
    pub next_revocation: Option<f64>,
    /// A hook that a rotation (maybe killed meanwhile) started for a token and that has not succeeded yet.
    pub hook_pending: Option<HookPending>,
}

/// The work a rotation does, one method per step. Each may block; cancellable ones watch the [`super::Control`].
pub trait Steps {
    /// The broker cache (no network).
    fn view(&mut self) -> Result<View>;
    /// Whether config.json holds this token now.
    fn config_holds(&mut self, lease: &Lease) -> Result<bool>;
    /// Mint a new token replacing `replacing`, the old one's revocation held.
    fn mint(&mut self, replacing: Option<&str>) -> Result<Lease>;
    /// Record in the cache that the hook has to run for `lease` (replacing `replaced` in CCR), before
    /// config.json is written: a rotation killed before the hook succeeded is resumed by the next one.
    fn begin_hook(&mut self, lease: &Lease, replaced: Option<&str>) -> Result<()>;
    /// Clear that record once the hook and the port wait succeeded.
    fn end_hook(&mut self, lease: &Lease) -> Result<()>;
    /// Put the token into config.json; returns its path.
    fn write(&mut self, lease: &Lease) -> Result<PathBuf>;
    /// Run the hook command (nothing without one). `lease` is only used to keep it out of messages.
    fn run_command(&mut self, lease: &Lease) -> Result<()>;
    /// Wait until CCR answers (nothing without a command or port).
    fn wait_port(&mut self) -> Result<()>;
    /// Call `on_rotate`.
    fn notify(&mut self, event: &Event) -> Result<()>;
    /// Revoke the replaced tokens that are due; with `all` (after an install) first release the ones held
    /// for it, so they are revoked once their grace period is over.
    fn revoke(&mut self, all: bool) -> Result<RevokeReport>;
    /// Tell `on_error` (its own failures are only logged).
    fn report(&mut self, failure: &Failure);
}

/// Back-off settings.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Rotate when less than this is left of the token, seconds (the broker's `refresh_margin`).
    pub refresh_margin: f64,
    /// First retry delay, seconds.
    pub retry_delay: f64,
    /// Longest retry delay, seconds.
    pub max_retry_delay: f64,
}

impl Policy {
    /// Check the delays.
    pub fn new(refresh_margin: f64, retry_delay: f64, max_retry_delay: f64) -> Result<Policy> {
        if !(retry_delay.is_finite() && retry_delay > 0.0) {
            return Err(Error::invalid(
                "retry_delay",
                format!("must be a positive number of seconds, got {retry_delay}"),
            ));
        }
        if !(max_retry_delay.is_finite() && max_retry_delay >= retry_delay) {
            return Err(Error::invalid(
                "max_retry_delay",
                format!("must be at least retry_delay ({retry_delay}), got {max_retry_delay}"),
            ));
        }
        Ok(Policy {
            refresh_margin,
            retry_delay,
            max_retry_delay,
        })
    }

    /// The wait before retry number `failures` (1 for the first): doubling from `retry_delay`, capped.
    pub fn backoff(&self, failures: u32) -> f64 {
        backoff::exponential(self.retry_delay, self.max_retry_delay, failures.max(1))
    }
}

/// A token being installed, and the next step to do.
struct Progress {
    lease: Lease,
    replaced: Option<String>,
    reason: Reason,
    next: Stage,
    config_path: PathBuf,
    event: Option<Event>,
}

/// The outcome of one turn.
#[derive(Debug, Default)]
pub struct Turn {
    /// The token installed in this turn (its `on_rotate` was called).
    pub event: Option<Event>,
    /// The failure of this turn.
    pub failure: Option<Failure>,
    /// Whether the turn did its work without a failure (clears `last_error`); a turn with nothing to do is
    /// not one.
    pub succeeded: bool,
    /// When the next rotation or retry is planned, epoch seconds (what users see).
    pub next_attempt_at: f64,
    /// When the driver should look again, epoch seconds (at the latest [`CHECK_INTERVAL`] from now).
    pub wake_at: f64,
}

/// The rotation state machine.
pub struct Rotator<S> {
    steps: S,
    policy: Policy,
    /// The token id CCR runs with, as far as we know (None until the first look at config.json).
    installed: Option<String>,
    progress: Option<Progress>,
    /// The newest `rotate_now` request a mint has answered.
    minted_for: u64,
    /// Failures in a row.
    failures: u32,
    rotations: u64,
}

/// A step's outcome: a failure names its step.
type StageResult = std::result::Result<(), (Stage, Error)>;

fn at(stage: Stage) -> impl FnOnce(Error) -> (Stage, Error) {
    move |e| (stage, e)
}

impl<S: Steps> Rotator<S> {
    /// A rotator that has not looked at anything yet.
    pub fn new(steps: S, policy: Policy) -> Self {
        Rotator {
            steps,
            policy,
            installed: None,
            progress: None,
            minted_for: 0,
            failures: 0,
            rotations: 0,
        }
    }

    /// The steps (to report a failure to `on_error`).
    pub fn steps_mut(&mut self) -> &mut S {
        &mut self.steps
    }

    /// Rotations done so far.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Do what is due at `now`: rotate, sync, resume a failed rotation, or retry due revocations.
    /// `requested` counts `rotate_now` calls so far.
    pub fn turn(&mut self, now: f64, requested: u64) -> Turn {
        let mut turn = Turn::default();
        let mut view = View::default();
        match self.attempt(now, requested, &mut view, &mut turn) {
            Ok(worked) => {
                self.failures = 0;
                turn.succeeded = worked;
                if self.progress.is_none() && view.next_revocation.is_some_and(|t| t <= now) {
                    // Revocations left failing (by us or another process) and due now. A failure here is
                    // retried on the broker's schedule, not counted as a failed rotation.
                    let result = self.steps.revoke(false);
                    view = self.steps.view().unwrap_or(view);
                    let failed = match result {
                        Ok(report) => report.failed.into_iter().next().map(|(_, e)| e),
                        Err(e) => Some(e),
                    };
                    match failed {
                        None => turn.succeeded = true,
                        Some(error) => {
                            let next = view.next_revocation.map_or(now + CHECK_INTERVAL, |t| t.max(now + 1.0));
                            turn.failure = Some(Failure {
                                stage: Stage::Revoke,
                                error,
                                attempt: 1,
                                next_attempt_at: next,
                            });
                        }
                    }
                }
            }
            Err((stage, error)) => {
                self.failures += 1;
                turn.failure = Some(Failure {
                    stage,
                    error,
                    attempt: self.failures,
                    next_attempt_at: now + self.policy.backoff(self.failures),
                });
            }
        }
        let retry = turn.failure.as_ref().map(|f| f.next_attempt_at);
        if self.failures > 0 {
            turn.next_attempt_at = retry.unwrap_or(now);
            turn.wake_at = turn.next_attempt_at;
        } else {
            let due = view
                .lease
                .as_ref()
                .map_or(now, |l| l.expires_at - self.policy.refresh_margin);
            let revocation = view.next_revocation.map(|t| t.max(now + 1.0));
            turn.next_attempt_at = [revocation, retry].into_iter().flatten().fold(due, f64::min);
            turn.wake_at = turn.next_attempt_at.min(now + CHECK_INTERVAL);
        }
        turn
    }

    /// Returns whether there was work (minting or installing) and it all succeeded.
    fn attempt(
        &mut self,
        now: f64,
        requested: u64,
        view: &mut View,
        turn: &mut Turn,
    ) -> std::result::Result<bool, (Stage, Error)> {
        *view = self.steps.view().map_err(at(Stage::Cache))?;
        let forced = requested > self.minted_for;
        let current = view.lease.clone();
        let stale = current
            .as_ref()
            .is_none_or(|l| l.expires_at - now <= self.policy.refresh_margin);
        if forced || stale {
            let replacing = current.map(|l| l.token_id);
            let lease = self.steps.mint(replacing.as_deref()).map_err(at(Stage::Mint))?;
            self.minted_for = requested;
            // What CCR ran with, when known (a token minted but never installed replaced nothing in CCR).
            let replaced = self.installed.clone().or(replacing).filter(|r| *r != lease.token_id);
            let reason = if forced { Reason::Requested } else { Reason::Refresh };
            view.lease = Some(lease.clone());
            self.progress = Some(Progress::new(lease, replaced, reason));
        } else if let Some(current) = current {
            let resuming = self
                .progress
                .as_ref()
                .is_some_and(|p| p.lease.token_id == current.token_id);
            if !resuming {
                self.progress = None;
                if self.installed.as_deref() == Some(current.token_id.as_str()) {
                    return Ok(false);
                }
                // A hook left unfinished for this token (its rotation was killed during `ccr restart`): CCR
                // may still run the old token, so install it again whatever config.json holds.
                let unfinished = view.hook_pending.as_ref().filter(|h| h.token_id == current.token_id);
                // At start: a config that already holds the current token needs nothing (an unreadable one
                // gets the token written, which reports the problem).
                if unfinished.is_none()
                    && self.installed.is_none()
                    && self.steps.config_holds(&current).unwrap_or(false)
                {
                    self.installed = Some(current.token_id);
                    return Ok(false);
                }
                let replaced = self
                    .installed
                    .clone()
                    .or_else(|| unfinished.and_then(|h| h.replaced_token_id.clone()))
                    .filter(|r| *r != current.token_id);
                self.progress = Some(Progress::new(current, replaced, Reason::Sync));
            }
        }
        if self.progress.is_none() {
            return Ok(false);
        }
        self.install(turn)?;
        // Installing revoked the held tokens: what is due next comes from the cache as it is now.
        if let Ok(v) = self.steps.view() {
            *view = v;
        }
        Ok(true)
    }

    /// Run the remaining steps of the token in progress.
    fn install(&mut self, turn: &mut Turn) -> StageResult {
        while let Some(p) = self.progress.as_mut() {
            match p.next {
                Stage::Write => {
                    self.steps
                        .begin_hook(&p.lease, p.replaced.as_deref())
                        .map_err(at(Stage::Write))?;
                    p.config_path = self.steps.write(&p.lease).map_err(at(Stage::Write))?;
                    p.next = Stage::Command;
                }
                Stage::Command => {
                    self.steps.run_command(&p.lease).map_err(at(Stage::Command))?;
                    p.next = Stage::Port;
                }
                Stage::Port => {
                    self.steps.wait_port().map_err(at(Stage::Port))?;
                    self.steps.end_hook(&p.lease).map_err(at(Stage::Port))?;
                    // CCR runs with the new token now, whatever happens next.
                    self.installed = Some(p.lease.token_id.clone());
                    p.next = Stage::Callback;
                }
                Stage::Callback => {
                    let event = Event {
                        lease: p.lease.clone(),
                        replaced_token_id: p.replaced.clone(),
                        config_path: p.config_path.clone(),
                        reason: p.reason,
                        rotation: self.rotations + 1,
                    };
                    self.steps.notify(&event).map_err(at(Stage::Callback))?;
                    self.rotations += 1;
                    p.event = Some(event.clone());
                    p.next = Stage::Revoke;
                    turn.event = Some(event);
                }
                Stage::Revoke | Stage::Cache | Stage::Mint => {
                    let report = self.steps.revoke(true).map_err(at(Stage::Revoke))?;
                    if let Some((_, e)) = report.failed.into_iter().next() {
                        return Err((Stage::Revoke, e));
                    }
                    self.progress = None;
                }
            }
        }
        Ok(())
    }
}

impl Progress {
    fn new(lease: Lease, replaced: Option<String>, reason: Reason) -> Progress {
        Progress {
            lease,
            replaced,
            reason,
            next: Stage::Write,
            config_path: PathBuf::new(),
            event: None,
        }
    }
}
