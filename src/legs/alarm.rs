//! One timer re-armed in place, for the `select!` loops of legs and calls.

use std::pin::Pin;
use tokio::time::{Instant, Sleep};

/// A timer a loop waits on every turn for "the next deadline, if any".
///
/// A fresh `tokio::time::sleep_until` per turn inserts an entry into the
/// runtime's timer wheel and removes it again when the turn ends early (a
/// packet arrived first) — under the time driver's lock, twice per packet.
/// An `Alarm` keeps one entry and only moves it when the deadline changes.
#[derive(Debug)]
pub struct Alarm {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm::new()
    }
}

impl Alarm {
    /// An alarm not yet set.
    pub fn new() -> Alarm {
        // Far enough never to fire before it is set; `Instant::far_future` is private.
        let never = Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(never)),
            armed: None,
        }
    }

    /// Completes at `at` (at once if that has passed); never when `at` is `None`.
    pub async fn ring_at(&mut self, at: Option<Instant>) {
        let Some(at) = at else {
            return std::future::pending().await;
        };
        if self.armed != Some(at) {
            self.sleep.as_mut().reset(at);
            self.armed = Some(at);
        }
        self.sleep.as_mut().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn rings_at_the_deadline_and_follows_a_moved_one() {
        let mut alarm = Alarm::new();
        let t0 = Instant::now();
        alarm.ring_at(Some(t0 + Duration::from_millis(20))).await;
        assert!(t0.elapsed() >= Duration::from_millis(20));
        // A passed deadline rings at once; a later one waits for it.
        alarm.ring_at(Some(t0 + Duration::from_millis(20))).await;
        alarm.ring_at(Some(t0 + Duration::from_millis(50))).await;
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // None never rings.
        let never = tokio::time::timeout(Duration::from_millis(30), alarm.ring_at(None)).await;
        assert!(never.is_err());
    }

    #[tokio::test]
    async fn an_alarm_left_for_another_branch_can_be_moved_earlier() {
        let mut alarm = Alarm::new();
        let t0 = Instant::now();
        let far = tokio::time::timeout(
            Duration::from_millis(5),
            alarm.ring_at(Some(t0 + Duration::from_secs(3600))),
        )
        .await;
        assert!(far.is_err(), "the far deadline has not come");
        alarm.ring_at(Some(t0 + Duration::from_millis(10))).await;
        assert!(t0.elapsed() >= Duration::from_millis(10));
    }
}
