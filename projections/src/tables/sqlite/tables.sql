-- The analysts' tables on SQLite, in the log's own file. Times are RFC 3339 text in UTC
-- ('2026-11-23T09:15:00Z': sorts as time does and works with SQLite's date functions),
-- durations whole minutes, flags 0/1. Idempotent; run on every open. The README documents
-- every column.
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id          TEXT    PRIMARY KEY,
    customer_id        TEXT    NOT NULL,
    grade              TEXT    NOT NULL,
    channel            TEXT    NOT NULL,
    category           TEXT    NOT NULL,
    priority           TEXT    NOT NULL,
    status             TEXT    NOT NULL,
    line               INTEGER NOT NULL,
    assignee           TEXT,
    team               TEXT,
    opened_at          TEXT    NOT NULL,
    first_response_at  TEXT,
    resolved_at        TEXT,
    closed_at          TEXT,
    reopenings         INTEGER NOT NULL,
    escalations        INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS tickets_open_by_assignee ON tickets (assignee)
    WHERE status NOT IN ('resolved', 'closed');

CREATE TABLE IF NOT EXISTS sla_timers (
    ticket_id              TEXT    NOT NULL,
    target                 TEXT    NOT NULL,
    cycle                  INTEGER NOT NULL,
    status                 TEXT    NOT NULL,
    started_at             TEXT    NOT NULL,
    due_at                 TEXT,
    warn_at                TEXT,
    warned_at              TEXT,
    breached_at            TEXT,
    fulfilled_at           TEXT,
    met                    INTEGER,
    target_minutes         INTEGER NOT NULL,
    business_minutes_used  INTEGER,
    calendar_minutes_used  INTEGER,
    calendar_id            TEXT    NOT NULL,
    grade                  TEXT    NOT NULL,
    priority               TEXT    NOT NULL,
    agent_id               TEXT,
    team                   TEXT,
    latest                 INTEGER NOT NULL,
    PRIMARY KEY (ticket_id, target, cycle)
) STRICT, WITHOUT ROWID;
-- The scheduler's and the at-risk list's question: live timers by due time.
CREATE INDEX IF NOT EXISTS sla_timers_open_by_due ON sla_timers (due_at)
    WHERE fulfilled_at IS NULL AND status <> 'cancelled';

CREATE TABLE IF NOT EXISTS assignments (
    ticket_id  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    agent_id   TEXT    NOT NULL,
    team       TEXT    NOT NULL,
    from_at    TEXT    NOT NULL,
    until_at   TEXT,
    ended_by   TEXT,
    started_by             TEXT    NOT NULL,
    category               TEXT    NOT NULL,
    PRIMARY KEY (ticket_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS resolutions (
    ticket_id                        TEXT    NOT NULL,
    resolution                       INTEGER NOT NULL,
    resolved_by                      TEXT    NOT NULL,
    team                             TEXT,
    resolved_at                      TEXT    NOT NULL,
    first_response_business_minutes  INTEGER,
    resolution_business_minutes      INTEGER,
    one_touch                        INTEGER NOT NULL,
    reopened_later                   INTEGER NOT NULL,
    reopened_at            TEXT,
    category               TEXT    NOT NULL,
    grade                  TEXT    NOT NULL,
    channel                TEXT    NOT NULL,
    answer                 TEXT,
    answered_at            TEXT,
    answer_due_at          TEXT,
    closed_at              TEXT,
    close_reason           TEXT,
    PRIMARY KEY (ticket_id, resolution)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS satisfaction_ratings (
    ticket_id    TEXT    NOT NULL,
    resolution   INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    rated_at     TEXT    NOT NULL,
    score        INTEGER NOT NULL,
    agent_id     TEXT,
    team         TEXT,
    category     TEXT    NOT NULL,
    grade        TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    recognition  INTEGER,
    efficiency   INTEGER,
    quality      INTEGER,
    overall      INTEGER,
    PRIMARY KEY (ticket_id, resolution, source)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS agents (
    agent_id   TEXT    PRIMARY KEY,
    team       TEXT    NOT NULL,
    line       INTEGER NOT NULL,
    level      TEXT    NOT NULL,
    team_lead  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS complaint_rulings (
    ticket_id      TEXT    NOT NULL,
    ruling         INTEGER NOT NULL,
    ruled_at       TEXT    NOT NULL,
    ruled_by       TEXT    NOT NULL,
    ruled_by_role  TEXT    NOT NULL,
    justified      INTEGER NOT NULL,
    cause          TEXT    NOT NULL,
    charged        INTEGER NOT NULL,
    assignee       TEXT,
    team           TEXT,
    complained_at  TEXT    NOT NULL,
    superseded_at  TEXT,
    PRIMARY KEY (ticket_id, ruling)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS complaint_charges (
    ticket_id      TEXT    NOT NULL,
    ruling         INTEGER NOT NULL,
    agent_id       TEXT    NOT NULL,
    team           TEXT    NOT NULL,
    ruled_at       TEXT    NOT NULL,
    superseded_at  TEXT,
    PRIMARY KEY (ticket_id, ruling, agent_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS scorecards (
    team                               TEXT    NOT NULL,
    effective_from                     TEXT    NOT NULL,
    results_percent                    INTEGER NOT NULL,
    basic_percent                      INTEGER NOT NULL,
    discipline_percent                 INTEGER NOT NULL,
    bonus_per_excellent_rating         REAL    NOT NULL,
    bonus_cap_points                   REAL    NOT NULL,
    deduction_per_justified_complaint  REAL    NOT NULL,
    deduction_cap_points               REAL    NOT NULL,
    defined_at                         TEXT    NOT NULL,
    PRIMARY KEY (team, effective_from)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS follow_ups (
    ticket_id      TEXT    NOT NULL,
    follow_up      INTEGER NOT NULL,
    kind           TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    team           TEXT    NOT NULL,
    scheduled_at   TEXT    NOT NULL,
    due_by         TEXT    NOT NULL,
    warn_at        TEXT    NOT NULL,
    warned_at      TEXT,
    overdue_at     TEXT,
    recorded_at    TEXT,
    recorded_by    TEXT,
    outcome        TEXT,
    visited_at     TEXT,
    signed         INTEGER,
    entered_late   INTEGER,
    in_time        INTEGER,
    PRIMARY KEY (ticket_id, follow_up)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS inspection_samples (
    sample_id      TEXT    PRIMARY KEY,
    period         TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    team           TEXT    NOT NULL,
    drawn_at       TEXT    NOT NULL,
    seed           TEXT    NOT NULL,
    candidates     INTEGER NOT NULL,
    items          INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS inspections (
    sample_id      TEXT    NOT NULL,
    ticket_id      TEXT    NOT NULL,
    period         TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    team           TEXT    NOT NULL,
    inspected_at   TEXT    NOT NULL,
    inspector      TEXT    NOT NULL,
    recognition    INTEGER NOT NULL,
    efficiency     INTEGER NOT NULL,
    quality        INTEGER NOT NULL,
    overall        INTEGER NOT NULL,
    log_complete   INTEGER NOT NULL,
    visit_verified INTEGER,
    verdict        TEXT    NOT NULL,
    reinspect_in   TEXT,
    PRIMARY KEY (sample_id, ticket_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS reinspections_overdue (
    sample_id      TEXT    NOT NULL,
    ticket_id      TEXT    NOT NULL,
    period         TEXT    NOT NULL,
    due_in         TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    team           TEXT    NOT NULL,
    marked_at      TEXT    NOT NULL,
    PRIMARY KEY (sample_id, ticket_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS absences (
    absence_id      TEXT    NOT NULL PRIMARY KEY,
    agent_id        TEXT    NOT NULL,
    from_at         TEXT    NOT NULL,
    until_at        TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    backup_agent_id TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    changed_at      TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS deadlines (
    ticket_id   TEXT    NOT NULL,
    deadline    INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    owner       TEXT    NOT NULL,
    team        TEXT    NOT NULL,
    calendar_id TEXT,
    set_at      TEXT    NOT NULL,
    due_at      TEXT,
    warn_at     TEXT,
    status      TEXT    NOT NULL,
    met_at      TEXT,
    warned_at   TEXT,
    breached_at TEXT,
    consequence TEXT,
    PRIMARY KEY (ticket_id, deadline)
) STRICT, WITHOUT ROWID;

-- Private to the projector: each ticket's fold state (JSON), and the checkpoint with the
-- calendars in force, written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS ticket_state (
    ticket_id  TEXT PRIMARY KEY,
    state      TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS table_checkpoint (
    name       TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL,
    position   INTEGER NOT NULL CHECK (position >= 0),
    calendars  TEXT,
    -- Which build of the tables (see `Saved::generation`); '' until `open` sets one.
    generation TEXT    NOT NULL DEFAULT ''
) STRICT;

-- Reads (see read.rs): the SLA list's order over latest cycles, the scheduler's warnings,
-- and the dated columns statistics range over.
CREATE INDEX IF NOT EXISTS sla_timers_latest_by_due
    ON sla_timers (coalesce(due_at, '9999-12-31T23:59:59Z'), ticket_id, target) WHERE latest = 1;
CREATE INDEX IF NOT EXISTS sla_timers_open_by_warn ON sla_timers (warn_at)
    WHERE fulfilled_at IS NULL AND status <> 'cancelled';
CREATE INDEX IF NOT EXISTS sla_timers_by_fulfilled ON sla_timers (fulfilled_at);
CREATE INDEX IF NOT EXISTS tickets_by_opened ON tickets (opened_at);
CREATE INDEX IF NOT EXISTS tickets_by_closed ON tickets (closed_at);
CREATE INDEX IF NOT EXISTS assignments_by_from ON assignments (from_at);
CREATE INDEX IF NOT EXISTS assignments_by_until ON assignments (until_at);
CREATE INDEX IF NOT EXISTS resolutions_by_resolved ON resolutions (resolved_at);
CREATE INDEX IF NOT EXISTS resolutions_by_reopened ON resolutions (reopened_at);
-- The scheduler's question: resolutions still awaiting the customer's answer, by deadline.
CREATE INDEX IF NOT EXISTS resolutions_awaiting_answer ON resolutions (answer_due_at)
    WHERE answer IS NULL AND reopened_later = 0 AND closed_at IS NULL;
CREATE INDEX IF NOT EXISTS satisfaction_ratings_by_rated ON satisfaction_ratings (rated_at);
CREATE INDEX IF NOT EXISTS complaint_rulings_by_complained ON complaint_rulings (complained_at);
CREATE TABLE IF NOT EXISTS ticket_links (
    ticket_id       TEXT    NOT NULL,
    other_ticket_id TEXT    NOT NULL,
    relation        TEXT    NOT NULL,
    linked_at       TEXT    NOT NULL,
    PRIMARY KEY (ticket_id, other_ticket_id, relation)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS retention_policies (
    policy_id        TEXT    NOT NULL PRIMARY KEY,
    category         TEXT,
    grade            TEXT,
    keep_days        INTEGER NOT NULL,
    effective_from   TEXT    NOT NULL,
    defined_at       TEXT    NOT NULL,
    defined_position INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS customer_erasures (
    position    INTEGER NOT NULL PRIMARY KEY,
    customer_id TEXT    NOT NULL,
    erased_at   TEXT    NOT NULL,
    erased_by   TEXT,
    reason      TEXT    NOT NULL,
    reference   TEXT    NOT NULL
) STRICT;

-- The retention scheduler's question: per customer and kind of ticket, whether all are
-- closed and the latest closure (a scan of this covering index, not of the table); and the
-- customer's latest erasure. The erasure report reads by time.
CREATE INDEX IF NOT EXISTS tickets_by_customer
    ON tickets (customer_id, category, grade, status, closed_at);
CREATE INDEX IF NOT EXISTS customer_erasures_by_customer
    ON customer_erasures (customer_id, erased_at);
CREATE INDEX IF NOT EXISTS customer_erasures_by_erased ON customer_erasures (erased_at);

CREATE INDEX IF NOT EXISTS complaint_charges_by_ruled ON complaint_charges (ruled_at);
CREATE INDEX IF NOT EXISTS follow_ups_by_due ON follow_ups (due_by);
-- The scheduler's question: follow-ups not recorded yet, by warning time.
CREATE INDEX IF NOT EXISTS follow_ups_open ON follow_ups (warn_at) WHERE recorded_at IS NULL;
CREATE INDEX IF NOT EXISTS inspection_samples_by_drawn ON inspection_samples (drawn_at);
CREATE INDEX IF NOT EXISTS inspections_by_inspected ON inspections (inspected_at);
CREATE INDEX IF NOT EXISTS reinspections_overdue_by_marked ON reinspections_overdue (marked_at);
-- The scheduler's question: failed inspections, by the month they are due again.
CREATE INDEX IF NOT EXISTS inspections_failed ON inspections (reinspect_in) WHERE verdict = 'fail';
CREATE INDEX IF NOT EXISTS inspections_by_ticket ON inspections (ticket_id, agent_id, period);
-- The scheduler's question: absences to start, and absences under way to end.
CREATE INDEX IF NOT EXISTS absences_to_start ON absences (from_at) WHERE state = 'planned';
CREATE INDEX IF NOT EXISTS absences_to_end ON absences (until_at) WHERE state = 'started';
CREATE INDEX IF NOT EXISTS absences_by_agent ON absences (agent_id, from_at);
-- The scheduler's question: step deadlines not done nor breached, by due time.
CREATE INDEX IF NOT EXISTS deadlines_open ON deadlines (due_at) WHERE met_at IS NULL AND breached_at IS NULL;
CREATE INDEX IF NOT EXISTS deadlines_by_due ON deadlines (due_at);
