//! When to announce a VIP group: a per-group state machine.
//!
//! The controller feeds it one health observation per tick and acts (adds or
//! removes the VIP addresses) only when it reports a change. It is pure logic
//! over caller-supplied instants, so it is tested without root or sleeping.
//!
//! Rules:
//! - announce after `rise` consecutive healthy observations;
//! - withdraw after `fall` consecutive unhealthy ones;
//! - a state must have lasted `min_hold` before health may change it, so a
//!   flapping backend cannot flap the route (upstream route-flap damping
//!   would suppress the prefix); while a change is held back, `why()` is `HoldTime`;
//! - maintenance and shutdown withdraw at once, hold time or not: an operator
//!   draining a PoP must not wait for a timer;
//! - after maintenance, announcing again needs `rise` fresh healthy
//!   observations, as at startup.
//!
//! The initial withdrawn state is not held: a freshly started controller
//! announces as soon as `rise` checks pass, not `min_hold` later.

use std::fmt;
use std::time::{Duration, Instant};

/// Thresholds for one VIP group. `rise` and `fall` of 0 act as 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnouncePolicy {
    /// Consecutive healthy observations needed to announce.
    pub rise: u32,
    /// Consecutive unhealthy observations needed to withdraw.
    pub fall: u32,
    /// Minimum time a state lasts before health may change it.
    pub min_hold: Duration,
}

/// Why an [`Announcer`] is in its current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Announced: health checks pass.
    Healthy,
    /// Withdrawn: health checks fail; holds the latest failure's reason.
    Unhealthy(String),
    /// Withdrawn by the operator.
    Maintenance,
    /// Health asks for a change, but the current state is younger than
    /// `min_hold`.
    HoldTime,
    /// Withdrawn, no health verdict yet: just created, or just out of
    /// maintenance, and waiting for `rise` healthy observations.
    NotStarted,
    /// Withdrawn for good: the controller is stopping.
    ShuttingDown,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Healthy => f.write_str("healthy"),
            Why::Unhealthy(reason) if reason.is_empty() => f.write_str("unhealthy"),
            Why::Unhealthy(reason) => write!(f, "unhealthy: {reason}"),
            Why::Maintenance => f.write_str("in maintenance"),
            Why::HoldTime => f.write_str("change held until min hold time passes"),
            Why::NotStarted => f.write_str("awaiting health checks"),
            Why::ShuttingDown => f.write_str("shutting down"),
        }
    }
}

/// `why()` returns a reference; this is what it points at while held.
static HOLD_TIME: Why = Why::HoldTime;

/// Announce state of one VIP group. Starts withdrawn.
#[derive(Debug, Clone)]
pub struct Announcer {
    policy: AnnouncePolicy,
    announced: bool,
    /// When the current announce state began.
    since: Instant,
    /// Why the current state holds (never `HoldTime`; see `held`).
    reason: Why,
    /// Health asks for a change that the hold time is blocking.
    held: bool,
    /// Still in the state `new` created: not subject to the hold time.
    initial: bool,
    maintenance: bool,
    shutting_down: bool,
    /// Consecutive healthy observations (0 after any unhealthy one).
    healthy_run: u32,
    /// Consecutive unhealthy observations (0 after any healthy one).
    unhealthy_run: u32,
}

impl Announcer {
    /// A reload's new rise, fall and hold, for the runs and hold under way.
    pub fn set_policy(&mut self, policy: AnnouncePolicy) {
        self.policy = policy;
    }

    pub fn new(policy: AnnouncePolicy) -> Self {
        Self {
            policy,
            announced: false,
            since: Instant::now(),
            reason: Why::NotStarted,
            held: false,
            initial: true,
            maintenance: false,
            shutting_down: false,
            healthy_run: 0,
            unhealthy_run: 0,
        }
    }

    /// A group found announced at start-up (its address already on the interface,
    /// left by a previous controller) and healthy now: it stays announced, as if it
    /// had just risen, instead of being withdrawn and announced again.
    pub fn adopted(policy: AnnouncePolicy) -> Self {
        let mut a = Self::new(policy);
        a.announced = true;
        a.reason = Why::Healthy;
        a.healthy_run = policy.rise.max(1);
        a
    }

