//! The state machine and its driver, with fake steps and a fake clock (no network, no files, no sleeping).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::broker::{HookPending, Lease, RevokeReport};
use crate::error::{Error, Result};
use crate::secret::Secret;

const LIFETIME: f64 = 3600.0;
const MARGIN: f64 = 600.0;

#[derive(Default)]
struct World {
    now: f64,
    cache: Option<Lease>,
    pending: Vec<(String, f64)>,
    config_token: Option<String>,
    minted: u32,
    /// Step names in call order.
    calls: Vec<&'static str>,
    /// Failures still to inject, per step.
    fail: HashMap<&'static str, u32>,
    /// A failing revocation leaves its id pending, due at this time.
    revoke_retry_at: f64,
    events: Vec<Event>,
    /// Stop this control once this many tokens were installed.
    stop_after: Option<(u64, Arc<Control>)>,
    /// The cache's record of an unfinished hook.
    hook_pending: Option<HookPending>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<World>>);

fn lease(id: &str, expires_at: f64) -> Lease {
    Lease {
        token: Secret::new(format!("tok-{id}")),
        token_id: id.into(),
        created_at: expires_at - LIFETIME,
        expires_at,
    }
}

impl Fake {
    fn with(f: impl FnOnce(&mut World)) -> Fake {
        let fake = Fake::default();
        f(&mut fake.0.lock().unwrap());
        fake
    }
    fn w(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.lock().unwrap()
    }
    fn step(&self, name: &'static str) -> Result<()> {
        let mut w = self.w();
        w.calls.push(name);
        match w.fail.get_mut(name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(Error::Hook(format!("{name} failed")))
            }
            _ => Ok(()),
        }
    }
    fn calls(&self) -> Vec<&'static str> {
        std::mem::take(&mut self.w().calls)
    }
}

impl Steps for Fake {
    fn view(&mut self) -> Result<View> {
        let w = self.w();
        Ok(View {
            lease: w.cache.clone(),
            next_revocation: w.pending.iter().map(|p| p.1).reduce(f64::min),
            hook_pending: w.hook_pending.clone(),
        })
    }
    fn begin_hook(&mut self, lease: &Lease, replaced: Option<&str>) -> Result<()> {
        self.w().hook_pending = Some(HookPending {
            token_id: lease.token_id.clone(),
            replaced_token_id: replaced.map(str::to_string),
        });
        Ok(())
    }
    fn end_hook(&mut self, lease: &Lease) -> Result<()> {
        let mut w = self.w();
        if w.hook_pending.as_ref().is_some_and(|h| h.token_id == lease.token_id) {
            w.hook_pending = None;
        }
        Ok(())
    }
    fn config_holds(&mut self, lease: &Lease) -> Result<bool> {
        Ok(self.w().config_token.as_deref() == Some(lease.token.expose()))
    }
    fn mint(&mut self, _replacing: Option<&str>) -> Result<Lease> {
        self.step("mint")?;
        let mut w = self.w();
        w.minted += 1;
        let new = lease(&format!("t{}", w.minted), w.now + LIFETIME);
        if let Some(old) = w.cache.replace(new.clone()) {
            w.pending.push((old.token_id, old.expires_at));
        }
        Ok(new)
    }
    fn write(&mut self, lease: &Lease) -> Result<PathBuf> {
        self.step("write")?;
        self.w().config_token = Some(lease.token.expose().to_string());
        Ok(PathBuf::from("/root/.claude-code-router/config.json"))
    }
    fn run_command(&mut self, _lease: &Lease) -> Result<()> {
        self.step("command")
    }
    fn wait_port(&mut self) -> Result<()> {
        self.step("port")
    }
    fn notify(&mut self, event: &Event) -> Result<()> {
        self.step("notify")?;
        self.w().events.push(event.clone());
        Ok(())
    }
    fn revoke(&mut self, all: bool) -> Result<RevokeReport> {
        self.step(if all { "revoke-all" } else { "revoke-due" })?;
        let mut w = self.w();
        let now = w.now;
        let mut report = RevokeReport::default();
        let failing = w.fail.get("revoke-token").copied().unwrap_or(0) > 0;
        if failing {
            *w.fail.get_mut("revoke-token").unwrap() -= 1;
            let retry = w.revoke_retry_at;
            for p in &mut w.pending {
                p.1 = retry;
                report
                    .failed
                    .push((p.0.clone(), Error::Transport("connection refused".into())));
            }
            return Ok(report);
        }
        let due: Vec<(String, f64)> = w.pending.iter().filter(|p| all || p.1 <= now).cloned().collect();
        w.pending.retain(|p| !(all || p.1 <= now));
        report.revoked = due.into_iter().map(|p| p.0).collect();
        if let Some((n, control)) = &w.stop_after
            && w.events.len() as u64 >= *n
        {
            control.stop();
        }
        Ok(report)
    }
    fn report(&mut self, _failure: &Failure) {}
}

