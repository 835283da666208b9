//! Simulated time: real elapsed time scaled, plus manual advances.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};

#[derive(Debug)]
pub(crate) struct Clock {
    real_start: Instant,
    sim_start: Timestamp,
    scale: f64,
    manual: SignedDuration,
}

impl Clock {
    pub(crate) fn new(scale: f64) -> Self {
        // Whole seconds keep timestamps in responses and audits short and readable.
        let now = Timestamp::now().as_second();
        Self {
            real_start: Instant::now(),
            sim_start: Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH),
            scale: if scale.is_finite() && scale >= 0.0 {
                scale
            } else {
                1.0
            },
            manual: SignedDuration::ZERO,
        }
    }

    pub(crate) fn now(&self) -> Timestamp {
        let real = self.real_start.elapsed().as_secs_f64() * self.scale;
        let scaled = SignedDuration::try_from_secs_f64(real).unwrap_or(SignedDuration::ZERO);
        let offset = scaled.saturating_add(self.manual);
        self.sim_start.checked_add(offset).unwrap_or(Timestamp::MAX)
    }

    /// The real time that `sim` of simulated time takes at this clock's pace (none when the clock is frozen).
    pub(crate) fn real(&self, sim: Duration) -> Duration {
        if self.scale > 0.0 {
            sim.div_f64(self.scale)
        } else {
            Duration::ZERO
        }
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        let d = SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX);
        self.manual = self.manual.saturating_add(d);
    }
}

/// Seconds (possibly fractional) as a signed duration, saturating instead of failing.
pub(crate) fn secs(s: f64) -> SignedDuration {
    SignedDuration::try_from_secs_f64(s).unwrap_or(if s < 0.0 {
        SignedDuration::MIN
    } else {
        SignedDuration::MAX
    })
}

pub(crate) fn add(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(if d.is_negative() {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}
