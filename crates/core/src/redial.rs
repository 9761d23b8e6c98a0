//! When a child dials its parent again: soon after a link was lost, minutes apart
//! after a refusal. The runtime's dialer and the simulator both follow it, so a
//! simulated federation redials as a real one does.

use cascade_protocol::limits::{
    REDIAL_MAX_MS, REDIAL_MIN_MS, REDIAL_REFUSED_MAX_MS, REDIAL_REFUSED_MS, REDIAL_TURNED_AWAY_MAX_MS,
    REDIAL_TURNED_AWAY_MS,
};

/// How a link attempt ended, as far as redialing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkEnd {
    /// The parent spoke (sent a frame) before the link ended: it was working.
    Heard,
    /// The parent could not be reached, or the link ended before it spoke.
    Lost,
    /// The parent (or this node's own core) refused the link: revoked, blocked,
    /// not the parent, quarantined, a certificate it does not accept.
    Refused,
    /// The parent turned the connection away before any cryptography (its
    /// handshake slots were full, or this address failed too often): it may pass
    /// soon, but not every two seconds forever.
    TurnedAway,
}

/// The redial schedule of one parent link.
#[derive(Clone, Debug, Default)]
pub struct Redial {
    lost: u32,
    refused: u32,
    turned_away: u32,
}

impl Redial {
    /// A fresh schedule.
    pub fn new() -> Redial {
        Redial::default()
    }

    /// Records how an attempt ended; returns how long to wait before the next (ms).
    /// Only a parent that spoke resets the schedule: a connect that succeeds and
    /// is then refused does not.
    pub fn after(&mut self, end: LinkEnd) -> u64 {
        match end {
            LinkEnd::Heard => {
                *self = Redial::default();
                REDIAL_MIN_MS
            }
            LinkEnd::Lost => {
                self.lost = self.lost.saturating_add(1);
                doubled(REDIAL_MIN_MS, self.lost, REDIAL_MAX_MS)
            }
            LinkEnd::Refused => {
                self.refused = self.refused.saturating_add(1);
                doubled(REDIAL_REFUSED_MS, self.refused, REDIAL_REFUSED_MAX_MS)
            }
            LinkEnd::TurnedAway => {
                self.turned_away = self.turned_away.saturating_add(1);
                doubled(REDIAL_TURNED_AWAY_MS, self.turned_away, REDIAL_TURNED_AWAY_MAX_MS)
            }
        }
    }

    /// Whether the last attempts were refused (the next is minutes away).
    pub fn is_refused(&self) -> bool {
        self.refused > 0
    }
}

/// `base` doubled `n - 1` times, at most `max`.
fn doubled(base: u64, n: u32, max: u64) -> u64 {
    base.saturating_mul(1u64 << n.saturating_sub(1).min(32)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_back_off_to_minutes_and_only_a_parent_that_spoke_resets() {
        let mut r = Redial::new();
        assert_eq!(r.after(LinkEnd::Lost), REDIAL_MIN_MS);
        assert_eq!(r.after(LinkEnd::Lost), 2 * REDIAL_MIN_MS);
        for _ in 0..20 {
            r.after(LinkEnd::Lost);
        }
        assert_eq!(r.after(LinkEnd::Lost), REDIAL_MAX_MS);
        assert_eq!(r.after(LinkEnd::Refused), REDIAL_REFUSED_MS);
        assert_eq!(r.after(LinkEnd::Refused), 2 * REDIAL_REFUSED_MS);
        // Turned away before cryptography: a second, doubling to a minute.
        let mut t = Redial::new();
        assert_eq!(t.after(LinkEnd::TurnedAway), REDIAL_TURNED_AWAY_MS);
        for _ in 0..20 {
            t.after(LinkEnd::TurnedAway);
        }
        assert_eq!(t.after(LinkEnd::TurnedAway), REDIAL_TURNED_AWAY_MAX_MS);
        // A reachable parent that keeps refusing: an hour holds a handful of dials.
        let mut r = Redial::new();
        let (mut t, mut dials) = (0, 0);
        while t < 3_600_000 {
            t += r.after(LinkEnd::Refused);
            dials += 1;
        }
        assert!(dials <= 12, "{dials} dials an hour");
        assert!(r.is_refused());
        assert_eq!(r.after(LinkEnd::Heard), REDIAL_MIN_MS);
        assert!(!r.is_refused());
        assert_eq!(r.after(LinkEnd::Refused), REDIAL_REFUSED_MS, "a parent that spoke starts over");
    }
}
