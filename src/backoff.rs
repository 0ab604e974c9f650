//! Exponential backoff between retries, shared by every component that
//! retries (sinks, feed fetches, broker reconnects): doubling from a first
//! wait up to a cap, reset by a success.

use std::time::Duration;

/// Doubling waits from `first` up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first wait is `first` and whose waits never exceed `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        let first = first.min(max);
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The wait before the next attempt; the one after it doubles.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Up to a tenth of `interval_secs`, pseudo-random (from the clock's
/// nanoseconds): added to a schedule so that many daemons polling the same
/// server do not all ask at once.
pub fn jitter_secs(interval_secs: i64) -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    i64::from(nanos) % (interval_secs / 10 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let waits: Vec<Duration> = (0..5).map(|_| b.next_wait()).collect();
        assert_eq!(waits, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.reset();
        assert_eq!(b.next_wait(), ms(100));
        assert_eq!(Backoff::new(ms(900), ms(50)).next_wait(), ms(50));
        for interval in [0, 9, 10, 3600] {
            assert!((0..=interval / 10).contains(&jitter_secs(interval)));
        }
    }
}
