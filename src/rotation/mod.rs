//! Token rotation: keep Claude Code Router's config on a fresh broker token, on a background thread.
//!
//! A [`Rotator`] is the state machine; it does its work through a [`Steps`] implementation ([`ccr::CcrSteps`]
//! in production, a fake in tests) and never looks at a clock itself: [`Rotator::turn`] takes the time. The
//! driver ([`run`]) calls it, records the outcome in a shared [`Control`] (status, waiters, log) and sleeps
//! through a [`Clock`] until the next turn. [`Rotation`] runs the driver on its own thread.
//!
//! **One rotation**, when the broker's token is missing, inside its refresh margin, or a rotation was asked
//! for ([`Rotation::rotate_now`]): mint through the broker with the old token's revocation held
//! ([`crate::broker::Broker::rotate`]), write it into config.json, run the hook command (e.g. `ccr restart`),
//! wait until CCR's port answers, call `on_rotate`, and only then release the replaced token (revoked once
//! the broker's grace period is over). The cache records that the hook is pending from before the write until
//! the port answered, so a rotation killed midway is resumed by the next one; and a rotation holds the cache's
//! rotation lock for its life ([`crate::broker::Broker::lock_rotation`]): one rotation per cache. When the
//! config holds a token other than the broker's current one (at start, or because another process refreshed
//! the cache), the current token is installed the same way without minting (a "sync").
//!
//! **Failures** resume at the step that failed (a failed `on_rotate` does not restart CCR again), after a
//! back-off that doubles from `retry_delay` up to `max_retry_delay`. Each one is logged at WARNING, kept as
//! the status's `last_error` with the step and the next attempt time, and passed to `on_error`; the next
//! successful turn clears it. Revocations that failed stay pending in the broker cache, which schedules their
//! retries; the driver wakes for them.
//!
//! **Stopping** wakes the driver at once and cancels a mint or port wait in flight; a revocation (a 3 s budget
//! per token) and a running hook command (killing `ccr restart` midway could leave CCR down; within its
//! timeout) are left to finish.
//! The thread does not exist in a `fork()`ed child: there a [`Rotation`] reports not running, and `stop()`
//! returns at once.

pub mod ccr;
pub mod hook;

mod driver;
mod machine;

pub use driver::{Clock, Control, Rotation, Status, SystemClock, run};
pub use machine::{CHECK_INTERVAL, Event, Failure, Policy, Reason, Rotator, Stage, Steps, Turn, View};

#[cfg(test)]
mod tests;
