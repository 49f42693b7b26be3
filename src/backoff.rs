//! The one exponential back-off of the crate: the HTTP retries ([`crate::api::retry`]), the retries of a failed
//! revocation ([`crate::broker::revoke_retry_delay`]) and a failed rotation's next attempt
//! ([`crate::rotation::Policy::backoff`]) all compute their wait with [`exponential`].
//!
//! **Jitter** ([`jittered`]) is added where many clients may fail together and would otherwise retry in step: HTTP
//! retries (a 429 or 503 reaches every process of the user at once). It is not added to the other two: a failed
//! revocation's next attempt is written in the shared cache and claimed by one process only (so processes never
//! retry it in step), and a rotation is one per cache, with its next attempt shown in its status and documented
//! as doubling from `retry_delay`: users (and tests) read it as exact.

/// The wait before retry `retry` (1 for the first), seconds: `first`, doubling with each retry, never more than
/// `max` (nor less than 0). Retry 0 (nothing failed yet, or a first failure retried at once) waits nothing.
pub fn exponential(first: f64, max: f64, retry: u32) -> f64 {
    if retry == 0 {
        return 0.0;
    }
    // 2^62 times any sane `first` is far past any `max`: the exponent is capped so the product stays finite.
    let exp = i32::try_from(retry - 1).unwrap_or(i32::MAX).min(62);
    (first * 2f64.powi(exp)).min(max).max(0.0)
}

/// `wait` plus a random extra of up to half of it, the extra at most `cap` seconds.
pub fn jittered(wait: f64, cap: f64) -> f64 {
    wait + (wait / 2.0).min(cap).max(0.0) * fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_first_and_stops_at_max() {
        let waits: Vec<f64> = (0..=6).map(|n| exponential(0.5, 10.0, n)).collect();
        assert_eq!(waits, [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]);
        assert_eq!(exponential(30.0, 3600.0, 1), 30.0);
        assert_eq!(exponential(30.0, 3600.0, 8), 3600.0);
    }

    #[test]
    fn stays_within_bounds_for_every_retry() {
        for (first, max) in [(0.5, 10.0), (30.0, 3600.0), (1.0, 1.0), (5.0, 2.0), (1e300, 1e308)] {
            let mut last = 0.0;
            for retry in (0..200).chain([1000, u32::MAX - 1, u32::MAX]) {
                let w = exponential(first, max, retry);
                assert!(w.is_finite() && w >= 0.0 && w <= max, "{first} {max} {retry}: {w}");
                assert!(w >= last, "never shrinks: {first} {max} {retry}: {w} < {last}");
                last = w;
            }
            assert_eq!(exponential(first, max, u32::MAX), max);
        }
    }

    #[test]
    fn jitter_adds_at_most_half_and_at_most_the_cap() {
        for _ in 0..1000 {
            let j = jittered(4.0, 1.0);
            assert!((4.0..=5.0).contains(&j), "{j}");
            let j = jittered(1.0, 1.0);
            assert!((1.0..=1.5).contains(&j), "{j}");
        }
        assert_eq!(jittered(0.0, 1.0), 0.0);
        // Spread, not constant: 100 draws are not all equal.
        let draws: Vec<f64> = (0..100).map(|_| jittered(8.0, 1.0)).collect();
        assert!(draws.iter().any(|d| (d - draws[0]).abs() > 1e-9));
    }
}
