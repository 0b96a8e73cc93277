//! Each table as the PostgreSQL store writes and dumps it ([`Table`]: name, key, columns,
//! order), and the list of them all: what `tables.rs` and `copy.rs` share.

/// A table: name, primary key, the other columns, and the dump's order.
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) key: &'static [&'static str],
    pub(super) columns: &'static [&'static str],
    pub(super) order: &'static str,
}

pub(super) const TICKETS: Table = Table {
    name: "tickets",
    key: &["ticket_id"],
    columns: &[
        "customer_id",
        "grade",
        "channel",
        "category",
        "priority",
        "status",
        "line",
        "assignee",
        "team",
        "opened_at",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "reopenings",
        "escalations",
    ],
    order: "ticket_id",
};
pub(super) const SLA_TIMERS: Table = Table {
    name: "sla_timers",
    key: &["ticket_id", "target", "cycle"],
    columns: &[
        "status",
        "started_at",
        "due_at",
        "warn_at",
        "warned_at",
        "breached_at",
        "fulfilled_at",
        "met",
        "target_minutes",
        "business_minutes_used",
        "calendar_minutes_used",
        "calendar_id",
        "grade",
        "priority",
        "agent_id",
        "team",
        "latest",
    ],
    order: "ticket_id, target COLLATE \"C\", cycle",
};
pub(super) const ASSIGNMENTS: Table = Table {
    name: "assignments",
    key: &["ticket_id", "seq"],
    columns: &[
        "agent_id",
        "team",
        "from_at",
        "until_at",
        "ended_by",
        "started_by",
        "category",
    ],
    order: "ticket_id, seq",
};
pub(super) const RESOLUTIONS: Table = Table {
    name: "resolutions",
    key: &["ticket_id", "resolution"],
    columns: &[
        "resolved_by",
        "team",
        "resolved_at",
        "first_response_business_minutes",
        "resolution_business_minutes",
        "one_touch",
        "reopened_later",
        "reopened_at",
        "category",
        "grade",
        "channel",
        "answer",
        "answered_at",
        "answer_due_at",
        "closed_at",
        "close_reason",
    ],
    order: "ticket_id, resolution",
};
pub(super) const RATINGS: Table = Table {
    name: "satisfaction_ratings",
    key: &["ticket_id", "resolution", "source"],
    columns: &[
        "rated_at",
        "score",
        "agent_id",
        "team",
        "category",
        "grade",
        "channel",
        "recognition",
        "efficiency",
        "quality",
        "overall",
    ],
    order: "ticket_id, resolution, source COLLATE \"C\"",
};
pub(super) const AGENTS: Table = Table {
    name: "agents",
    key: &["agent_id"],
    columns: &["team", "line", "level", "team_lead"],
    order: "agent_id COLLATE \"C\"",
};
pub(super) const RULINGS: Table = Table {
    name: "complaint_rulings",
    key: &["ticket_id", "ruling"],
    columns: &[
        "ruled_at",
        "ruled_by",
        "ruled_by_role",
        "justified",
        "cause",
        "charged",
        "assignee",
        "team",
        "complained_at",
        "superseded_at",
    ],
    order: "ticket_id, ruling",
};
pub(super) const CHARGES: Table = Table {
    name: "complaint_charges",
    key: &["ticket_id", "ruling", "agent_id"],
    columns: &["team", "ruled_at", "superseded_at"],
    order: "ticket_id, ruling, agent_id COLLATE \"C\"",
};
pub(super) const SCORECARDS: Table = Table {
    name: "scorecards",
    key: &["team", "effective_from"],
    columns: &[
        "results_percent",
        "basic_percent",
        "discipline_percent",
        "bonus_per_excellent_rating",
        "bonus_cap_points",
        "deduction_per_justified_complaint",
        "deduction_cap_points",
        "defined_at",
    ],
    order: "team COLLATE \"C\", effective_from COLLATE \"C\"",
};
pub(super) const FOLLOW_UPS: Table = Table {
    name: "follow_ups",
    key: &["ticket_id", "follow_up"],
    columns: &[
        "kind",
        "owner",
        "team",
        "scheduled_at",
        "due_by",
        "warn_at",
        "warned_at",
        "overdue_at",
        "recorded_at",
        "recorded_by",
        "outcome",
        "visited_at",
        "signed",
        "entered_late",
        "in_time",
    ],
    order: "ticket_id, follow_up",
};
pub(super) const SAMPLES: Table = Table {
    name: "inspection_samples",
    key: &["sample_id"],
    columns: &[
        "period",
        "agent_id",
        "team",
        "drawn_at",
        "seed",
        "candidates",
        "items",
    ],
    order: "sample_id",
};
pub(super) const INSPECTIONS: Table = Table {
    name: "inspections",
    key: &["sample_id", "ticket_id"],
    columns: &[
        "period",
        "agent_id",
        "team",
        "inspected_at",
        "inspector",
        "recognition",
        "efficiency",
        "quality",
        "overall",
        "log_complete",
        "visit_verified",
        "verdict",
        "reinspect_in",
    ],
    order: "sample_id, ticket_id",
};
pub(super) const OVERDUE: Table = Table {
    name: "reinspections_overdue",
    key: &["sample_id", "ticket_id"],
    columns: &["period", "due_in", "agent_id", "team", "marked_at"],
    order: "sample_id, ticket_id",
};
pub(super) const LINKS: Table = Table {
    name: "ticket_links",
    key: &["ticket_id", "other_ticket_id", "relation"],
    columns: &["linked_at"],
    order: "ticket_id, other_ticket_id, relation COLLATE \"C\"",
};
pub(super) const ABSENCES: Table = Table {
    name: "absences",
    key: &["absence_id"],
    columns: &[
        "agent_id",
        "from_at",
        "until_at",
        "reason",
        "backup_agent_id",
        "state",
        "changed_at",
    ],
    order: "absence_id",
};
pub(super) const DEADLINES: Table = Table {
    name: "deadlines",
    key: &["ticket_id", "deadline"],
    columns: &[
        "kind",
        "owner",
        "team",
        "calendar_id",
        "set_at",
        "due_at",
        "warn_at",
        "status",
        "met_at",
        "warned_at",
        "breached_at",
        "consequence",
    ],
    order: "ticket_id, deadline",
};
pub(super) const RETENTION_POLICIES: Table = Table {
    name: "retention_policies",
    key: &["policy_id"],
    columns: &[
        "category",
        "grade",
        "keep_days",
        "effective_from",
        "defined_at",
        "defined_position",
    ],
    order: "policy_id COLLATE \"C\"",
};
pub(super) const ERASURES: Table = Table {
    name: "customer_erasures",
    key: &["position"],
    columns: &[
        "customer_id",
        "erased_at",
        "erased_by",
        "reason",
        "reference",
    ],
    order: "position",
};
pub(super) const TICKET_STATE: Table = Table {
    name: "ticket_state",
    key: &["ticket_id"],
    columns: &["state"],
    order: "ticket_id",
};

/// Every table the projector writes.
pub(super) const ALL: [&Table; 19] = [
    &TICKETS,
    &SLA_TIMERS,
    &ASSIGNMENTS,
    &RESOLUTIONS,
    &RATINGS,
    &AGENTS,
    &RULINGS,
    &CHARGES,
    &SCORECARDS,
    &FOLLOW_UPS,
    &SAMPLES,
    &INSPECTIONS,
    &OVERDUE,
    &ABSENCES,
    &LINKS,
    &DEADLINES,
    &RETENTION_POLICIES,
    &ERASURES,
    &TICKET_STATE,
];

impl Table {
    /// The key's columns, then the others: the order rows are copied in.
    pub(super) fn all_columns(&self) -> String {
        let mut all = self.key.to_vec();
        all.extend_from_slice(self.columns);
        all.join(", ")
    }

    pub(super) fn dump(&self, schema: &str) -> String {
        format!(
            "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY {order}), '[]')::text FROM {schema}.{name} t",
            order = self.order,
            name = self.name,
        )
    }
}