fn policy() -> Policy {
    Policy::new(MARGIN, 5.0, 40.0).unwrap()
}

fn rotator(fake: &Fake) -> Rotator<Fake> {
    Rotator::new(fake.clone(), policy())
}

const INSTALL: [&str; 6] = ["mint", "write", "command", "port", "notify", "revoke-all"];

#[test]
fn idle_while_fresh_then_rotates_in_the_margin_and_revokes_after_the_hook() {
    let fake = Fake::with(|w| {
        w.now = 1000.0;
        w.cache = Some(lease("t0", 1000.0 + LIFETIME));
        w.config_token = Some("tok-t0".into());
    });
    let mut r = rotator(&fake);
    let t = r.turn(1000.0, 0);
    assert!(t.event.is_none() && t.failure.is_none() && !t.succeeded);
    assert!((t.next_attempt_at - (4600.0 - MARGIN)).abs() < 1e-9, "{t:?}");
    assert!((t.wake_at - (1000.0 + CHECK_INTERVAL)).abs() < 1e-9);
    assert!(fake.calls().is_empty());

    fake.w().now = 4000.0;
    let t = r.turn(4000.0, 0);
    assert_eq!(fake.calls(), INSTALL);
    let e = t.event.unwrap();
    assert_eq!(
        (e.lease.token_id.as_str(), e.reason, e.rotation),
        ("t1", Reason::Refresh, 1)
    );
    assert_eq!(e.replaced_token_id.as_deref(), Some("t0"));
    assert!(t.succeeded && fake.w().pending.is_empty());
    assert!((t.next_attempt_at - (4000.0 + LIFETIME - MARGIN)).abs() < 1e-9);
    assert!(!format!("{e:?}").contains("tok-t1"), "Debug never shows the token");
}

#[test]
fn a_config_holding_another_token_is_synced_without_minting() {
    let fake = Fake::with(|w| {
        w.cache = Some(lease("t0", LIFETIME));
        w.config_token = Some("someone-elses".into());
    });
    let mut r = rotator(&fake);
    let e = r.turn(0.0, 0).event.unwrap();
    assert_eq!(fake.calls(), &INSTALL[1..]);
    assert_eq!((e.reason, e.replaced_token_id), (Reason::Sync, None));
    // Another process refreshes the cache: the next look installs its token, replacing ours.
    fake.w().cache = Some(lease("t9", 100.0 + LIFETIME));
    let e = r.turn(100.0, 0).event.unwrap();
    assert_eq!(
        (e.reason, e.replaced_token_id.as_deref(), e.rotation),
        (Reason::Sync, Some("t0"), 2)
    );
}

#[test]
fn a_hook_left_unfinished_by_a_killed_rotation_is_resumed() {
    // Rotation A minted t2, wrote it into config.json and was killed during its hook: CCR still runs t1.
    let fake = Fake::with(|w| {
        w.cache = Some(lease("t2", LIFETIME));
        w.config_token = Some("tok-t2".into());
        w.pending.push(("t1".into(), LIFETIME - 100.0));
        w.hook_pending = Some(HookPending {
            token_id: "t2".into(),
            replaced_token_id: Some("t1".into()),
        });
        w.fail.insert("command", 1);
    });
    let mut r = rotator(&fake);
    let t = r.turn(0.0, 0);
    assert_eq!(t.failure.unwrap().stage, Stage::Command);
    assert_eq!(fake.calls(), ["write", "command"]);
    assert!(fake.w().hook_pending.is_some(), "cleared only once the hook succeeded");
    let e = r.turn(5.0, 0).event.unwrap();
    assert_eq!(fake.calls(), ["command", "port", "notify", "revoke-all"]);
    assert_eq!(
        (e.lease.token_id.as_str(), e.reason, e.replaced_token_id.as_deref()),
        ("t2", Reason::Sync, Some("t1"))
    );
    assert!(fake.w().hook_pending.is_none());
    // Done: the next look has nothing to do.
    assert!(r.turn(40.0, 0).event.is_none() && fake.calls().is_empty());
}

