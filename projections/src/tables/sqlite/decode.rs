//! How a row of the tables is read back from SQLite: times as RFC 3339 text, ids as text,
//! and [`SqlRow`], one implementation per row type, with [`rows`] to read a table's rows.

use rusqlite::{params, Connection, Row};
use uuid::Uuid;

pub(super) use crate::tables::rows::rfc3339 as to_text;
use crate::tables::rows::*;
use crate::tables::store::TableError;

pub(super) fn from_text(text: &str) -> rusqlite::Result<i64> {
    parse_time(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

pub(super) fn time(row: &Row, i: usize) -> rusqlite::Result<i64> {
    from_text(&row.get::<_, String>(i)?)
}

pub(super) fn time_opt(row: &Row, i: usize) -> rusqlite::Result<Option<i64>> {
    row.get::<_, Option<String>>(i)?
        .map(|t| from_text(&t))
        .transpose()
}

pub(super) fn uuid(row: &Row, i: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(i)?;
    text.parse().map_err(|e: uuid::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

/// A row type read back from its table.
pub(super) trait SqlRow: Sized {
    const TABLE: &'static str;
    const ORDER: &'static str;
    fn from_row(r: &Row) -> rusqlite::Result<Self>;
}

impl SqlRow for TicketRow {
    const TABLE: &'static str = "tickets";
    const ORDER: &'static str = "ticket_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(TicketRow {
            ticket_id: uuid(r, 0)?,
            customer_id: r.get(1)?,
            grade: r.get(2)?,
            channel: r.get(3)?,
            category: r.get(4)?,
            priority: r.get(5)?,
            status: r.get(6)?,
            line: r.get(7)?,
            assignee: r.get(8)?,
            team: r.get(9)?,
            opened_at: time(r, 10)?,
            first_response_at: time_opt(r, 11)?,
            resolved_at: time_opt(r, 12)?,
            closed_at: time_opt(r, 13)?,
            reopenings: r.get(14)?,
            escalations: r.get(15)?,
        })
    }
}

impl SqlRow for TimerRow {
    const TABLE: &'static str = "sla_timers";
    const ORDER: &'static str = "ticket_id, target, cycle";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(TimerRow {
            ticket_id: uuid(r, 0)?,
            target: r.get(1)?,
            cycle: r.get(2)?,
            status: r.get(3)?,
            started_at: time(r, 4)?,
            due_at: time_opt(r, 5)?,
            warn_at: time_opt(r, 6)?,
            warned_at: time_opt(r, 7)?,
            breached_at: time_opt(r, 8)?,
            fulfilled_at: time_opt(r, 9)?,
            met: r.get(10)?,
            target_minutes: r.get(11)?,
            business_minutes_used: r.get(12)?,
            calendar_minutes_used: r.get(13)?,
            calendar_id: r.get(14)?,
            grade: r.get(15)?,
            priority: r.get(16)?,
            agent_id: r.get(17)?,
            team: r.get(18)?,
            latest: r.get(19)?,
        })
    }
}

impl SqlRow for AssignmentRow {
    const TABLE: &'static str = "assignments";
    const ORDER: &'static str = "ticket_id, seq";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(AssignmentRow {
            ticket_id: uuid(r, 0)?,
            seq: r.get(1)?,
            agent_id: r.get(2)?,
            team: r.get(3)?,
            from_at: time(r, 4)?,
            until_at: time_opt(r, 5)?,
            ended_by: r.get(6)?,
            started_by: r.get(7)?,
            category: r.get(8)?,
        })
    }
}

impl SqlRow for ResolutionRow {
    const TABLE: &'static str = "resolutions";
    const ORDER: &'static str = "ticket_id, resolution";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ResolutionRow {
            ticket_id: uuid(r, 0)?,
            resolution: r.get(1)?,
            resolved_by: r.get(2)?,
            team: r.get(3)?,
            resolved_at: time(r, 4)?,
            first_response_business_minutes: r.get(5)?,
            resolution_business_minutes: r.get(6)?,
            one_touch: r.get(7)?,
            reopened_later: r.get(8)?,
            reopened_at: time_opt(r, 9)?,
            category: r.get(10)?,
            grade: r.get(11)?,
            channel: r.get(12)?,
            answer: r.get(13)?,
            answered_at: time_opt(r, 14)?,
            answer_due_at: time_opt(r, 15)?,
            closed_at: time_opt(r, 16)?,
            close_reason: r.get(17)?,
        })
    }
}

