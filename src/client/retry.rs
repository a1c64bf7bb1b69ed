//! When and how long to retry: exponential backoff with full jitter, honouring
//! `Retry-After`, within a bounded time.

use std::time::{Duration, Instant};

use rand::Rng;

/// How a request is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first delay's upper bound.
    pub base: Duration,
    /// The largest delay between two attempts.
    pub max_delay: Duration,
    /// How long one operation may keep failing before the client gives up.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(15),
            give_up_after: Duration::from_secs(300),
        }
    }
}

/// The retry state of one operation.
pub(crate) struct Attempts {
    policy: RetryPolicy,
    started: Instant,
    failures: u32,
}

impl Attempts {
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self { policy, started: Instant::now(), failures: 0 }
    }

    /// How many attempts failed so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt, or `None` when the time is up. A server's
    /// `Retry-After` is honoured, within the policy's longest delay.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.failures += 1;
        let exponent = self.failures.saturating_sub(1).min(16);
        let ceiling = self.policy.base.saturating_mul(1 << exponent).min(self.policy.max_delay);
        let jittered = ceiling.mul_f64(rand::rng().random_range(0.0..=1.0));
        let delay = retry_after.map_or(jittered, |r| r.min(self.policy.max_delay));
        (self.started.elapsed() + delay <= self.policy.give_up_after).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_but_stay_under_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            give_up_after: Duration::from_secs(3600),
        };
        let mut attempts = Attempts::new(policy);
        for failure in 1..40u32 {
            let delay = attempts.next_delay(None).unwrap();
            let ceiling = Duration::from_millis(100).saturating_mul(1 << (failure - 1).min(16)).min(policy.max_delay);
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
        }
        assert_eq!(attempts.failures(), 39);
    }

    #[test]
    fn retry_after_is_honoured_within_the_cap() {
        let mut attempts = Attempts::new(RetryPolicy::default());
        assert_eq!(attempts.next_delay(Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
        assert_eq!(attempts.next_delay(Some(Duration::from_secs(999))), Some(Duration::from_secs(15)));
    }

    #[test]
    fn the_client_gives_up_when_the_time_is_up() {
        let policy = RetryPolicy { give_up_after: Duration::ZERO, ..RetryPolicy::default() };
        assert_eq!(Attempts::new(policy).next_delay(Some(Duration::from_millis(1))), None);
    }
}