#[test]
fn an_empty_cache_mints_at_once() {
    let fake = Fake::default();
    let e = rotator(&fake).turn(0.0, 0).event.unwrap();
    assert_eq!(fake.calls(), INSTALL);
    assert_eq!((e.reason, e.replaced_token_id), (Reason::Refresh, None));
}

#[test]
fn failures_back_off_and_resume_at_the_failed_step() {
    let fake = Fake::with(|w| {
        w.fail.insert("command", 4);
    });
    let mut r = rotator(&fake);
    let mut now = 0.0;
    let mut waits = Vec::new();
    for attempt in 1..=4 {
        let t = r.turn(now, 0);
        let f = t.failure.unwrap();
        assert_eq!((f.stage, f.attempt), (Stage::Command, attempt));
        assert!(t.event.is_none() && (t.wake_at - f.next_attempt_at).abs() < 1e-9);
        waits.push(f.next_attempt_at - now);
        now = f.next_attempt_at;
    }
    assert_eq!(waits, [5.0, 10.0, 20.0, 40.0]);
    let t = r.turn(now, 0);
    assert!(t.event.is_some() && t.failure.is_none() && t.succeeded);
    let calls = fake.calls();
    assert_eq!(calls.iter().filter(|c| **c == "mint").count(), 1, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| **c == "write").count(), 1, "{calls:?}");
    assert_eq!(calls.iter().filter(|c| **c == "command").count(), 5, "{calls:?}");
}

#[test]
fn a_failed_callback_is_retried_without_restarting_ccr_again() {
    let fake = Fake::with(|w| {
        w.cache = Some(lease("t0", 100.0));
        w.fail.insert("notify", 1);
    });
    let mut r = rotator(&fake);
    let t = r.turn(0.0, 0);
    assert_eq!(t.failure.unwrap().stage, Stage::Callback);
    assert_eq!(fake.calls(), &INSTALL[..5]);
    assert_eq!(
        fake.w().pending.len(),
        1,
        "the old token is not revoked before on_rotate succeeded"
    );
    let t = r.turn(5.0, 0);
    assert_eq!(fake.calls(), ["notify", "revoke-all"]);
    assert_eq!(t.event.unwrap().rotation, 1);
    assert!(fake.w().pending.is_empty());
}

#[test]
fn a_failed_revocation_is_surfaced_after_the_rotation_and_retried() {
    let fake = Fake::with(|w| {
        w.cache = Some(lease("t0", 100.0));
        w.fail.insert("revoke-token", 1);
        w.revoke_retry_at = 0.0;
    });
    let mut r = rotator(&fake);
    let t = r.turn(0.0, 0);
    assert!(t.event.is_some(), "the rotation itself happened");
    let f = t.failure.unwrap();
    assert_eq!((f.stage, f.attempt), (Stage::Revoke, 1));
    assert_eq!(r.rotations(), 1);
    let t = r.turn(f.next_attempt_at, 0);
    assert_eq!(fake.calls(), [&INSTALL[..], &["revoke-all"]].concat());
    assert!(t.event.is_none() && t.failure.is_none() && t.succeeded);
    assert!(fake.w().pending.is_empty());
}

#[test]
fn due_revocations_left_by_others_are_retried_on_their_schedule() {
    let fake = Fake::with(|w| {
        w.cache = Some(lease("t1", LIFETIME));
        w.config_token = Some("tok-t1".into());
        w.pending.push(("t0".into(), 50.0));
        w.fail.insert("revoke-token", 1);
        w.revoke_retry_at = 80.0;
    });
    let mut r = rotator(&fake);
    let t = r.turn(0.0, 0);
    assert!(t.failure.is_none() && (t.next_attempt_at - 50.0).abs() < 1e-9, "{t:?}");
    let t = r.turn(50.0, 0);
    let f = t.failure.unwrap();
    assert_eq!(f.stage, Stage::Revoke);
    assert!((f.next_attempt_at - 80.0).abs() < 1e-9 && (t.next_attempt_at - 80.0).abs() < 1e-9);
    let t = r.turn(80.0, 0);
    assert!(t.succeeded && t.failure.is_none());
    assert_eq!(fake.calls(), ["revoke-due", "revoke-due"]);
}