impl SqlRow for RatingRow {
    const TABLE: &'static str = "satisfaction_ratings";
    const ORDER: &'static str = "ticket_id, resolution, source";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RatingRow {
            ticket_id: uuid(r, 0)?,
            resolution: r.get(1)?,
            source: r.get(2)?,
            rated_at: time(r, 3)?,
            score: r.get(4)?,
            agent_id: r.get(5)?,
            team: r.get(6)?,
            category: r.get(7)?,
            grade: r.get(8)?,
            channel: r.get(9)?,
            recognition: r.get(10)?,
            efficiency: r.get(11)?,
            quality: r.get(12)?,
            overall: r.get(13)?,
        })
    }
}

impl SqlRow for AgentRow {
    const TABLE: &'static str = "agents";
    const ORDER: &'static str = "agent_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(AgentRow {
            agent_id: r.get(0)?,
            team: r.get(1)?,
            line: r.get(2)?,
            level: r.get(3)?,
            team_lead: r.get(4)?,
        })
    }
}

impl SqlRow for RulingRow {
    const TABLE: &'static str = "complaint_rulings";
    const ORDER: &'static str = "ticket_id, ruling";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RulingRow {
            ticket_id: uuid(r, 0)?,
            ruling: r.get(1)?,
            ruled_at: time(r, 2)?,
            ruled_by: r.get(3)?,
            ruled_by_role: r.get(4)?,
            justified: r.get(5)?,
            cause: r.get(6)?,
            charged: r.get(7)?,
            assignee: r.get(8)?,
            team: r.get(9)?,
            complained_at: time(r, 10)?,
            superseded_at: time_opt(r, 11)?,
        })
    }
}

impl SqlRow for ChargeRow {
    const TABLE: &'static str = "complaint_charges";
    const ORDER: &'static str = "ticket_id, ruling, agent_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ChargeRow {
            ticket_id: uuid(r, 0)?,
            ruling: r.get(1)?,
            agent_id: r.get(2)?,
            team: r.get(3)?,
            ruled_at: time(r, 4)?,
            superseded_at: time_opt(r, 5)?,
        })
    }
}

impl SqlRow for FollowUpRow {
    const TABLE: &'static str = "follow_ups";
    const ORDER: &'static str = "ticket_id, follow_up";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(FollowUpRow {
            ticket_id: uuid(r, 0)?,
            follow_up: r.get(1)?,
            kind: r.get(2)?,
            owner: r.get(3)?,
            team: r.get(4)?,
            scheduled_at: time(r, 5)?,
            due_by: time(r, 6)?,
            warn_at: time(r, 7)?,
            warned_at: time_opt(r, 8)?,
            overdue_at: time_opt(r, 9)?,
            recorded_at: time_opt(r, 10)?,
            recorded_by: r.get(11)?,
            outcome: r.get(12)?,
            visited_at: time_opt(r, 13)?,
            signed: r.get(14)?,
            entered_late: r.get(15)?,
            in_time: r.get(16)?,
        })
    }
}

impl SqlRow for SampleRow {
    const TABLE: &'static str = "inspection_samples";
    const ORDER: &'static str = "sample_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(SampleRow {
            sample_id: uuid(r, 0)?,
            period: r.get(1)?,
            agent_id: r.get(2)?,
            team: r.get(3)?,
            drawn_at: time(r, 4)?,
            seed: r.get(5)?,
            candidates: r.get(6)?,
            items: r.get(7)?,
        })
    }
}

impl SqlRow for InspectionRow {
    const TABLE: &'static str = "inspections";
    const ORDER: &'static str = "sample_id, ticket_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(InspectionRow {
            sample_id: uuid(r, 0)?,
            ticket_id: uuid(r, 1)?,
            period: r.get(2)?,
            agent_id: r.get(3)?,
            team: r.get(4)?,
            inspected_at: time(r, 5)?,
            inspector: r.get(6)?,
            recognition: r.get(7)?,
            efficiency: r.get(8)?,
            quality: r.get(9)?,
            overall: r.get(10)?,
            log_complete: r.get(11)?,
            visit_verified: r.get(12)?,
            verdict: r.get(13)?,
            reinspect_in: r.get(14)?,
        })
    }
}