    /// Feed one health observation at `now`; `reason` says why it failed
    /// (ignored when healthy). Returns `Some(announced)` when the announce
    /// state changes, `None` otherwise.
    pub fn observe(&mut self, healthy: bool, reason: &str, now: Instant) -> Option<bool> {
        if self.maintenance || self.shutting_down {
            // Counting now would let a group announce the instant maintenance
            // ends; leaving it restarts the count instead.
            return None;
        }
        if healthy {
            self.healthy_run = self.healthy_run.saturating_add(1);
            self.unhealthy_run = 0;
        } else {
            self.unhealthy_run = self.unhealthy_run.saturating_add(1);
            self.healthy_run = 0;
        }

        let want = if self.announced { self.unhealthy_run < self.policy.fall.max(1) } else { self.healthy_run >= self.policy.rise.max(1) };

        if want == self.announced {
            self.held = false;
            if !self.announced && !healthy {
                // Still withdrawn: the latest failure is the current reason.
                self.reason = Why::Unhealthy(reason.to_string());
            }
            return None;
        }

        let hold_over = self.initial || now.saturating_duration_since(self.since) >= self.policy.min_hold;
        if !hold_over {
            self.held = true;
            return None;
        }

        let reason = if want { Why::Healthy } else { Why::Unhealthy(reason.to_string()) };
        self.change(want, reason, now)
    }

    /// Enter or leave maintenance at `now`. Entering withdraws at once (the
    /// hold time does not apply); leaving does not announce: that takes `rise`
    /// healthy observations from then on. Returns `Some(false)` if this
    /// withdrew the group.
    pub fn set_maintenance(&mut self, on: bool, now: Instant) -> Option<bool> {
        if on == self.maintenance || self.shutting_down {
            return None;
        }
        self.maintenance = on;
        self.healthy_run = 0;
        self.unhealthy_run = 0;
        self.held = false;
        if on {
            if self.announced {
                return self.change(false, Why::Maintenance, now);
            }
            self.reason = Why::Maintenance;
        } else {
            self.reason = Why::NotStarted;
        }
        None
    }

    /// Withdraw at once and for good, hold time or not; later observations
    /// and maintenance changes are ignored. Returns `Some(false)` if this
    /// withdrew the group.
    pub fn shutdown(&mut self, now: Instant) -> Option<bool> {
        if self.shutting_down {
            return None;
        }
        self.shutting_down = true;
        self.held = false;
        if self.announced {
            return self.change(false, Why::ShuttingDown, now);
        }
        self.reason = Why::ShuttingDown;
        None
    }

    pub fn announced(&self) -> bool {
        self.announced
    }

    /// When the current announce state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Why the group is in its current state, or `HoldTime` while health
    /// asks for a change that the hold time blocks.
    pub fn why(&self) -> &Why {
        if self.held { &HOLD_TIME } else { &self.reason }
    }

