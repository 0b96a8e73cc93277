-- The analysts' tables on PostgreSQL, in the read-model schema (`closeloop_read`, or `S_read`
-- for a log in schema S; written {schema} below, the code substitutes it). The same tables
-- and columns as on SQLite; times are timestamptz, flags boolean. Idempotent; run on every
-- connect. The README documents every column.
CREATE SCHEMA IF NOT EXISTS {schema};
-- An earlier version flattened the JSON model into a view of this name (DROP VIEW fails once
-- the name is the table).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_views WHERE schemaname = '{schema}' AND viewname = 'sla_timers') THEN
        DROP VIEW {schema}.sla_timers;
    END IF;
END
$$;
CREATE TABLE IF NOT EXISTS {schema}.tickets (
    ticket_id                        uuid        PRIMARY KEY,
    customer_id                      text        NOT NULL,
    grade                            text        NOT NULL,
    channel                          text        NOT NULL,
    category                         text        NOT NULL,
    priority                         text        NOT NULL,
    status                           text        NOT NULL,
    line                             integer     NOT NULL,
    assignee                         text,
    team                             text,
    opened_at                        timestamptz NOT NULL,
    first_response_at                timestamptz,
    resolved_at                      timestamptz,
    closed_at                        timestamptz,
    reopenings                       integer     NOT NULL,
    escalations                      integer     NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_open_by_assignee ON {schema}.tickets (assignee)
    WHERE status NOT IN ('resolved', 'closed');

CREATE TABLE IF NOT EXISTS {schema}.sla_timers (
    ticket_id                        uuid        NOT NULL,
    target                           text        NOT NULL,
    cycle                            integer     NOT NULL,
    status                           text        NOT NULL,
    started_at                       timestamptz NOT NULL,
    due_at                           timestamptz,
    warn_at                          timestamptz,
    warned_at                        timestamptz,
    breached_at                      timestamptz,
    fulfilled_at                     timestamptz,
    met                              boolean,
    target_minutes                   integer     NOT NULL,
    business_minutes_used            integer,
    calendar_minutes_used            integer,
    calendar_id                      text        NOT NULL,
    grade                            text        NOT NULL,
    priority                         text        NOT NULL,
    agent_id                         text,
    team                             text,
    latest                           boolean     NOT NULL,
    PRIMARY KEY (ticket_id, target, cycle)
);
-- The scheduler's and the at-risk list's question: live timers by due time.
CREATE INDEX IF NOT EXISTS sla_timers_open_by_due ON {schema}.sla_timers (due_at)
    WHERE fulfilled_at IS NULL AND status <> 'cancelled';

CREATE TABLE IF NOT EXISTS {schema}.assignments (
    ticket_id                        uuid        NOT NULL,
    seq                              integer     NOT NULL,
    agent_id                         text        NOT NULL,
    team                             text        NOT NULL,
    from_at                          timestamptz NOT NULL,
    until_at                         timestamptz,
    ended_by                         text,
    started_by                       text        NOT NULL,
    category                         text        NOT NULL,
    PRIMARY KEY (ticket_id, seq)
);

CREATE TABLE IF NOT EXISTS {schema}.resolutions (
    ticket_id                        uuid        NOT NULL,
    resolution                       integer     NOT NULL,
    resolved_by                      text        NOT NULL,
    team                             text,
    resolved_at                      timestamptz NOT NULL,
    first_response_business_minutes  integer,
    resolution_business_minutes      integer,
    one_touch                        boolean     NOT NULL,
    reopened_later                   boolean     NOT NULL,
    reopened_at                      timestamptz,
    category                         text        NOT NULL,
    grade                            text        NOT NULL,
    channel                          text        NOT NULL,
    answer                           text,
    answered_at                      timestamptz,
    answer_due_at                    timestamptz,
    closed_at                        timestamptz,
    close_reason                     text,
    PRIMARY KEY (ticket_id, resolution)
);

CREATE TABLE IF NOT EXISTS {schema}.satisfaction_ratings (
    ticket_id                        uuid        NOT NULL,
    resolution                       integer     NOT NULL,
    source                           text        NOT NULL,
    rated_at                         timestamptz NOT NULL,
    score                            integer     NOT NULL,
    agent_id                         text,
    team                             text,
    category                         text        NOT NULL,
    grade                            text        NOT NULL,
    channel                          text        NOT NULL,
    recognition                      integer,
    efficiency                       integer,
    quality                          integer,
    overall                          integer,
    PRIMARY KEY (ticket_id, resolution, source)
);

CREATE TABLE IF NOT EXISTS {schema}.agents (
    agent_id                         text        PRIMARY KEY,
    team                             text        NOT NULL,
    line                             integer     NOT NULL,
    level                            text        NOT NULL,
    team_lead                        boolean     NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.complaint_rulings (
    ticket_id                        uuid        NOT NULL,
    ruling                           integer     NOT NULL,
    ruled_at                         timestamptz NOT NULL,
    ruled_by                         text        NOT NULL,
    ruled_by_role                    text        NOT NULL,
    justified                        boolean     NOT NULL,
    cause                            text        NOT NULL,
    charged                          integer     NOT NULL,
    assignee                         text,
    team                             text,
    complained_at                    timestamptz NOT NULL,
    superseded_at                    timestamptz,
    PRIMARY KEY (ticket_id, ruling)
);

CREATE TABLE IF NOT EXISTS {schema}.complaint_charges (
    ticket_id                        uuid        NOT NULL,
    ruling                           integer     NOT NULL,
    agent_id                         text        NOT NULL,
    team                             text        NOT NULL,
    ruled_at                         timestamptz NOT NULL,
    superseded_at                    timestamptz,
    PRIMARY KEY (ticket_id, ruling, agent_id)
);

CREATE TABLE IF NOT EXISTS {schema}.scorecards (
    team                               text        NOT NULL,
    effective_from                     text        NOT NULL,
    results_percent                    integer     NOT NULL,
    basic_percent                      integer     NOT NULL,
    discipline_percent                 integer     NOT NULL,
    bonus_per_excellent_rating         double precision NOT NULL,
    bonus_cap_points                   double precision NOT NULL,
    deduction_per_justified_complaint  double precision NOT NULL,
    deduction_cap_points               double precision NOT NULL,
    defined_at                         timestamptz NOT NULL,
    PRIMARY KEY (team, effective_from)
);

CREATE TABLE IF NOT EXISTS {schema}.follow_ups (
    ticket_id                        uuid        NOT NULL,
    follow_up                        integer     NOT NULL,
    kind                             text        NOT NULL,
    owner                            text        NOT NULL,
    team                             text        NOT NULL,
    scheduled_at                     timestamptz NOT NULL,
    due_by                           timestamptz NOT NULL,
    warn_at                          timestamptz NOT NULL,
    warned_at                        timestamptz,
    overdue_at                       timestamptz,
    recorded_at                      timestamptz,
    recorded_by                      text,
    outcome                          text,
    visited_at                       timestamptz,
    signed                           boolean,
    entered_late                     boolean,
    in_time                          boolean,
    PRIMARY KEY (ticket_id, follow_up)
);

CREATE TABLE IF NOT EXISTS {schema}.inspection_samples (
    sample_id                        uuid        PRIMARY KEY,
    period                           text        NOT NULL,
    agent_id                         text        NOT NULL,
    team                             text        NOT NULL,
    drawn_at                         timestamptz NOT NULL,
    seed                             text        NOT NULL,
    candidates                       integer     NOT NULL,
    items                            integer     NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.inspections (
    sample_id                        uuid        NOT NULL,
    ticket_id                        uuid        NOT NULL,
    period                           text        NOT NULL,
    agent_id                         text        NOT NULL,
    team                             text        NOT NULL,
    inspected_at                     timestamptz NOT NULL,
    inspector                        text        NOT NULL,
    recognition                      integer     NOT NULL,
    efficiency                       integer     NOT NULL,
    quality                          integer     NOT NULL,
    overall                          integer     NOT NULL,
    log_complete                     boolean     NOT NULL,
    visit_verified                   boolean,
    verdict                          text        NOT NULL,
    reinspect_in                     text,
    PRIMARY KEY (sample_id, ticket_id)
);

CREATE TABLE IF NOT EXISTS {schema}.reinspections_overdue (
    sample_id                        uuid        NOT NULL,
    ticket_id                        uuid        NOT NULL,
    period                           text        NOT NULL,
    due_in                           text        NOT NULL,
    agent_id                         text        NOT NULL,
    team                             text        NOT NULL,
    marked_at                        timestamptz NOT NULL,
    PRIMARY KEY (sample_id, ticket_id)
);

CREATE TABLE IF NOT EXISTS {schema}.absences (
    absence_id                       uuid        NOT NULL PRIMARY KEY,
    agent_id                         text        NOT NULL,
    from_at                          timestamptz NOT NULL,
    until_at                         timestamptz NOT NULL,
    reason                           text        NOT NULL,
    backup_agent_id                  text        NOT NULL,
    state                            text        NOT NULL,
    changed_at                       timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.deadlines (
    ticket_id                        uuid        NOT NULL,
    deadline                         integer     NOT NULL,
    kind                             text        NOT NULL,
    owner                            text        NOT NULL,
    team                             text        NOT NULL,
    calendar_id                      text,
    set_at                           timestamptz NOT NULL,
    due_at                           timestamptz,
    warn_at                          timestamptz,
    status                           text        NOT NULL,
    met_at                           timestamptz,
    warned_at                        timestamptz,
    breached_at                      timestamptz,
    consequence                      text,
    PRIMARY KEY (ticket_id, deadline)
);

-- Private to the projector: each ticket's fold state (JSON), and the checkpoint with the
-- calendars in force, written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS {schema}.ticket_state (
    ticket_id                        uuid        PRIMARY KEY,
    state                            text        NOT NULL
);

-- A state's JSON is about 2 KB, just past the size at which PostgreSQL compresses a value:
-- with its default method (pglz) that compression was a sixth of the server's work in a
-- replay. lz4 does the same job several times faster; servers built without it keep pglz.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
                WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))
       AND EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = '{schema}.ticket_state'::regclass
                      AND attname = 'state' AND attcompression <> 'l') THEN
        ALTER TABLE {schema}.ticket_state ALTER COLUMN state SET COMPRESSION lz4;
    END IF;
END $$;

CREATE TABLE IF NOT EXISTS {schema}.table_checkpoint (
    name                             text        PRIMARY KEY,
    version                          integer     NOT NULL,
    position                         bigint      NOT NULL CHECK (position >= 0),
    calendars                        text
);

-- Reads (see read.rs): the SLA list's order over latest cycles, the scheduler's warnings,
-- and the dated columns statistics range over.
CREATE INDEX IF NOT EXISTS sla_timers_latest_by_due
    ON {schema}.sla_timers ((coalesce(due_at, 'infinity'::timestamptz)), ticket_id, target) WHERE latest;
CREATE INDEX IF NOT EXISTS sla_timers_open_by_warn ON {schema}.sla_timers (warn_at)
    WHERE fulfilled_at IS NULL AND status <> 'cancelled';
CREATE INDEX IF NOT EXISTS sla_timers_by_fulfilled ON {schema}.sla_timers (fulfilled_at);
CREATE INDEX IF NOT EXISTS tickets_by_opened ON {schema}.tickets (opened_at);
CREATE INDEX IF NOT EXISTS tickets_by_closed ON {schema}.tickets (closed_at);
CREATE INDEX IF NOT EXISTS assignments_by_from ON {schema}.assignments (from_at);
CREATE INDEX IF NOT EXISTS assignments_by_until ON {schema}.assignments (until_at);
CREATE INDEX IF NOT EXISTS resolutions_by_resolved ON {schema}.resolutions (resolved_at);
CREATE INDEX IF NOT EXISTS resolutions_by_reopened ON {schema}.resolutions (reopened_at);
-- The scheduler's question: resolutions still awaiting the customer's answer, by deadline.
CREATE INDEX IF NOT EXISTS resolutions_awaiting_answer ON {schema}.resolutions (answer_due_at)
    WHERE answer IS NULL AND NOT reopened_later AND closed_at IS NULL;
CREATE INDEX IF NOT EXISTS satisfaction_ratings_by_rated ON {schema}.satisfaction_ratings (rated_at);
-- Which build of the tables (see `Saved::generation`); '' until `open` sets one.
ALTER TABLE {schema}.table_checkpoint ADD COLUMN IF NOT EXISTS generation text NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS complaint_rulings_by_complained ON {schema}.complaint_rulings (complained_at);
CREATE TABLE IF NOT EXISTS {schema}.ticket_links (
    ticket_id                        uuid        NOT NULL,
    other_ticket_id                  uuid        NOT NULL,
    relation                         text        NOT NULL,
    linked_at                        timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, other_ticket_id, relation)
);

