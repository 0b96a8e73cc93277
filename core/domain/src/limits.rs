//! Every input limit and the patterns the schemas state for identifiers and texts: a leaf
//! that the commands and types (whose schemas cite them) and the parser (which enforces
//! them) all read.

/// The white space `str::trim` and `char::is_whitespace` know (Unicode White_Space), as the
/// inside of a regular-expression class: the schemas' patterns say what the parser checks.
macro_rules! white_space {
    () => {
        "\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}"
    };
}

/// An identifier, as the schemas state it: no white space and no control character.
pub const ID_PATTERN: &str = concat!("^[^", white_space!(), "\u{0}-\u{1f}\u{7f}-\u{9f}]+$");
/// A text, as the schemas state it: not white space alone.
pub const TEXT_PATTERN: &str = concat!("[^", white_space!(), "]");
/// A complaint-cause code.
pub const CAUSE_CODE_PATTERN: &str = "^[a-z0-9_]{1,40}$";
/// A month, `YYYY-MM`, from 2000 on.
pub const MONTH_PATTERN: &str = "^([2-9][0-9]{3})-(0[1-9]|1[0-2])$";
/// The start of a span of working hours, `HH:MM`.
pub const CLOCK_START_PATTERN: &str = "^([01][0-9]|2[0-3]):[0-5][0-9]$";
/// The end of a span of working hours, `HH:MM` or `24:00`.
pub const CLOCK_END_PATTERN: &str = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$";

/// Largest command accepted, in bytes (docs/contract.md, Commands: 64 KiB by default).
pub const COMMAND_BYTES_MAX: usize = 64 * 1024;
/// Longest identifier (agent, customer, calendar, policy), in characters.
pub const ID_CHARS_MAX: usize = 128;
/// Longest short text (subject, names, team), in characters.
pub const SHORT_TEXT_CHARS_MAX: usize = 200;
/// Longest free text (messages, notes, reasons), in characters.
pub const TEXT_CHARS_MAX: usize = 16_000;
/// Longest target in minutes: one year.
pub const TARGET_MINUTES_MAX: u32 = 525_600;
/// Most business hours a deadline kind's default may last (a year of minutes).
pub const DEADLINE_HOURS_MAX: u32 = TARGET_MINUTES_MAX / 60;
/// The longest wait for a customer's answer to a resolution, in working days (about three
/// months).
pub const CONFIRMATION_WAIT_DAYS_MAX: u8 = 60;

/// Most entries of a calendar's `working_days`, and of its `hours_overrides`: a year of dates
/// each (a year in China has about six make-up days and a few half days).
pub const CALENDAR_DATES_MAX: usize = 366;
/// Most spans of working hours on one date of `working_days` or `hours_overrides`.
pub const DAY_SPANS_MAX: usize = 12;

/// Most entries of the complaint-cause list.
pub const COMPLAINT_CAUSES_MAX: usize = 100;
/// Longest complaint-cause code, in characters.
pub const CAUSE_CODE_CHARS_MAX: usize = 40;
/// Most staff one complaint ruling charges.
pub const CHARGED_STAFF_MAX: usize = 10;

/// The manual's bounds on the scorecard (docs/domain.md, Staff performance): results at
/// least 60% of the score, basic service work at least 30%, daily discipline at most 10%,
/// bonus and deduction items each at most 10 points of 100.
pub const SCORECARD_RESULTS_MIN: u8 = 60;
pub const SCORECARD_BASIC_MIN: u8 = 30;
pub const SCORECARD_DISCIPLINE_MAX: u8 = 10;
pub const SCORECARD_ITEM_POINTS_MAX: f64 = 10.0;
/// Longest a retention policy keeps a customer's personal data after closure: ten years,
/// beyond which no retention duty the policies cover runs.
pub const RETENTION_DAYS_MAX: u32 = 3650;