    fn change(&mut self, announced: bool, reason: Why, now: Instant) -> Option<bool> {
        self.announced = announced;
        self.since = now;
        self.reason = reason;
        self.held = false;
        self.initial = false;
        Some(announced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rise: u32, fall: u32, hold_secs: u64) -> AnnouncePolicy {
        AnnouncePolicy { rise, fall, min_hold: Duration::from_secs(hold_secs) }
    }

    /// An announcer plus a clock that the test moves by hand.
    struct Rig {
        a: Announcer,
        t0: Instant,
    }

    impl Rig {
        fn new(p: AnnouncePolicy) -> Self {
            let a = Announcer::new(p);
            Rig { a, t0: Instant::now() }
        }
        fn at(&self, secs: u64) -> Instant {
            self.t0 + Duration::from_secs(secs)
        }
        fn ok(&mut self, secs: u64) -> Option<bool> {
            let now = self.at(secs);
            self.a.observe(true, "", now)
        }
        fn bad(&mut self, secs: u64) -> Option<bool> {
            let now = self.at(secs);
            self.a.observe(false, "connect refused", now)
        }
    }

    #[test]
    fn starts_withdrawn_and_not_started() {
        let a = Announcer::new(policy(3, 3, 10));
        assert!(!a.announced());
        assert_eq!(a.why(), &Why::NotStarted);
    }

    #[test]
    fn rise_then_fall_counting() {
        let mut r = Rig::new(policy(3, 2, 0));
        assert_eq!(r.ok(1), None);
        assert_eq!(r.ok(2), None);
        assert_eq!(r.ok(3), Some(true));
        assert!(r.a.announced());
        assert_eq!(r.a.since(), r.at(3));
        assert_eq!(r.a.why(), &Why::Healthy);
        assert_eq!(r.ok(4), None, "already announced");

        assert_eq!(r.bad(5), None);
        assert_eq!(r.a.why(), &Why::Healthy, "one failure is below fall");
        assert_eq!(r.bad(6), Some(false));
        assert!(!r.a.announced());
        assert_eq!(r.a.since(), r.at(6));
        assert_eq!(r.a.why(), &Why::Unhealthy("connect refused".into()));
        assert_eq!(r.a.why().to_string(), "unhealthy: connect refused");
    }

    #[test]
    fn a_break_in_the_run_restarts_the_count() {
        let mut r = Rig::new(policy(3, 3, 0));
        r.ok(1);
        r.ok(2);
        assert_eq!(r.bad(3), None);
        assert_eq!(r.ok(4), None);
        assert_eq!(r.ok(5), None);
        assert_eq!(r.ok(6), Some(true));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut r = Rig::new(policy(0, 0, 0));
        assert_eq!(r.ok(1), Some(true));
        assert_eq!(r.bad(2), Some(false));
    }

    #[test]
    fn alternating_health_never_changes_state() {
        for (rise, fall) in [(2, 2), (2, 3), (3, 2), (5, 5)] {
            // From withdrawn.
            let mut r = Rig::new(policy(rise, fall, 0));
            for i in 0..100 {
                let change = if i % 2 == 0 { r.ok(i) } else { r.bad(i) };
                assert_eq!(change, None, "rise {rise} fall {fall} step {i}");
            }
            assert!(!r.a.announced());

            // From announced.
            let mut r = Rig::new(policy(rise, fall, 0));
            for i in 0..rise as u64 {
                r.ok(i);
            }
            assert!(r.a.announced());
            for i in 100..200 {
                let change = if i % 2 == 0 { r.bad(i) } else { r.ok(i) };
                assert_eq!(change, None, "rise {rise} fall {fall} step {i}");
            }
            assert!(r.a.announced());
        }
    }

    #[test]
    fn hold_time_blocks_a_flip_until_it_passes() {
        let mut r = Rig::new(policy(1, 1, 10));
        // The initial state is not held: announce straight away.
        assert_eq!(r.ok(0), Some(true));

        assert_eq!(r.bad(1), None);
        assert_eq!(r.a.why(), &Why::HoldTime);
        assert!(r.a.announced());
        assert_eq!(r.bad(9), None);
        assert_eq!(r.a.why(), &Why::HoldTime);
        assert_eq!(r.bad(10), Some(false), "10 s after announcing");
        assert_eq!(r.a.since(), r.at(10));

        // And back: withdrawn at 10, so announcing waits until 20.
        assert_eq!(r.ok(11), None);
        assert_eq!(r.a.why(), &Why::HoldTime);
        assert_eq!(r.ok(19), None);
        assert_eq!(r.ok(20), Some(true));
    }

    #[test]
    fn hold_is_dropped_when_health_comes_back() {
        let mut r = Rig::new(policy(1, 2, 10));
        r.ok(0);
        r.bad(1);
        assert_eq!(r.bad(2), None);
        assert_eq!(r.a.why(), &Why::HoldTime);
        // Healthy again: nothing to hold any more.
        assert_eq!(r.ok(3), None);
        assert_eq!(r.a.why(), &Why::Healthy);
        // The failure run restarted, so one failure after the hold is not
        // enough to withdraw.
        assert_eq!(r.bad(30), None);
        assert_eq!(r.bad(31), Some(false));
    }

    #[test]
    fn withdrawn_reason_follows_the_latest_failure() {
        let mut r = Rig::new(policy(2, 1, 0));
        let now = r.at(1);
        r.a.observe(false, "timeout", now);
        assert_eq!(r.a.why(), &Why::Unhealthy("timeout".into()));
        let now = r.at(2);
        r.a.observe(false, "HTTP 503", now);
        assert_eq!(r.a.why(), &Why::Unhealthy("HTTP 503".into()));
    }

    #[test]
    fn maintenance_withdraws_at_once_despite_hold() {
        let mut r = Rig::new(policy(1, 1, 60));
        assert_eq!(r.ok(0), Some(true));
        let now = r.at(1);
        assert_eq!(r.a.set_maintenance(true, now), Some(false));
        assert!(!r.a.announced());
        assert_eq!(r.a.since(), r.at(1));
        assert_eq!(r.a.why(), &Why::Maintenance);
        // Entering again changes nothing.
        assert_eq!(r.a.set_maintenance(true, now), None);
    }

    #[test]
    fn maintenance_blocks_announcing() {
        let mut r = Rig::new(policy(2, 2, 0));
        let now = r.at(0);
        assert_eq!(r.a.set_maintenance(true, now), None, "already withdrawn");
        assert_eq!(r.a.why(), &Why::Maintenance);
        for i in 1..20 {
            assert_eq!(r.ok(i), None);
        }
        assert!(!r.a.announced());
        assert_eq!(r.a.why(), &Why::Maintenance);
    }

    #[test]
    fn leaving_maintenance_needs_rise_healthy_observations() {
        let mut r = Rig::new(policy(3, 2, 0));
        r.ok(0);
        r.ok(1);
        r.ok(2);
        assert!(r.a.announced());
        let now = r.at(3);
        r.a.set_maintenance(true, now);
        r.ok(4);
        r.ok(5);
        r.ok(6);
        let now = r.at(7);
        assert_eq!(r.a.set_maintenance(false, now), None, "leaving does not announce");
        assert!(!r.a.announced());
        assert_eq!(r.a.why(), &Why::NotStarted);
        assert_eq!(r.ok(8), None);
        assert_eq!(r.ok(9), None);
        assert_eq!(r.ok(10), Some(true));
    }

    #[test]
    fn leaving_maintenance_still_honours_the_hold() {
        let mut r = Rig::new(policy(1, 1, 30));
        r.ok(0);
        let now = r.at(10);
        assert_eq!(r.a.set_maintenance(true, now), Some(false));
        let now = r.at(15);
        r.a.set_maintenance(false, now);
        // Withdrawn since 10: a flip back must wait until 40.
        assert_eq!(r.ok(16), None);
        assert_eq!(r.a.why(), &Why::HoldTime);
        assert_eq!(r.ok(40), Some(true));
    }

    #[test]
    fn shutdown_withdraws_at_once_and_for_good() {
        let mut r = Rig::new(policy(1, 1, 60));
        r.ok(0);
        let now = r.at(1);
        assert_eq!(r.a.shutdown(now), Some(false));
        assert_eq!(r.a.why(), &Why::ShuttingDown);
        assert_eq!(r.a.shutdown(now), None);
        assert_eq!(r.ok(100), None);
        let now = r.at(101);
        assert_eq!(r.a.set_maintenance(true, now), None);
        assert!(!r.a.announced());
        assert_eq!(r.a.why(), &Why::ShuttingDown);
    }

    #[test]
    fn why_displays_short_reasons() {
        assert_eq!(Why::Healthy.to_string(), "healthy");
        assert_eq!(Why::Unhealthy(String::new()).to_string(), "unhealthy");
        assert_eq!(Why::Maintenance.to_string(), "in maintenance");
        assert_eq!(Why::NotStarted.to_string(), "awaiting health checks");
        assert!(Why::HoldTime.to_string().contains("hold"));
        assert_eq!(Why::ShuttingDown.to_string(), "shutting down");
    }
}
