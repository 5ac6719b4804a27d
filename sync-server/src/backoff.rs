//! When the sync client tries again after a connection ends: exponential backoff that only a
//! healthy connection resets.
//!
//! A successful handshake proves little: a relay that refuses the client right after it (a
//! document limit, a change it will not take, a token revoked between the upgrade and the first
//! message) would otherwise see the client back at the shortest delay, dozens of times a second.
//! So the delay doubles after every connection that ended sooner than `healthy_after`, whether
//! or not it got as far as the handshake, and returns to the shortest only after a connection
//! that stayed up that long.

use std::time::Duration;

/// The reconnect delay, as a state machine over how long each connection lasted.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    healthy_after: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `min` doubling to `max`; a connection up for `healthy_after` resets them.
    pub(crate) fn new(min: Duration, max: Duration, healthy_after: Duration) -> Self {
        let min = min.min(max);
        Backoff { min, max, healthy_after, next: min }
    }

    /// An attempt ended, after the connection was up for `up` (`None`: it never connected).
    /// Returns how long to wait before the next attempt (the caller adds jitter).
    pub(crate) fn ended(&mut self, up: Option<Duration>) -> Duration {
        if up.is_some_and(|up| up >= self.healthy_after) {
            self.next = self.min;
        }
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn backoff() -> Backoff {
        Backoff::new(100 * MS, 1_000 * MS, 30_000 * MS)
    }

    #[test]
    fn failed_attempts_double_the_delay_up_to_the_longest() {
        let mut b = backoff();
        let delays: Vec<_> = (0..6).map(|_| b.ended(None)).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1_000 * MS, 1_000 * MS]);
    }

    #[test]
    fn a_connection_refused_soon_after_its_handshake_does_not_reset_the_delay() {
        // Regression: a successful handshake used to reset the delay, so a relay that refused
        // the client right after it saw 70 to 90 reconnects in 7 seconds.
        let mut b = backoff();
        let delays: Vec<_> = (0..5).map(|_| b.ended(Some(50 * MS))).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1_000 * MS]);
        assert_eq!(b.ended(Some(29_999 * MS)), 1_000 * MS, "just short of healthy");
    }

    #[test]
    fn a_connection_that_stayed_up_resets_the_delay() {
        let mut b = backoff();
        for _ in 0..4 {
            b.ended(None);
        }
        assert_eq!(b.ended(Some(30_000 * MS)), 100 * MS);
        assert_eq!(b.ended(None), 200 * MS, "and grows again from there");
    }

    #[test]
    fn a_shortest_delay_above_the_longest_is_the_longest() {
        let mut b = Backoff::new(5_000 * MS, 1_000 * MS, 30_000 * MS);
        assert_eq!(b.ended(None), 1_000 * MS);
        assert_eq!(b.ended(Some(60_000 * MS)), 1_000 * MS);
    }
}
