//! Rate limits for the log lines that connections cause, so that a flood of
//! connections cannot flood the log.
//!
//! Each kind of line (peers connecting and disconnecting, connections
//! refused, peers dropped) has a token bucket: [`BURST`] lines at once,
//! then [`PER_SECOND`] a second. Lines beyond that are counted, not logged;
//! once the bucket has a token again, one line says how many were
//! suppressed.

use std::time::{Duration, Instant};

use log::Level;

/// Lines of one kind logged at once before the limit applies.
pub const BURST: u32 = 100;
/// Lines of one kind logged per second once the burst is used up.
pub const PER_SECOND: u32 = 10;

/// A token bucket for one kind of log line.
#[derive(Debug)]
pub struct RateLimit {
    /// What the lines are about, for the summary ("connection messages").
    what: &'static str,
    level: Level,
    burst: u32,
    per_second: u32,
    /// Whole tokens available.
    tokens: u32,
    /// When the next token was due to start accruing.
    since: Instant,
    suppressed: u64,
}

impl RateLimit {
    /// A full bucket of `burst` tokens, refilled at `per_second`.
    pub fn new(
        what: &'static str,
        level: Level,
        burst: u32,
        per_second: u32,
        now: Instant,
    ) -> Self {
        Self {
            what,
            level,
            burst: burst.max(1),
            per_second: per_second.max(1),
            tokens: burst.max(1),
            since: now,
            suppressed: 0,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= self.burst {
            self.since = now;
            return;
        }
        let interval = self.interval();
        let elapsed = now.saturating_duration_since(self.since);
        let new = (elapsed.as_nanos() / interval.as_nanos()).min(u128::from(self.burst)) as u32;
        if new > 0 {
            self.tokens = (self.tokens + new).min(self.burst);
            self.since = if self.tokens >= self.burst {
                now
            } else {
                self.since + interval * new
            };
        }
    }

    /// Takes a token for one line: `Some(n)` if it may be logged, `n` lines
    /// having been suppressed before it (to be reported first); `None` if
    /// it is suppressed.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        self.refill(now);
        if self.tokens == 0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Logs `line` unless the limit suppresses it; reports earlier
    /// suppressed lines first.
    pub fn log(&mut self, now: Instant, line: std::fmt::Arguments<'_>) {
        if let Some(n) = self.take(now) {
            self.report(n);
            log::log!(self.level, "{line}");
        }
    }

    fn report(&self, n: u64) {
        if n > 0 {
            log::log!(
                self.level,
                "{n} {} suppressed (at most {} at once, then {} a second)",
                self.what,
                self.burst,
                self.per_second
            );
        }
    }

    /// When suppressed lines can be reported (a token is due), if any are
    /// waiting.
    pub fn next_report(&self) -> Option<Instant> {
        if self.suppressed == 0 {
            return None;
        }
        if self.tokens > 0 {
            return Some(self.since);
        }
        Some(self.since + self.interval())
    }

    /// Reports the suppressed lines if a token is there for the report.
    pub fn flush(&mut self, now: Instant) {
        if self.suppressed == 0 {
            return;
        }
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            let n = std::mem::take(&mut self.suppressed);
            self.report(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_rate_and_every_line_accounted_for() {
        let t0 = Instant::now();
        let mut r = RateLimit::new("lines", Level::Info, 5, 10, t0);
        let mut logged = 0;
        let mut reported = 0;
        // 1000 lines at once: the burst gets through.
        for _ in 0..1000 {
            if let Some(n) = r.take(t0) {
                logged += 1;
                reported += n;
            }
        }
        assert_eq!(logged, 5);
        assert_eq!(r.next_report(), Some(t0 + Duration::from_millis(100)));
        // A second later: the bucket is full again (5, not 10); the first
        // line says 995 were suppressed.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..1000 {
            if let Some(n) = r.take(t1) {
                logged += 1;
                reported += n;
            }
        }
        assert_eq!(logged, 10);
        assert_eq!(reported, 995);
        // The rest is reported by a flush once a token is due.
        r.flush(t1);
        assert!(r.next_report().is_some());
        let t2 = r.next_report().unwrap();
        assert_eq!(t2, t1 + Duration::from_millis(100));
        r.flush(t2);
        assert_eq!(r.next_report(), None);
        // Quiet for long: the bucket is full again, not fuller.
        let t3 = t2 + Duration::from_secs(3600);
        let n = (0..100).filter(|_| r.take(t3).is_some()).count();
        assert_eq!(n, 5);
    }
}
