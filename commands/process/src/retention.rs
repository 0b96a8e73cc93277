//! Retention: the scheduler's step that erases the personal data of customers whose
//! retention has run out (README, "Personal data", Retention).
//!
//! A customer is expired at `now` when every ticket of theirs is closed, each closed ticket
//! has a retention policy (the most specific matching its category and the customer's grade,
//! the latest defined winning a tie: the domain's [`select_retention`]), and for each the
//! later of `closed_at + keep_days` and the policy's `effective_from` is at or before `now`.
//! The customer's deadline is the latest of these. A customer with a ticket no policy
//! matches is never erased by retention; one erased after their last closure is not erased
//! again until new tickets of theirs close and expire.
//!
//! The erasure is the audited `erase_customer_data` command, as `system`, with reason
//! `retention` and the policy of the deadline as its reference. Its id is a UUID v5 of
//! (customer, deadline) ([`derived_command_id`], the scheduler's scheme), so every scheduler
//! instance submits the same command and the log appends it once.

use closeloop_core::domain::{
    derived_command_id, select_retention, system_command, Category, Command, CommandEnvelope,
    EraseCustomerData, Grade, IdScheme, RetentionMatch, RetentionPolicy,
};
use jiff::Timestamp;
use uuid::Uuid;

use closeloop_projections::tables::{ClosureRow, RetentionPolicyRow, TableError, TableStore};

/// Seconds in a retention day: days are counted as whole 24-hour days in UTC, so a deadline
/// is the same instant wherever the data lives.
const DAY_SECONDS: i64 = 86_400;

/// The reason an erasure by retention gives.
pub const REASON: &str = "retention";

/// The deterministic id of the retention erasure of `customer_id` at `deadline`.
pub fn erasure_command_id(customer_id: &str, deadline: i64) -> Uuid {
    derived_command_id(
        IdScheme::Scheduler,
        &format!("retention/{customer_id}/{deadline}"),
    )
}

/// A customer whose retention has run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub customer_id: String,
    /// The customer's deadline (Unix seconds).
    pub deadline: i64,
    /// The policy that set the deadline.
    pub policy_id: String,
}

fn category(name: &str) -> Option<Category> {
    Category::ALL.iter().copied().find(|c| c.as_str() == name)
}

fn grade(name: &str) -> Option<Grade> {
    Grade::ALL.iter().copied().find(|g| g.as_str() == name)
}

/// The policies as the domain holds them (a row of a category or grade this build does not
/// know is left out: it can match no ticket this build wrote).
fn policies(rows: &[RetentionPolicyRow]) -> Vec<RetentionPolicy> {
    rows.iter()
        .filter_map(|r| {
            Some(RetentionPolicy {
                policy_id: r.policy_id.clone(),
                matches: RetentionMatch {
                    category: match &r.category {
                        Some(c) => Some(category(c)?),
                        None => None,
                    },
                    grade: match &r.grade {
                        Some(g) => Some(grade(g)?),
                        None => None,
                    },
                },
                keep_days: r.keep_days,
                effective_from: Timestamp::from_second(r.effective_from).ok()?,
                defined_seq: u64::try_from(r.defined_position).ok()?,
            })
        })
        .collect()
}

/// The customers among `candidates` (rows of [`TableStore::retention_candidates`], by
/// customer) expired at `now` under `policies`, by customer.
pub fn expired(
    policies: &[RetentionPolicy],
    candidates: &[ClosureRow],
    now: Timestamp,
) -> Vec<Expired> {
    let mut expired = Vec::new();
    for customer in candidates.chunk_by(|a, b| a.customer_id == b.customer_id) {
        // The latest deadline over the customer's kinds of tickets; `None` once one has no
        // policy (that data is kept).
        let deadline = customer.iter().try_fold(None, |latest, kind| {
            let (Some(category), Some(grade)) = (category(&kind.category), grade(&kind.grade))
            else {
                return None;
            };
            let policy = select_retention(policies, grade, category)?;
            let kept = kind
                .last_closed_at
                .saturating_add(i64::from(policy.keep_days) * DAY_SECONDS);
            let deadline = kept.max(policy.effective_from.as_second());
            Some(match latest {
                Some((at, _)) if at >= deadline => latest,
                _ => Some((deadline, policy.policy_id.clone())),
            })
        });
        if let Some(Some((deadline, policy_id))) = deadline {
            if deadline <= now.as_second() {
                expired.push(Expired {
                    customer_id: customer[0].customer_id.clone(),
                    deadline,
                    policy_id,
                });
            }
        }
    }
    expired
}