impl SqlRow for DeadlineRow {
    const TABLE: &'static str = "deadlines";
    const ORDER: &'static str = "ticket_id, deadline";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(DeadlineRow {
            ticket_id: uuid(r, 0)?,
            deadline: r.get(1)?,
            kind: r.get(2)?,
            owner: r.get(3)?,
            team: r.get(4)?,
            calendar_id: r.get(5)?,
            set_at: time(r, 6)?,
            due_at: time_opt(r, 7)?,
            warn_at: time_opt(r, 8)?,
            status: r.get(9)?,
            met_at: time_opt(r, 10)?,
            warned_at: time_opt(r, 11)?,
            breached_at: time_opt(r, 12)?,
            consequence: r.get(13)?,
        })
    }
}

impl SqlRow for LinkRow {
    const TABLE: &'static str = "ticket_links";
    const ORDER: &'static str = "ticket_id, other_ticket_id, relation";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(LinkRow {
            ticket_id: uuid(r, 0)?,
            other_ticket_id: uuid(r, 1)?,
            relation: r.get(2)?,
            linked_at: time(r, 3)?,
        })
    }
}

impl SqlRow for RetentionPolicyRow {
    const TABLE: &'static str = "retention_policies";
    const ORDER: &'static str = "policy_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(RetentionPolicyRow {
            policy_id: r.get(0)?,
            category: r.get(1)?,
            grade: r.get(2)?,
            keep_days: r.get(3)?,
            effective_from: time(r, 4)?,
            defined_at: time(r, 5)?,
            defined_position: r.get(6)?,
        })
    }
}

impl SqlRow for ErasureRow {
    const TABLE: &'static str = "customer_erasures";
    const ORDER: &'static str = "position";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ErasureRow {
            position: r.get(0)?,
            customer_id: r.get(1)?,
            erased_at: time(r, 2)?,
            erased_by: r.get(3)?,
            reason: r.get(4)?,
            reference: r.get(5)?,
        })
    }
}

impl SqlRow for OverdueRow {
    const TABLE: &'static str = "reinspections_overdue";
    const ORDER: &'static str = "sample_id, ticket_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(OverdueRow {
            sample_id: uuid(r, 0)?,
            ticket_id: uuid(r, 1)?,
            period: r.get(2)?,
            due_in: r.get(3)?,
            agent_id: r.get(4)?,
            team: r.get(5)?,
            marked_at: time(r, 6)?,
        })
    }
}

impl SqlRow for AbsenceRow {
    const TABLE: &'static str = "absences";
    const ORDER: &'static str = "absence_id";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(AbsenceRow {
            absence_id: uuid(r, 0)?,
            agent_id: r.get(1)?,
            from_at: time(r, 2)?,
            until_at: time(r, 3)?,
            reason: r.get(4)?,
            backup_agent_id: r.get(5)?,
            state: r.get(6)?,
            changed_at: time(r, 7)?,
        })
    }
}

impl SqlRow for ScorecardRow {
    const TABLE: &'static str = "scorecards";
    const ORDER: &'static str = "team, effective_from";
    fn from_row(r: &Row) -> rusqlite::Result<Self> {
        Ok(ScorecardRow {
            team: r.get(0)?,
            effective_from: r.get(1)?,
            results_percent: r.get(2)?,
            basic_percent: r.get(3)?,
            discipline_percent: r.get(4)?,
            bonus_per_excellent_rating: r.get(5)?,
            bonus_cap_points: r.get(6)?,
            deduction_per_justified_complaint: r.get(7)?,
            deduction_cap_points: r.get(8)?,
            defined_at: time(r, 9)?,
        })
    }
}

/// The rows of `T`'s table passing `filter` (SQL over the table's columns, with `?1` and
/// `?2` the bounds of a time range as RFC 3339 text), in primary-key order.
pub(super) fn rows<T: SqlRow>(
    conn: &Connection,
    filter: &str,
    bounds: (Option<String>, Option<String>),
) -> Result<Vec<T>, TableError> {
    let sql = format!(
        "SELECT * FROM {} WHERE {filter} ORDER BY {}",
        T::TABLE,
        T::ORDER
    );
    let mut s = conn.prepare_cached(&sql)?;
    let found = if filter.contains("?1") {
        s.query_map(params![bounds.0, bounds.1], T::from_row)?
            .collect::<rusqlite::Result<Vec<T>>>()?
    } else {
        s.query_map([], T::from_row)?
            .collect::<rusqlite::Result<Vec<T>>>()?
    };
    Ok(found)
}
