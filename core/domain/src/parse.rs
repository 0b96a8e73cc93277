//! Strict decoding of a command from bytes. Every failure names the offending field as a JSON
//! Pointer (`/payload/priority`), so callers in any language can show it next to the input.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::command::*;
use super::limits::*;
use super::rejection::{Detail, Rejection, RejectionCode};
use super::types::*;

const ENVELOPE_FIELDS: &[&str] = &[
    "command_id",
    "type",
    "actor",
    "occurred_at",
    "expected_version",
    "payload",
];

/// A command that could not be decoded, with its id when that much was readable.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseFailure {
    pub command_id: Option<Uuid>,
    pub rejection: Rejection,
}

/// Decodes and validates one command. Nothing about the store is consulted here.
pub fn parse_command(bytes: &[u8]) -> Result<CommandEnvelope, ParseFailure> {
    let fail = |command_id, rejection| ParseFailure {
        command_id,
        rejection,
    };
    if bytes.len() > COMMAND_BYTES_MAX {
        return Err(fail(
            None,
            Rejection::validation(
                "",
                format!(
                    "command is {} bytes; at most {COMMAND_BYTES_MAX} are accepted",
                    bytes.len()
                ),
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        fail(
            None,
            Rejection::validation("", format!("command is not UTF-8: {e}")),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        fail(
            None,
            Rejection::validation("", format!("malformed JSON: {e}")),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(fail(
            None,
            Rejection::validation("", "expected a JSON object"),
        ));
    };
    let command_id = object
        .get("command_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    if let Err((path, message)) = super::strict::check(text) {
        return Err(fail(command_id, Rejection::validation(&path, message)));
    }
    parse_object(&mut object).map_err(|rejection| fail(command_id, rejection))
}

/// The earliest business time a command may carry: anything earlier is a mistake (the engine
/// did not exist). The latest is the last a timestamp holds (9999-12-30T22:00:00Z): a
/// four-digit year, as the log's columns and calendars need.
pub const OCCURRED_AT_MIN: &str = "2000-01-01T00:00:00Z";

/// [`OCCURRED_AT_MIN`] as the schemas state it, for a JSON Schema `pattern` beside the
/// `date-time` format (which checks the rest): a year from 2000 to 9998, and on 2000-01-01
/// only UTC (`Z`, `+00:00`) or a negative offset. A pattern cannot compare instants, so it
/// is a little stricter than the parser, never looser: it also refuses 2000-01-01 written
/// with a positive offset, the last of 1999 written with a negative one that
/// fall in 2000, and the year 9999 (whose last day a timestamp cannot hold). Any time
/// written in UTC is judged alike.
pub const OCCURRED_AT_PATTERN: &str = concat!(
    "^(?:(?:200[1-9]|20[1-9][0-9]|2[1-9][0-9]{2}|[3-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-",
    "|2000-(?:0[2-9]|1[0-2])-",
    "|2000-01-(?:0[2-9]|[12][0-9]|3[01])",
    "|2000-01-01[Tt][^+]*(?:[Zz]|[+-]00:00|-[0-9]{2}:[0-9]{2})$)"
);

fn parse_object(object: &mut Map<String, Value>) -> Result<CommandEnvelope, Rejection> {
    if let Some(unknown) = object
        .keys()
        .find(|k| !ENVELOPE_FIELDS.contains(&k.as_str()))
    {
        return Err(Rejection::validation(
            &format!("/{}", escape(unknown)),
            format!(
                "unknown field; expected one of {}",
                ENVELOPE_FIELDS.join(", ")
            ),
        ));
    }
    let command_id: Uuid = field(object, "command_id", true)?.expect("required");
    let command_type: String = field(object, "type", true)?.expect("required");
    if !Command::TYPES.contains(&command_type.as_str()) {
        return Err(Rejection::validation(
            "/type",
            format!(
                "unknown command type `{command_type}`; expected one of {}",
                Command::TYPES.join(", ")
            ),
        ));
    }
    if object.get("actor").is_some_and(|a| !a.is_object()) {
        return Err(Rejection::validation("/actor", "expected a JSON object"));
    }
    let actor: Actor = field(object, "actor", true)?.expect("required");
    let occurred_at: Option<jiff::Timestamp> = field(object, "occurred_at", false)?;
    if let Some(at) = occurred_at {
        let min: jiff::Timestamp = OCCURRED_AT_MIN.parse().expect("a valid time");
        if at < min {
            return Err(Rejection::validation(
                "/occurred_at",
                format!("must be {OCCURRED_AT_MIN} or later"),
            ));
        }
    }
    let expected_version: Option<u64> = field(object, "expected_version", false)?;
    let payload = object
        .remove("payload")
        .ok_or_else(|| Rejection::validation("/payload", "missing required field"))?;
    if !payload.is_object() {
        return Err(Rejection::validation("/payload", "expected a JSON object"));
    }
    let command = Command::decode(&command_type, payload)
        .expect("type checked against Command::TYPES above")
        .map_err(|e| serde_rejection("/payload", e))?;
    validate_actor(&actor)?;
    validate(&command)?;
    Ok(CommandEnvelope {
        command_id,
        actor,
        occurred_at,
        expected_version,
        command,
    })
}

/// Takes and decodes one envelope field, with its path in any error.
fn field<T: serde::de::DeserializeOwned>(
    object: &mut Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<T>, Rejection> {
    let path = format!("/{name}");
    match object.remove(name) {
        None | Some(Value::Null) if required => {
            Err(Rejection::validation(&path, "missing required field"))
        }
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_path_to_error::deserialize(value)
            .map(Some)
            .map_err(|e| serde_rejection(&path, e)),
    }
}

/// Turns a serde error into a rejection whose path points at the field itself, including
/// the field a "missing field" or "unknown field" message names.
fn serde_rejection(
    prefix: &str,
    error: serde_path_to_error::Error<serde_json::Error>,
) -> Rejection {
    let mut path = prefix.to_owned();
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("/{index}")),
            serde_path_to_error::Segment::Map { key } => {
                path.push_str(&format!("/{}", escape(key)))
            }
            serde_path_to_error::Segment::Enum { variant } => {
                path.push_str(&format!("/{}", escape(variant)))
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let message = error.inner().to_string();
    // serde reports a missing field at its container; point at the field instead.
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((name, _)) = rest.split_once('`') {
                if !path.ends_with(&format!("/{}", escape(name))) {
                    path.push_str(&format!("/{}", escape(name)));
                }
            }
        }
    }
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(&message)
        .to_owned();
    Rejection::validation(&path, message)
}

/// JSON Pointer escaping (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Collects field problems so one reply can list them all.
#[derive(Default)]
struct Problems(Vec<Detail>);

impl Problems {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Detail {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn text(&mut self, path: &str, value: &str, chars_max: usize) {
        if value.trim().is_empty() {
            self.add(path, "must not be empty");
        } else if value.chars().count() > chars_max {
            self.add(path, format!("longer than {chars_max} characters"));
        }
    }

    fn optional_text(&mut self, path: &str, value: &Option<String>, chars_max: usize) {
        if let Some(value) = value {
            self.text(path, value, chars_max);
        }
    }

    fn id(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.add(path, "must not be empty");
        } else if value.chars().count() > ID_CHARS_MAX {
            self.add(path, format!("longer than {ID_CHARS_MAX} characters"));
        } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.add(path, "must not contain white space or control characters");
        }
    }

    /// A complaint-cause code: `[a-z0-9_]`, 1..=[`CAUSE_CODE_CHARS_MAX`] characters.
    fn cause_code(&mut self, path: &str, value: &str) {
        if value.is_empty() || value.len() > CAUSE_CODE_CHARS_MAX {
            self.add(
                path,
                format!("must be 1..={CAUSE_CODE_CHARS_MAX} characters"),
            );
        } else if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            self.add(path, "only lowercase letters, digits and `_`");
        }
    }

    /// A span of working hours at `path`: `start` and `end` clock times, the end after the
    /// start.
    fn span(&mut self, path: &str, start: &str, end: &str) {
        let (start, end) = (parse_clock(start, false), parse_clock(end, true));
        if start.is_none() {
            self.add(
                &format!("{path}/start"),
                "expected HH:MM between 00:00 and 23:59",
            );
        }
        if end.is_none() {
            self.add(
                &format!("{path}/end"),
                "expected HH:MM between 00:01 and 24:00",
            );
        }
        if let (Some(start), Some(end)) = (start, end) {
            if end <= start {
                self.add(&format!("{path}/end"), "must be after start");
            }
        }
    }

    fn range(&mut self, path: &str, value: u32, min: u32, max: u32) {
        if value < min || value > max {
            self.add(
                path,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn finish(self) -> Result<(), Rejection> {
        if self.0.is_empty() {
            return Ok(());
        }
        let message = self
            .0
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Rejection {
            code: RejectionCode::Validation,
            kind: RejectionCode::Validation.kind(),
            message,
            details: self.0,
        })
    }
}

fn validate_actor(actor: &Actor) -> Result<(), Rejection> {
    let mut p = Problems::default();
    p.id("/actor/id", &actor.id);
    p.finish()
}

/// Range and shape checks that the types alone cannot express.
fn validate(command: &Command) -> Result<(), Rejection> {
    let mut p = Problems::default();
    match command {
        Command::OpenTicket(c) => {
            p.id("/payload/customer_id", &c.customer_id);
            p.text("/payload/subject", &c.subject, SHORT_TEXT_CHARS_MAX);
            p.optional_text("/payload/description", &c.description, TEXT_CHARS_MAX);
        }
        Command::AssignTicket(c) => p.id("/payload/agent_id", &c.agent_id),
        Command::RespondToCustomer(c) => p.text("/payload/message", &c.message, TEXT_CHARS_MAX),
        Command::RequestCustomerInfo(c) => p.text("/payload/question", &c.question, TEXT_CHARS_MAX),
        Command::RecordCustomerReply(c) => p.text("/payload/message", &c.message, TEXT_CHARS_MAX),
        Command::EscalateTicket(c) => {
            p.text("/payload/reason", &c.reason, TEXT_CHARS_MAX);
            if let Some(agent) = &c.to_agent_id {
                p.id("/payload/to_agent_id", agent);
            }
        }
        Command::ChangePriority(c) => p.text("/payload/reason", &c.reason, TEXT_CHARS_MAX),
        Command::AddNote(c) => p.text("/payload/text", &c.text, TEXT_CHARS_MAX),
        Command::ResolveTicket(c) => p.text("/payload/resolution", &c.resolution, TEXT_CHARS_MAX),
        Command::ReopenTicket(c) => p.text("/payload/reason", &c.reason, TEXT_CHARS_MAX),
        Command::MergeTicket(c) => p.text("/payload/reason", &c.reason, TEXT_CHARS_MAX),
        Command::LinkTickets(_) => {}
        Command::CloseTicket(_)
        | Command::RaiseSlaWarning(_)
        | Command::RecordSlaBreach(_)
        | Command::CloseUnconfirmed(_) => {}
        Command::ConfirmResolution(c) => {
            p.optional_text("/payload/comment", &c.comment, TEXT_CHARS_MAX)
        }
        Command::RejectResolution(c) => p.text("/payload/reason", &c.reason, TEXT_CHARS_MAX),
        Command::RecordSatisfaction(c) => {
            p.range("/payload/score", c.score.into(), 1, 5);
            p.optional_text("/payload/comment", &c.comment, TEXT_CHARS_MAX);
            if let Some(d) = &c.dimensions {
                if c.source != RatingSource::Callback {
                    p.add(
                        "/payload/dimensions",
                        "only quality-inspection callbacks (source: callback) carry dimensions",
                    );
                }
                for (name, value) in [
                    ("recognition", d.recognition),
                    ("efficiency", d.efficiency),
                    ("quality", d.quality),
                    ("overall", d.overall),
                ] {
                    p.range(&format!("/payload/dimensions/{name}"), value.into(), 1, 5);
                }
            }
        }
        Command::RegisterAgent(c) => {
            p.id("/payload/agent_id", &c.agent_id);
            p.text("/payload/name", &c.name, SHORT_TEXT_CHARS_MAX);
            p.text("/payload/team", &c.team, SHORT_TEXT_CHARS_MAX);
            p.range(
                "/payload/line",
                c.line.into(),
                LINE_MIN.into(),
                LINE_MAX.into(),
            );
            if let Some(backup) = &c.backup_agent_id {
                p.id("/payload/backup_agent_id", backup);
                if backup == &c.agent_id {
                    p.add(
                        "/payload/backup_agent_id",
                        "an agent cannot be their own backup",
                    );
                }
            }
        }
        Command::SetAgentAvailability(c) => {
            p.id("/payload/agent_id", &c.agent_id);
            if let Some(backup) = &c.backup_agent_id {
                p.id("/payload/backup_agent_id", backup);
                if backup == &c.agent_id {
                    p.add(
                        "/payload/backup_agent_id",
                        "an agent cannot be their own backup",
                    );
                }
            }
        }
        Command::PlanAbsence(c) => {
            p.id("/payload/agent_id", &c.agent_id);
            if c.until <= c.from {
                p.add("/payload/until", "must be after from");
            }
            if let Some(backup) = &c.backup_agent_id {
                p.id("/payload/backup_agent_id", backup);
                if backup == &c.agent_id {
                    p.add(
                        "/payload/backup_agent_id",
                        "an agent cannot be their own backup",
                    );
                }
            }
        }
        Command::CancelAbsence(CancelAbsence { agent_id, .. })
        | Command::StartAbsence(StartAbsence { agent_id, .. })
        | Command::EndAbsence(EndAbsence { agent_id, .. }) => p.id("/payload/agent_id", agent_id),
        Command::RegisterCustomer(c) => {
            p.id("/payload/customer_id", &c.customer_id);
            p.text("/payload/name", &c.name, SHORT_TEXT_CHARS_MAX);
            if let Some(manager) = &c.account_manager_id {
                p.id("/payload/account_manager_id", manager);
            }
        }
        Command::EraseCustomerData(c) => {
            p.id("/payload/customer_id", &c.customer_id);
            p.text("/payload/reason", &c.reason, SHORT_TEXT_CHARS_MAX);
            p.id("/payload/reference", &c.reference);
        }
        Command::DefineRetentionPolicy(c) => {
            p.id("/payload/policy_id", &c.policy_id);
            p.range("/payload/keep_days", c.keep_days, 1, RETENTION_DAYS_MAX);
        }
        Command::DefineCalendar(c) => {
            p.id("/payload/calendar_id", &c.calendar_id);
            if jiff::tz::TimeZone::get(&c.time_zone).is_err() {
                p.add(
                    "/payload/time_zone",
                    format!("`{}` is not an IANA time-zone name", c.time_zone),
                );
            }
            if c.weekly_hours.is_empty() {
                p.add(
                    "/payload/weekly_hours",
                    "needs at least one span of working hours",
                );
            }
            for (i, span) in c.weekly_hours.iter().enumerate() {
                p.span(
                    &format!("/payload/weekly_hours/{i}"),
                    &span.start,
                    &span.end,
                );
            }
            // Each date in at most one of the three lists, once (the order of the rules in
            // `DefineCalendar` then never decides between two entries).
            let mut named: std::collections::HashMap<jiff::civil::Date, &str> =
                c.holidays.iter().map(|&date| (date, "holidays")).collect();
            for (list, len) in [
                ("working_days", c.working_days.len()),
                ("hours_overrides", c.hours_overrides.len()),
            ] {
                if len > CALENDAR_DATES_MAX {
                    p.add(
                        &format!("/payload/{list}"),
                        format!("at most {CALENDAR_DATES_MAX} dates, got {len}"),
                    );
                }
            }
            let working_days = c.working_days.iter().enumerate().map(|(i, d)| {
                let path = format!("/payload/working_days/{i}");
                ("working_days", path, d.date, &d.hours)
            });
            let overrides = c.hours_overrides.iter().enumerate().map(|(i, d)| {
                let path = format!("/payload/hours_overrides/{i}");
                ("hours_overrides", path, d.date, &d.hours)
            });
            for (list, path, date, hours) in working_days.chain(overrides) {
                if let Some(earlier) = named.insert(date, list) {
                    p.add(
                        &format!("{path}/date"),
                        format!("{date} is listed twice: in {earlier} and in {list}"),
                    );
                }
                if list == "working_days" && hours.is_empty() {
                    p.add(
                        &format!("{path}/hours"),
                        "a make-up working day needs at least one span of working hours",
                    );
                }
                if hours.len() > DAY_SPANS_MAX {
                    p.add(
                        &format!("{path}/hours"),
                        format!("at most {DAY_SPANS_MAX} spans, got {}", hours.len()),
                    );
                }
                for (j, span) in hours.iter().enumerate() {
                    p.span(&format!("{path}/hours/{j}"), &span.start, &span.end);
                }
            }
        }
        Command::RegisterInspector(c) => {
            p.id("/payload/inspector_id", &c.inspector_id);
            p.text("/payload/name", &c.name, SHORT_TEXT_CHARS_MAX);
        }
        Command::DefineComplaintCauses(c) => {
            if c.causes.is_empty() || c.causes.len() > COMPLAINT_CAUSES_MAX {
                p.add(
                    "/payload/causes",
                    format!(
                        "needs 1..={COMPLAINT_CAUSES_MAX} causes, got {}",
                        c.causes.len()
                    ),
                );
            }
            for (i, cause) in c.causes.iter().enumerate() {
                let path = format!("/payload/causes/{i}/code");
                p.cause_code(&path, &cause.code);
                if c.causes[..i]
                    .iter()
                    .any(|earlier| earlier.code == cause.code)
                {
                    p.add(&path, format!("cause `{}` is listed twice", cause.code));
                }
                p.text(
                    &format!("/payload/causes/{i}/label"),
                    &cause.label,
                    SHORT_TEXT_CHARS_MAX,
                );
            }
        }
        Command::RuleComplaint(c) => {
            p.cause_code("/payload/cause", &c.cause);
            p.text("/payload/note", &c.note, TEXT_CHARS_MAX);
            if c.charged.len() > CHARGED_STAFF_MAX {
                p.add(
                    "/payload/charged",
                    format!("at most {CHARGED_STAFF_MAX} staff, got {}", c.charged.len()),
                );
            }
            if !c.justified && !c.charged.is_empty() {
                p.add(
                    "/payload/charged",
                    "an unjustified complaint charges nobody",
                );
            }
            for (i, agent) in c.charged.iter().enumerate() {
                let path = format!("/payload/charged/{i}");
                p.id(&path, agent);
                if c.charged[..i].contains(agent) {
                    p.add(&path, format!("{agent} is charged twice"));
                }
            }
        }
        Command::ScheduleFollowUp(c) => p.id("/payload/owner", &c.owner),
        Command::RecordFollowUp(c) => {
            p.text("/payload/summary", &c.summary, TEXT_CHARS_MAX);
            if c.follow_up == 0 {
                p.add("/payload/follow_up", "follow-ups are numbered from 1");
            }
        }
        Command::RaiseFollowUpWarning(_)
        | Command::RecordFollowUpOverdue(_)
        | Command::RecordReinspectionOverdue(_) => {}
        Command::DefineDeadlineKind(c) => {
            p.cause_code("/payload/kind", &c.kind);
            match (c.business_minutes, c.business_hours) {
                (Some(_), Some(_)) => p.add(
                    "/payload/business_hours",
                    "give the duration once: business_minutes or business_hours",
                ),
                (None, None) => p.add(
                    "/payload/business_minutes",
                    "a kind needs its default duration: business_minutes or business_hours",
                ),
                _ => {}
            }
            if c.business_minutes
                .is_some_and(|m| m == 0 || m > TARGET_MINUTES_MAX)
            {
                p.add(
                    "/payload/business_minutes",
                    format!("must be 1..={TARGET_MINUTES_MAX}"),
                );
            }
            if c.business_hours
                .is_some_and(|h| h == 0 || h > DEADLINE_HOURS_MAX)
            {
                p.add(
                    "/payload/business_hours",
                    format!("must be 1..={DEADLINE_HOURS_MAX}"),
                );
            }
            let minutes = c.minutes();
            if minutes > 0 && c.warn_before_minutes >= minutes {
                p.add(
                    "/payload/warn_before_minutes",
                    format!("must be less than the duration ({minutes} business minutes)"),
                );
            }
            if let Some(calendar) = &c.calendar_id {
                p.id("/payload/calendar_id", calendar);
            }
        }
        Command::SetDeadline(c) => {
            p.cause_code("/payload/kind", &c.kind);
            p.id("/payload/owner", &c.owner);
            if c.business_minutes.is_some() && c.due_at.is_some() {
                p.add(
                    "/payload/due_at",
                    "give the due time once: business_minutes or due_at",
                );
            }
            if c.business_minutes
                .is_some_and(|m| m == 0 || m > TARGET_MINUTES_MAX)
            {
                p.add(
                    "/payload/business_minutes",
                    format!("must be 1..={TARGET_MINUTES_MAX}"),
                );
            }
        }
        Command::CompleteDeadline(CompleteDeadline { deadline, .. })
        | Command::RaiseDeadlineWarning(RaiseDeadlineWarning { deadline, .. })
        | Command::RecordDeadlineBreach(RecordDeadlineBreach { deadline, .. }) => {
            if *deadline == 0 {
                p.add("/payload/deadline", "deadlines are numbered from 1");
            }
        }
        Command::DrawInspectionSample(c) => {
            p.id("/payload/agent_id", &c.agent_id);
            if !is_month(&c.period) {
                p.add("/payload/period", "expected a month, YYYY-MM");
            }
            p.range("/payload/size", c.size, 1, INSPECTION_SIZE_MAX);
            if c.candidates.is_empty() || c.candidates.len() > INSPECTION_CANDIDATES_MAX {
                p.add(
                    "/payload/candidates",
                    format!(
                        "needs 1..={INSPECTION_CANDIDATES_MAX} tickets, got {}",
                        c.candidates.len()
                    ),
                );
            }
            let mut seen = std::collections::HashSet::new();
            for (i, id) in c.candidates.iter().enumerate() {
                if !seen.insert(id) {
                    p.add(
                        &format!("/payload/candidates/{i}"),
                        format!("{id} is listed twice"),
                    );
                }
            }
            if c.reinspect.len() > INSPECTION_SIZE_MAX as usize {
                p.add(
                    "/payload/reinspect",
                    format!("at most {INSPECTION_SIZE_MAX} tickets"),
                );
            }
            let mut again = std::collections::HashSet::new();
            for (i, id) in c.reinspect.iter().enumerate() {
                if !again.insert(id) {
                    p.add(
                        &format!("/payload/reinspect/{i}"),
                        format!("{id} is listed twice"),
                    );
                }
            }
        }
        Command::RecordInspection(c) => {
            p.text("/payload/note", &c.note, TEXT_CHARS_MAX);
            let d = &c.dimensions;
            for (name, value) in [
                ("recognition", d.recognition),
                ("efficiency", d.efficiency),
                ("quality", d.quality),
                ("overall", d.overall),
            ] {
                p.range(&format!("/payload/dimensions/{name}"), value.into(), 1, 5);
            }
        }
        Command::DefineScorecard(c) => {
            if let Some(team) = &c.team {
                p.text("/payload/team", team, SHORT_TEXT_CHARS_MAX);
            }
            if c.effective_from < jiff::civil::date(2000, 1, 1) {
                p.add("/payload/effective_from", "must be 2000-01-01 or later");
            }
            let (r, b, d) = (c.results_percent, c.basic_percent, c.discipline_percent);
            if r < SCORECARD_RESULTS_MIN {
                p.add(
                    "/payload/results_percent",
                    format!(
                        "results weigh at least {SCORECARD_RESULTS_MIN}% of the score, got {r}"
                    ),
                );
            }
            if b < SCORECARD_BASIC_MIN {
                p.add(
                    "/payload/basic_percent",
                    format!("basic service work weighs at least {SCORECARD_BASIC_MIN}% of the score, got {b}"),
                );
            }
            if d > SCORECARD_DISCIPLINE_MAX {
                p.add(
                    "/payload/discipline_percent",
                    format!("daily discipline weighs at most {SCORECARD_DISCIPLINE_MAX}% of the score, got {d}"),
                );
            }
            let sum = u32::from(r) + u32::from(b) + u32::from(d);
            if sum != 100 {
                p.add(
                    "/payload",
                    format!("results_percent + basic_percent + discipline_percent must be 100, got {sum}"),
                );
            }
            for (name, value) in [
                ("bonus_per_excellent_rating", c.bonus_per_excellent_rating),
                ("bonus_cap_points", c.bonus_cap_points),
                (
                    "deduction_per_justified_complaint",
                    c.deduction_per_justified_complaint,
                ),
                ("deduction_cap_points", c.deduction_cap_points),
            ] {
                if !(0.0..=SCORECARD_ITEM_POINTS_MAX).contains(&value) {
                    p.add(
                        &format!("/payload/{name}"),
                        format!("must be between 0 and {SCORECARD_ITEM_POINTS_MAX} points (10% of the total), got {value}"),
                    );
                }
            }
        }
        Command::DefineSlaPolicy(c) => {
            p.id("/payload/policy_id", &c.policy_id);
            p.id("/payload/calendar_id", &c.calendar_id);
            p.range(
                "/payload/first_response_minutes",
                c.first_response_minutes,
                1,
                TARGET_MINUTES_MAX,
            );
            p.range(
                "/payload/resolution_minutes",
                c.resolution_minutes,
                1,
                TARGET_MINUTES_MAX,
            );
            if let Some(next) = c.next_response_minutes {
                p.range(
                    "/payload/next_response_minutes",
                    next,
                    1,
                    TARGET_MINUTES_MAX,
                );
            }
            if c.first_response_minutes > c.resolution_minutes {
                p.add(
                    "/payload/first_response_minutes",
                    "must not exceed resolution_minutes",
                );
            }
            p.range("/payload/warn_at_percent", c.warn_at_percent.into(), 1, 99);
            if let Some(days) = c.confirmation_wait_days {
                p.range(
                    "/payload/confirmation_wait_days",
                    days.into(),
                    1,
                    CONFIRMATION_WAIT_DAYS_MAX.into(),
                );
            }
        }
    }
    p.finish()
}

/// `YYYY-MM`, a month from 2000 on.
fn is_month(text: &str) -> bool {
    let Some((y, m)) = text.split_once('-') else {
        return false;
    };
    y.len() == 4
        && m.len() == 2
        && y.parse::<u32>().is_ok_and(|y| y >= 2000)
        && m.parse::<u32>().is_ok_and(|m| (1..=12).contains(&m))
}

/// Minutes since midnight of "HH:MM"; "24:00" only where `end` is true.
pub fn parse_clock(text: &str, end: bool) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if end => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}