/// The `erase_customer_data` command of an expired customer.
pub fn erasure(expired: &Expired, actor: &str) -> CommandEnvelope {
    system_command(
        actor,
        erasure_command_id(&expired.customer_id, expired.deadline),
        Command::EraseCustomerData(EraseCustomerData {
            customer_id: expired.customer_id.clone(),
            reason: REASON.to_owned(),
            reference: expired.policy_id.clone(),
        }),
    )
}

/// The erasures due at `now`, at most `room`: the policies, then the candidates whose latest
/// closure is old enough for the shortest policy (none are read without a policy).
pub async fn due_erasures(
    tables: &dyn TableStore,
    now: Timestamp,
    actor: &str,
    room: usize,
) -> Result<Vec<CommandEnvelope>, TableError> {
    let policies = policies(&tables.retention_policies().await?);
    let Some(shortest) = policies.iter().map(|p| p.keep_days).min() else {
        return Ok(Vec::new());
    };
    let closed_before = now
        .as_second()
        .saturating_sub(i64::from(shortest) * DAY_SECONDS);
    let candidates = tables.retention_candidates(closed_before).await?;
    Ok(expired(&policies, &candidates, now)
        .iter()
        .take(room)
        .map(|e| erasure(e, actor))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, category: Option<Category>, keep_days: u32, seq: u64) -> RetentionPolicy {
        RetentionPolicy {
            policy_id: id.into(),
            matches: RetentionMatch {
                category,
                grade: None,
            },
            keep_days,
            effective_from: Timestamp::UNIX_EPOCH,
            defined_seq: seq,
        }
    }

    fn closed(customer: &str, category: &str, at: i64) -> ClosureRow {
        ClosureRow {
            customer_id: customer.into(),
            category: category.into(),
            grade: "standard".into(),
            last_closed_at: at,
        }
    }

    #[test]
    fn the_latest_deadline_of_a_customers_tickets_counts_and_only_once_reached() {
        let policies = [
            policy("all", None, 10, 1),
            policy("repairs", Some(Category::Repair), 30, 2),
        ];
        let candidates = [
            closed("c-1", "complaint", 100 * DAY_SECONDS),
            closed("c-1", "repair", 90 * DAY_SECONDS),
            closed("c-2", "complaint", 0),
        ];
        let at =
            |day: i64, second: i64| Timestamp::from_second(day * DAY_SECONDS + second).unwrap();
        // c-1: complaint until day 110, repair until day 120: the later one.
        let expired_at = |now| expired(&policies, &candidates, now);
        assert_eq!(
            expired_at(at(120, -1)),
            [Expired {
                customer_id: "c-2".into(),
                deadline: 10 * DAY_SECONDS,
                policy_id: "all".into()
            }]
        );
        let at_deadline = expired_at(at(120, 0));
        assert_eq!(at_deadline.len(), 2);
        assert_eq!(at_deadline[0].deadline, 120 * DAY_SECONDS);
        assert_eq!(at_deadline[0].policy_id, "repairs");
        // Without a policy for complaints, c-1 and c-2 keep their data.
        let repairs_only = [policy("repairs", Some(Category::Repair), 30, 2)];
        assert!(expired(&repairs_only, &candidates, at(1000, 0)).is_empty());
    }

    #[test]
    fn a_policy_takes_effect_no_earlier_than_its_effective_from() {
        let mut later = policy("all", None, 1, 1);
        later.effective_from = Timestamp::from_second(50 * DAY_SECONDS).unwrap();
        let candidates = [closed("c-1", "repair", 0)];
        let now = |s| Timestamp::from_second(s).unwrap();
        assert!(expired(
            std::slice::from_ref(&later),
            &candidates,
            now(50 * DAY_SECONDS - 1)
        )
        .is_empty());
        assert_eq!(
            expired(&[later], &candidates, now(50 * DAY_SECONDS))[0].deadline,
            50 * DAY_SECONDS
        );
    }

    #[test]
    fn the_command_id_is_one_per_customer_and_deadline() {
        assert_eq!(erasure_command_id("c-1", 5), erasure_command_id("c-1", 5));
        assert_ne!(erasure_command_id("c-1", 5), erasure_command_id("c-1", 6));
        assert_ne!(erasure_command_id("c-1", 5), erasure_command_id("c-2", 5));
    }
}
