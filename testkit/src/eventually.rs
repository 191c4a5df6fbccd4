//! Polling assertions: tests wait for a condition instead of sleeping, and
//! how long they wait comes from one environment variable so that a slow
//! machine can be given more patience without editing tests.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long `assert_eventually!` and [`eventually`] wait, in milliseconds.
pub const PATIENCE_ENV: &str = "STRAND_TEST_PATIENCE_MS";

/// Ten seconds: a proxy starts and a route settles in well under a second on
/// an idle machine, so this leaves a wide margin for a loaded 2-core CI box
/// while a broken test still fails promptly.
const DEFAULT_PATIENCE: Duration = Duration::from_millis(10_000);

/// The patience configured by `STRAND_TEST_PATIENCE_MS` (default 10 s).
///
/// # Panics
///
/// When the variable is set but not a number of milliseconds.
pub fn patience() -> Duration {
    let value = std::env::var(PATIENCE_ENV).ok();
    parse_patience(value.as_deref()).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_patience(value: Option<&str>) -> Result<Duration, String> {
    match value {
        None => Ok(DEFAULT_PATIENCE),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|e| format!("{PATIENCE_ENV}={v:?} is not valid: {e}")),
    }
}

/// The pause before poll number `attempt + 1`.
///
/// Starts at 5 ms because most conditions turn true within milliseconds, and
/// doubles up to 100 ms so a slow condition does not keep a core busy.
pub fn poll_interval(attempt: u32) -> Duration {
    Duration::from_millis((5u64 << attempt.min(5)).min(100))
}

/// Panics with `message` unless `cond` becomes true within [`patience`],
/// re-evaluating it with a short backoff (a blocking sleep: in async code use
/// [`eventually`], which yields to the runtime instead).
///
/// ```ignore
/// assert_eventually!(pod_is_ready(&pod), "pod {} never became ready", pod.name());
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, "{}", stringify!($cond))
    };
    ($cond:expr, $($arg:tt)+) => {{
        let patience = $crate::patience();
        let start = ::std::time::Instant::now();
        let mut attempt = 0u32;
        while !($cond) {
            if start.elapsed() >= patience {
                panic!(
                    "not true after {:?} (`{}`): {}",
                    patience,
                    stringify!($cond),
                    format_args!($($arg)+)
                );
            }
            ::std::thread::sleep($crate::poll_interval(attempt));
            attempt = attempt.saturating_add(1);
        }
    }};
}

/// Waits until `check()` resolves to `true`, panicking with `what` when that
/// does not happen within [`patience`]. Needs a tokio runtime with timers.
pub async fn eventually<F, Fut>(what: impl Display, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_ok(what, || {
        let fut = check();
        async move {
            if fut.await {
                Ok(())
            } else {
                Err("the condition is still false")
            }
        }
    })
    .await;
}

/// Waits until `check()` resolves to `Ok(value)` and returns the value,
/// panicking with `what` and the last error when that does not happen within
/// [`patience`]. Needs a tokio runtime with timers.
pub async fn eventually_ok<T, E, F, Fut>(what: impl Display, mut check: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let patience = patience();
    let start = Instant::now();
    let mut attempt = 0u32;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(e) if start.elapsed() >= patience => {
                panic!("{what}: not true after {patience:?}; last error: {e}")
            }
            Err(_) => {}
        }
        tokio::time::sleep(poll_interval(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn patience_default_and_override() {
        assert_eq!(parse_patience(None), Ok(Duration::from_secs(10)));
        assert_eq!(parse_patience(Some("250")), Ok(Duration::from_millis(250)));
        let err = parse_patience(Some("soon")).expect_err("not a number");
        assert!(
            err.starts_with("STRAND_TEST_PATIENCE_MS=\"soon\" is not valid"),
            "{err}"
        );
    }

    #[test]
    fn poll_interval_backs_off_to_a_cap() {
        let steps: Vec<u64> = (0..8)
            .map(|a| poll_interval(a).as_millis() as u64)
            .collect();
        assert_eq!(steps, [5, 10, 20, 40, 80, 100, 100, 100]);
    }

    #[test]
    fn assert_eventually_polls_until_true() {
        let calls = AtomicU32::new(0);
        assert_eventually!(
            calls.fetch_add(1, Ordering::SeqCst) >= 3,
            "never counted to 3"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn eventually_ok_returns_the_value() {
        let calls = AtomicU32::new(0);
        let got = eventually_ok("counts to 2", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n >= 2 {
                Ok(n)
            } else {
                Err(format!("only {n}"))
            }
        })
        .await;
        assert_eq!(got, 2);
        eventually("counter passed 2", || async {
            calls.load(Ordering::SeqCst) > 2
        })
        .await;
    }
}
