//! Business time: the `occurred_at` an event is appended with. The rule, in one place:
//!
//! - **Monotonic per stream.** An event's `occurred_at` is at or after the previous event's in
//!   its stream, so "the ticket as of T" is always a prefix of its history.
//! - **Not in the future.** At most [`TimeRules::skew_max`] after the command's receipt
//!   (clocks differ a little).
//! - **Backdating is a privilege.** A claimed time before receipt is accepted only within the
//!   window of the actor's role: people (agents, supervisors) a few minutes, integrations
//!   (`service`) longer, for records made elsewhere. The engine's own commands (`system`)
//!   name no time at all: they act at their decision time.
//! - **Omitted means now**: the receipt time, or the stream's last event's time when that is
//!   later (within the skew allowance), so the stream stays monotonic.
//!
//! A breach of any bound is `validation` at `/occurred_at`, naming the bound. The handler
//! calls [`business_time`] against the same stream version its append expects, so the check
//! and the append cannot be split by another writer.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::rejection::Rejection;
use super::types::Role;

/// The bounds on a claimed business time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRules {
    /// How far after its receipt a command's `occurred_at` may be.
    pub skew_max: SignedDuration,
    /// How far before its receipt agents, supervisors, auditors and the system may claim.
    pub backdate_staff_max: SignedDuration,
    /// How far before its receipt a `service` may claim (records made elsewhere).
    pub backdate_service_max: SignedDuration,
}

impl Default for TimeRules {
    fn default() -> TimeRules {
        TimeRules {
            skew_max: SignedDuration::from_mins(2),
            backdate_staff_max: SignedDuration::from_mins(5),
            backdate_service_max: SignedDuration::from_hours(24 * 7),
        }
    }
}

impl TimeRules {
    /// Any past time is accepted from anyone (still monotonic and not in the future): for
    /// `closeloop submit`, the operator's local import path, which trusts its input's actor
    /// and time alike, and for tests that replay a history written elsewhere.
    pub fn trusting() -> TimeRules {
        TimeRules {
            backdate_staff_max: SignedDuration::MAX,
            backdate_service_max: SignedDuration::MAX,
            ..TimeRules::default()
        }
    }

    /// The backdating window of `role`.
    pub fn backdate_max(&self, role: Role) -> SignedDuration {
        match role {
            Role::Service => self.backdate_service_max,
            Role::Agent
            | Role::Supervisor
            | Role::Inspector
            | Role::Auditor
            | Role::PrivacyOfficer
            | Role::System => self.backdate_staff_max,
        }
    }
}

/// The business time to append a command's events with: `claimed` (the command's
/// `occurred_at`) checked against the bounds, or the receipt time when omitted. `received`
/// is when the engine took the command; `stream_last` the `occurred_at` of the stream's last
/// event (`None` for a new stream).
pub fn business_time(
    claimed: Option<Timestamp>,
    role: Role,
    received: Timestamp,
    stream_last: Option<Timestamp>,
    rules: &TimeRules,
) -> Result<Timestamp, Rejection> {
    let Some(at) = claimed else {
        return Ok(stream_last.map_or(received, |last| last.max(received)));
    };
    let latest = received
        .checked_add(rules.skew_max)
        .unwrap_or(Timestamp::MAX);
    if at > latest {
        return Err(Rejection::validation(
            "/occurred_at",
            format!(
                "{at} is in the future: at most {} after receipt ({received}) is allowed",
                friendly(rules.skew_max)
            ),
        ));
    }
    if let Some(last) = stream_last.filter(|last| at < *last) {
        return Err(Rejection::validation(
            "/occurred_at",
            format!("{at} is before the stream's last event ({last}): business time never runs backwards in a stream"),
        ));
    }
    let window = rules.backdate_max(role);
    let earliest = received.checked_sub(window).unwrap_or(Timestamp::MIN);
    if at < earliest {
        return Err(Rejection::validation(
            "/occurred_at",
            format!(
                "{at} is more than {} before receipt ({received}), the most a {role} may backdate",
                friendly(window)
            ),
        ));
    }
    Ok(at)
}

/// A window as people write it (`5m`, `168h`).
fn friendly(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    const NOW: &str = "2026-11-02T12:00:00Z";

    fn check(claimed: Option<&str>, role: Role, last: Option<&str>) -> Result<Timestamp, String> {
        business_time(
            claimed.map(t),
            role,
            t(NOW),
            last.map(t),
            &TimeRules::default(),
        )
        .map_err(|r| {
            assert_eq!(r.details[0].path, "/occurred_at");
            r.message
        })
    }

    #[test]
    fn omitted_is_now_or_the_streams_last_when_later() {
        assert_eq!(check(None, Role::Agent, None), Ok(t(NOW)));
        assert_eq!(
            check(None, Role::Agent, Some("2026-11-02T11:00:00Z")),
            Ok(t(NOW))
        );
        assert_eq!(
            check(None, Role::System, Some("2026-11-02T12:01:00Z")),
            Ok(t("2026-11-02T12:01:00Z"))
        );
    }

    #[test]
    fn never_before_the_streams_last_event() {
        let e = check(
            Some("2026-11-02T11:58:00Z"),
            Role::Agent,
            Some("2026-11-02T11:59:00Z"),
        )
        .unwrap_err();
        assert!(e.contains("before the stream's last event"), "{e}");
        // Equal is allowed: two events may share an instant.
        assert!(check(
            Some("2026-11-02T11:59:00Z"),
            Role::Agent,
            Some("2026-11-02T11:59:00Z")
        )
        .is_ok());
    }

    #[test]
    fn backdating_is_bounded_by_role() {
        let hour_ago = Some("2026-11-02T11:00:00Z");
        let e = check(hour_ago, Role::Agent, None).unwrap_err();
        assert!(e.contains("more than 5m before receipt"), "{e}");
        assert!(check(hour_ago, Role::Supervisor, None).is_err());
        assert_eq!(
            check(hour_ago, Role::Service, None),
            Ok(t("2026-11-02T11:00:00Z"))
        );
        assert!(check(Some("2026-11-02T11:55:00Z"), Role::Agent, None).is_ok());
        let e = check(Some("2026-10-20T00:00:00Z"), Role::Service, None).unwrap_err();
        assert!(e.contains("168h"), "{e}");
    }

    #[test]
    fn the_future_is_refused_beyond_the_skew() {
        assert!(check(Some("2026-11-02T12:02:00Z"), Role::Agent, None).is_ok());
        let e = check(Some("2026-11-02T12:02:01Z"), Role::Service, None).unwrap_err();
        assert!(e.contains("in the future"), "{e}");
    }

    #[test]
    fn trusting_accepts_any_past_but_not_backwards() {
        let rules = TimeRules::trusting();
        let old = Some(t("2001-01-01T00:00:00Z"));
        assert!(business_time(old, Role::Agent, t(NOW), None, &rules).is_ok());
        assert!(business_time(old, Role::Agent, t(NOW), Some(t(NOW)), &rules).is_err());
    }
}
