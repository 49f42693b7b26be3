//! The retry policy's parts: which failures are retried (refused, malformed, TLS), the wait between attempts,
//! and `Retry-After`.

use std::time::Duration;

use crate::error::Error;

/// How long connections refused on every attempt are retried before the call reports it.
pub const REFUSED_WINDOW: Duration = Duration::from_secs(10);
/// Longest wait between two attempts, unless the server asked for longer with `Retry-After`.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What went wrong in one attempt, and whether another attempt may help.
pub(crate) struct AttemptError {
    pub(crate) error: Error,
    pub(crate) retryable: bool,
    /// The connection was refused (nothing listens there).
    pub(crate) refused: bool,
    pub(crate) retry_after: Option<f64>,
}

/// The first error in `e`'s chain for which `found` gives a value. io::Error hides what it wraps from `source()`
/// (hyper-util wraps tokio-rustls's io::Error in another io::Error), so wrapped errors are opened too.
pub(crate) fn find_cause<T>(
    e: &reqwest::Error,
    found: impl Fn(&(dyn std::error::Error + 'static)) -> Option<T>,
) -> Option<T> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        let mut err = s;
        loop {
            if let Some(t) = found(err) {
                return Some(t);
            }
            match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
                Some(inner) => err = inner,
                None => break,
            }
        }
        source = s.source();
    }
    None
}

/// Whether a rustls error is anywhere in the error's chain.
pub(crate) fn is_tls_failure(e: &reqwest::Error) -> bool {
    find_cause(e, |c| c.is::<rustls::Error>().then_some(())).is_some()
}

/// Whether the connection was refused (nothing listens on that port).
pub(crate) fn is_refused(e: &reqwest::Error) -> bool {
    e.is_connect()
        && find_cause(e, |c| {
            c.downcast_ref::<std::io::Error>()
                .filter(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
                .map(|_| ())
        })
        .is_some()
}

/// Whether the response could not be parsed as HTTP (a head too large, too many headers, a bad status line).
pub(crate) fn is_malformed(e: &reqwest::Error) -> bool {
    find_cause(e, |c| {
        c.downcast_ref::<hyper::Error>().filter(|h| h.is_parse()).map(|_| ())
    })
    .is_some()
}

/// Wait before attempt `attempt + 1`: the server's `Retry-After` if given, else 0.5 s doubling up to 10 s;
/// plus up to 50% random jitter (at most 1 s) so that many clients do not retry in step.
pub(crate) fn backoff(attempt: u32, retry_after: Option<f64>) -> Duration {
    let base = retry_after.map_or_else(
        || crate::backoff::exponential(0.5, MAX_BACKOFF.as_secs_f64(), attempt.max(1)),
        |s| s.clamp(0.0, 3600.0),
    );
    Duration::from_secs_f64(crate::backoff::jittered(base, 1.0))
}

/// Parse a `Retry-After` header value: delay in seconds or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<f64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        #[allow(clippy::cast_precision_loss)]
        return Some(secs as f64);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .map_or(0.0, |d| d.as_secs_f64()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let w = backoff(attempt, None);
            let base = Duration::from_millis(500) * 2u32.pow((attempt - 1).min(8));
            let base = base.min(MAX_BACKOFF);
            assert!(w >= base && w <= base + Duration::from_secs(1), "{attempt}: {w:?}");
        }
        let w = backoff(1, Some(3.0));
        assert!(w >= Duration::from_secs(3) && w <= Duration::from_secs(4));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(7.0));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0.0));
        let future = httpdate::fmt_http_date(std::time::SystemTime::now() + std::time::Duration::from_secs(30));
        let got = parse_retry_after(&future).unwrap();
        assert!((28.0..=30.0).contains(&got), "{got}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