CREATE TABLE IF NOT EXISTS {schema}.retention_policies (
    policy_id                        text        NOT NULL PRIMARY KEY,
    category                         text,
    grade                            text,
    keep_days                        integer     NOT NULL,
    effective_from                   timestamptz NOT NULL,
    defined_at                       timestamptz NOT NULL,
    defined_position                 bigint      NOT NULL
);

CREATE TABLE IF NOT EXISTS {schema}.customer_erasures (
    position                         bigint      NOT NULL PRIMARY KEY,
    customer_id                      text        NOT NULL,
    erased_at                        timestamptz NOT NULL,
    erased_by                        text,
    reason                           text        NOT NULL,
    reference                        text        NOT NULL
);

-- The retention scheduler's question: per customer and kind of ticket, whether all are
-- closed and the latest closure (an index-only scan of this covering index); and the
-- customer's latest erasure. The erasure report reads by time.
CREATE INDEX IF NOT EXISTS tickets_by_customer
    ON {schema}.tickets (customer_id, category, grade, status, closed_at);
CREATE INDEX IF NOT EXISTS customer_erasures_by_customer
    ON {schema}.customer_erasures (customer_id, erased_at);
CREATE INDEX IF NOT EXISTS customer_erasures_by_erased ON {schema}.customer_erasures (erased_at);