#[test]
fn a_request_mints_even_when_fresh_and_keeps_asking_until_a_mint_succeeds() {
    let fake = Fake::with(|w| {
        w.cache = Some(lease("t0", LIFETIME));
        w.config_token = Some("tok-t0".into());
        w.fail.insert("mint", 1);
    });
    let mut r = rotator(&fake);
    assert!(r.turn(0.0, 0).event.is_none());
    let t = r.turn(1.0, 1);
    assert_eq!(t.failure.unwrap().stage, Stage::Mint);
    let e = r.turn(6.0, 1).event.unwrap();
    assert_eq!(
        (e.reason, e.replaced_token_id.as_deref()),
        (Reason::Requested, Some("t0"))
    );
    assert!(r.turn(7.0, 1).event.is_none(), "one request, one rotation");
}

#[test]
fn a_step_failing_while_a_newer_token_is_due_starts_over_with_a_new_mint() {
    let fake = Fake::with(|w| {
        w.fail.insert("port", 1);
    });
    let mut r = rotator(&fake);
    assert_eq!(r.turn(0.0, 0).failure.unwrap().stage, Stage::Port);
    // Long after: the half-installed token is itself inside the margin.
    let e = r.turn(LIFETIME - 10.0, 0).event.unwrap();
    assert_eq!(e.lease.token_id, "t2");
    assert_eq!(e.replaced_token_id.as_deref(), Some("t1"));
}

#[test]
fn backoff_doubles_up_to_the_cap_and_bad_delays_name_their_parameter() {
    let p = Policy::new(MARGIN, 2.0, 30.0).unwrap();
    let waits: Vec<f64> = (1..=7).map(|n| p.backoff(n)).collect();
    assert_eq!(waits, [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]);
    assert!((p.backoff(u32::MAX) - 30.0).abs() < 1e-9);
    let err = Policy::new(MARGIN, 0.0, 30.0).unwrap_err().to_string();
    assert!(err.starts_with("retry_delay: "), "{err}");
    let err = Policy::new(MARGIN, 5.0, 1.0).unwrap_err().to_string();
    assert!(err.starts_with("max_retry_delay: "), "{err}");
}

/// Time moves only when the driver sleeps.
struct FakeClock(Fake);

impl Clock for FakeClock {
    fn now(&self) -> f64 {
        self.0.w().now
    }
    fn sleep(&self, control: &Control, seconds: f64, _seen: u64) {
        if !control.stopped() {
            self.0.w().now += seconds;
        }
    }
}

#[test]
fn the_driver_rotates_at_each_margin_over_simulated_hours() {
    let control = Control::new();
    let fake = Fake::with(|w| {
        w.now = 10_000.0;
        w.stop_after = Some((3, control.clone()));
    });
    run(rotator(&fake), &control, &FakeClock(fake.clone()));
    let w = fake.w();
    let minted_at: Vec<f64> = w.events.iter().map(|e| e.lease.created_at).collect();
    assert_eq!(
        minted_at,
        [10_000.0, 13_000.0, 16_000.0],
        "each token replaced {MARGIN} s before expiry"
    );
    let st = control.status();
    assert_eq!(st.rotations, 3);
    assert!(!st.running && st.last_error.is_none());
}

#[test]
fn a_thread_rotates_on_request_and_stops_promptly() {
    let fake = Fake::with(|w| {
        w.now = crate::broker::now();
        w.cache = Some(lease("t0", w.now + LIFETIME));
        w.config_token = Some("tok-t0".into());
    });
    let control = Control::new();
    let rotation = Rotation::spawn(Rotator::new(fake.clone(), policy()), control, Arc::new(SystemClock)).unwrap();
    assert!(rotation.is_running() && !rotation.inherited());
    let e = rotation.rotate_now(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(
        (e.reason, e.lease.token_id.as_str(), e.rotation),
        (Reason::Requested, "t1", 1)
    );
    fake.w().fail.insert("mint", 1);
    let err = rotation.rotate_now(None).unwrap_err();
    assert_eq!(err.to_string(), "mint failed");
    let st = rotation.status();
    assert_eq!(st.last_error.as_ref().map(|f| f.stage), Some(Stage::Mint));
    assert!(st.next_attempt_at.is_some_and(|t| t > crate::broker::now()));
    // The driver now sleeps (a retry 5 s away, then 30 s naps): stop wakes and joins it at once.
    let t0 = Instant::now();
    rotation.stop();
    rotation.stop();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(!rotation.is_running() && !rotation.status().running);
    assert!(matches!(rotation.rotate_now(None), Err(Error::NotRunning(_))));
}
