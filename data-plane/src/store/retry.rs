//! Exponential backoff with jitter, shared by the background tasks that talk to Redis.

use std::time::Duration;

/// Doubles from `base` up to `max`; each delay is drawn from [d/2, d] so that many nodes
/// reconnecting after the same outage do not hit Redis in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            current: base,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        // A v4 uuid is 122 random bits from the OS RNG: plenty for jitter, no extra dependency.
        let permille = (uuid::Uuid::new_v4().as_u128() % 1001) as u32;
        d / 2 + (d / 2) * permille / 1000
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
        assert!(b.next_delay() >= Duration::from_millis(2500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
