//! One retry schedule for everything that tries again later: the send worker after a
//! transient engine error, the webhook dispatcher after a failed delivery.
//!
//! Both used to compute "exponential from a base, ±20% jitter, capped" each in its own way
//! (one capped before the jitter, so its "longest delay" could be exceeded by a fifth);
//! here it is once, pure, with the randomness passed in so tests can pin it.
//! [`due_in`] is the other half every retry loop shares: how long to sleep until the next
//! stored due time.

use crate::time::Timestamp;
use std::time::Duration;

/// How far a delay strays from its nominal value either way (±20%, as svix does): retries
/// of many failures that happened together spread out instead of arriving together.
pub const JITTER: f64 = 0.2;

/// The shortest wait before looking at a due time again: a due time in the past (or a
/// clock a little ahead) must not turn a retry loop into a busy loop.
pub const MIN_WAIT: Duration = Duration::from_millis(5);

/// The delay before retry number `attempt` (1 for the first retry): `base` doubled per
/// attempt, times a jitter factor in `[1 - JITTER, 1 + JITTER]`, never above `max`.
///
/// `jitter` is a sample in `[0, 1]` (`rand::random()` in production): 0 gives the
/// shortest delay, 1 the longest. The cap applies after the jitter, so `max` is the true
/// longest delay, as the configuration documents it.
pub fn delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    // 2^30 × any sane base is already far past any cap; bounding the exponent keeps the
    // shift defined.
    let exp = attempt.saturating_sub(1).min(30);
    let nominal = base.saturating_mul(1u32 << exp);
    let factor = 1.0 - JITTER + 2.0 * JITTER * jitter.clamp(0.0, 1.0);
    // Float maths on a value that is then capped: `min` bounds it before the conversion.
    let secs = (nominal.as_secs_f64() * factor).min(max.as_secs_f64());
    Duration::try_from_secs_f64(secs).unwrap_or(max).min(max)
}

/// A computed delay, lengthened to what the other side asked for (an HTTP `Retry-After`)
/// when it asked for longer, but never beyond `most`: a receiver cannot park a retry for
/// days.
pub fn at_least_asked(delay: Duration, asked: Option<Duration>, most: Duration) -> Duration {
    match asked {
        Some(asked) => delay.max(asked.min(most)),
        None => delay,
    }
}

/// How long to sleep until `next` is due, seen at `now`: never less than [`MIN_WAIT`].
pub fn due_in(next: Timestamp, now: Timestamp) -> Duration {
    (next - now)
        .to_std()
        .unwrap_or(Duration::ZERO)
        .max(MIN_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_per_attempt_from_the_base() {
        let max = Duration::from_secs(3600);
        // The middle of the jitter range is the nominal delay.
        assert_eq!(delay(1, S, max, 0.5), S);
        assert_eq!(delay(2, S, max, 0.5), 2 * S);
        assert_eq!(delay(3, S, max, 0.5), 4 * S);
        assert_eq!(delay(5, S, max, 0.5), 16 * S);
        // Attempt 0 (nothing failed yet) is treated as the first retry.
        assert_eq!(delay(0, S, max, 0.5), S);
    }

    #[test]
    fn jitter_stays_within_a_fifth_either_way() {
        let max = Duration::from_secs(3600);
        assert_eq!(delay(1, S, max, 0.0), Duration::from_millis(800));
        assert_eq!(delay(1, S, max, 1.0), Duration::from_millis(1200));
        assert_eq!(delay(2, S, max, 0.0), Duration::from_millis(1600));
        assert_eq!(delay(2, S, max, 1.0), Duration::from_millis(2400));
        for i in 0..=100 {
            let d = delay(3, S, max, f64::from(i) / 100.0);
            assert!((3200..=4800).contains(&d.as_millis()), "{d:?}");
        }
        // Out-of-range samples are clamped, never a negative or a runaway delay.
        assert_eq!(delay(1, S, max, -3.0), Duration::from_millis(800));
        assert_eq!(delay(1, S, max, 7.0), Duration::from_millis(1200));
    }

    #[test]
    fn caps_after_the_jitter_and_never_overflows() {
        let max = Duration::from_secs(300);
        assert_eq!(delay(10, S, max, 0.5), max, "2^9 s is past the cap");
        assert_eq!(
            delay(9, S, max, 1.0),
            max,
            "jitter cannot lift a delay over the cap"
        );
        // Just under the cap, the jitter still only shortens or caps.
        assert_eq!(
            delay(9, Duration::from_secs(1), Duration::from_secs(256), 0.0).as_secs(),
            204
        );
        for attempt in [31, 64, 1_000, u32::MAX] {
            assert_eq!(delay(attempt, S, max, 1.0), max);
            assert_eq!(
                delay(attempt, Duration::MAX, Duration::MAX, 1.0),
                Duration::MAX
            );
        }
    }

    #[test]
    fn retry_after_lengthens_but_is_capped() {
        let most = Duration::from_secs(3600);
        assert_eq!(at_least_asked(S, None, most), S);
        assert_eq!(at_least_asked(S, Some(30 * S), most), 30 * S);
        // Asking for less than the schedule does not shorten it.
        assert_eq!(at_least_asked(10 * S, Some(S), most), 10 * S);
        assert_eq!(at_least_asked(S, Some(1_000_000 * S), most), most);
    }

    #[test]
    fn due_in_counts_down_and_never_busy_loops() {
        let now = from_millis(1_000_000);
        assert_eq!(
            due_in(from_millis(1_002_500), now),
            Duration::from_millis(2500)
        );
        assert_eq!(due_in(now, now), MIN_WAIT);
        assert_eq!(due_in(from_millis(1), now), MIN_WAIT, "already due");
    }
}