CREATE INDEX IF NOT EXISTS complaint_charges_by_ruled ON {schema}.complaint_charges (ruled_at);
CREATE INDEX IF NOT EXISTS follow_ups_by_due ON {schema}.follow_ups (due_by);
-- The scheduler's question: follow-ups not recorded yet, by warning time.
CREATE INDEX IF NOT EXISTS follow_ups_open ON {schema}.follow_ups (warn_at) WHERE recorded_at IS NULL;
CREATE INDEX IF NOT EXISTS inspection_samples_by_drawn ON {schema}.inspection_samples (drawn_at);
CREATE INDEX IF NOT EXISTS inspections_by_inspected ON {schema}.inspections (inspected_at);
CREATE INDEX IF NOT EXISTS reinspections_overdue_by_marked ON {schema}.reinspections_overdue (marked_at);
-- The scheduler's question: failed inspections, by the month they are due again.
CREATE INDEX IF NOT EXISTS inspections_failed ON {schema}.inspections (reinspect_in) WHERE verdict = 'fail';
CREATE INDEX IF NOT EXISTS inspections_by_ticket ON {schema}.inspections (ticket_id, agent_id, period);
-- The scheduler's question: absences to start, and absences under way to end.
CREATE INDEX IF NOT EXISTS absences_to_start ON {schema}.absences (from_at) WHERE state = 'planned';
CREATE INDEX IF NOT EXISTS absences_to_end ON {schema}.absences (until_at) WHERE state = 'started';
CREATE INDEX IF NOT EXISTS absences_by_agent ON {schema}.absences (agent_id, from_at);
-- The scheduler's question: step deadlines not done nor breached, by due time.
CREATE INDEX IF NOT EXISTS deadlines_open ON {schema}.deadlines (due_at) WHERE met_at IS NULL AND breached_at IS NULL;
CREATE INDEX IF NOT EXISTS deadlines_by_due ON {schema}.deadlines (due_at);
