//! Progress of long work (`demo`, `replay`), on stderr so the reports on stdout stay clean.
//!
//! Work is a sequence of [`Phase`]s, each announced when it starts and summed up in one line
//! when it ends. In between:
//! - on a terminal, an indicatif bar (a spinner while the total is unknown) whose message
//!   says what the phase is doing now ("saving", "building indexes"), redrawn on a steady
//!   tick, so a long step that moves no counter never looks frozen;
//! - off a terminal (a log file, CI, a pipe), one plain line at a steady interval: the
//!   phase, the count, the rate and, when the total is known, the time left. No escape
//!   codes: a bar redrawn with `\r` is unreadable in a file, and a line per update floods
//!   it. The interval is [`INTERVAL_MS_DEFAULT`], or `CLOSELOOP_PROGRESS_INTERVAL_MS`.
//!
//! The plain lines are written by a thread of the phase's own, not by the work's updates:
//! a step that updates nothing for a minute (a final commit, an index build) still gets
//! its line every interval.

use std::io::IsTerminal as _;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Between two plain progress lines, off a terminal (milliseconds).
pub const INTERVAL_MS_DEFAULT: u64 = 5_000;

/// The environment variable that overrides [`INTERVAL_MS_DEFAULT`].
pub const INTERVAL_ENV: &str = "CLOSELOOP_PROGRESS_INTERVAL_MS";

/// Between two redraws of a terminal's bar (milliseconds): often enough to look alive.
const TICK_MS: u64 = 120;

/// One phase of long work, shown until [`Phase::finish`] (or dropped, on an error, which
/// then speaks for itself).
pub struct Phase {
    state: Arc<Mutex<State>>,
    view: View,
}

/// What a phase has done so far.
struct State {
    name: String,
    /// What is counted, plural ("events", "hours").
    unit: &'static str,
    done: u64,
    total: Option<u64>,
    /// What the phase is doing now, or a second count ("1,200 commands").
    message: String,
    started: Instant,
}

enum View {
    Bar(ProgressBar),
    /// The printer thread and its stop signal (dropping the sender stops it); taken when
    /// the phase ends.
    Plain(Mutex<Option<(mpsc::Sender<()>, JoinHandle<()>)>>),
}

impl Phase {
    /// Starts and announces a phase counting `unit`s, out of `total` when known.
    pub fn start(name: impl Into<String>, unit: &'static str, total: Option<u64>) -> Phase {
        let state = Arc::new(Mutex::new(State {
            name: name.into(),
            unit,
            done: 0,
            total,
            message: String::new(),
            started: Instant::now(),
        }));
        let view = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total.unwrap_or(0));
            {
                let s = state.lock().expect("progress state");
                bar.set_style(style(unit, total.is_some()));
                bar.set_prefix(s.name.clone());
            }
            bar.enable_steady_tick(Duration::from_millis(TICK_MS));
            View::Bar(bar)
        } else {
            eprintln!("{}...", state.lock().expect("progress state").name);
            let interval = interval();
            let (stop, stopped) = mpsc::channel::<()>();
            let shown = state.clone();
            let printer = std::thread::spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {
                        let line = shown.lock().expect("progress state").line();
                        eprintln!("{line}");
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            });
            View::Plain(Mutex::new(Some((stop, printer))))
        };
        Phase { state, view }
    }

    /// Sets (or learns) the total.
    pub fn set_total(&self, total: u64) {
        let mut s = self.state.lock().expect("progress state");
        if let View::Bar(bar) = &self.view {
            if s.total.is_none() {
                bar.set_style(style(s.unit, true));
            }
            bar.set_length(total);
        }
        s.total = Some(total);
    }

    /// Sets the count done so far.
    pub fn set_position(&self, done: u64) {
        self.state.lock().expect("progress state").done = done;
        if let View::Bar(bar) = &self.view {
            bar.set_position(done);
        }
    }

    /// Adds to the count done.
    pub fn inc(&self, by: u64) {
        let done = {
            let mut s = self.state.lock().expect("progress state");
            s.done += by;
            s.done
        };
        if let View::Bar(bar) = &self.view {
            bar.set_position(done);
        }
    }

    /// Says what the phase is doing now.
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        if let View::Bar(bar) = &self.view {
            bar.set_message(message.clone());
        }
        self.state.lock().expect("progress state").message = message;
    }

    /// Ends the phase with its summary line (`outcome`, e.g. "36 rejected", after the
    /// count, the time and the rate). By reference, so a phase shared with the work's
    /// callbacks can end while they still hold it; updates after the end are not shown.
    pub fn finish(&self, outcome: impl Into<String>) {
        let outcome = outcome.into();
        if !self.stop() {
            return;
        }
        let line = {
            let s = self.state.lock().expect("progress state");
            finished_line(&s.name, s.unit, s.done, s.started.elapsed(), &outcome)
        };
        eprintln!("{line}");
    }

    /// Stops the display; false when it was already stopped.
    fn stop(&self) -> bool {
        match &self.view {
            View::Bar(bar) => {
                let running = !bar.is_finished();
                bar.finish_and_clear();
                running
            }
            View::Plain(printer) => {
                let taken = printer.lock().expect("progress printer").take();
                match taken {
                    Some((stop, printer)) => {
                        drop(stop);
                        let _ = printer.join();
                        true
                    }
                    None => false,
                }
            }
        }
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn line(&self) -> String {
        progress_line(
            &self.name,
            self.unit,
            self.done,
            self.total,
            self.started.elapsed(),
            &self.message,
        )
    }
}

fn style(unit: &str, total: bool) -> ProgressStyle {
    let template = if unit.is_empty() {
        "{spinner} {prefix}  {elapsed}  {msg}".to_owned()
    } else if total {
        format!("{{spinner}} {{prefix}} {{bar:30}} {{human_pos}}/{{human_len}} {unit}  {{rate}}/s  ~{{eta}} left  {{msg}}")
    } else {
        format!("{{spinner}} {{prefix}} {{human_pos}} {unit}  {{rate}}/s  {{elapsed}}  {{msg}}")
    };
    ProgressStyle::with_template(&template)
        .expect("a valid template")
        // indicatif's own `per_sec` shows four decimals; the plain lines' rounding reads better.
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate_text(rate(state.pos(), state.elapsed())));
            },
        )
}

/// The plain lines' interval: `CLOSELOOP_PROGRESS_INTERVAL_MS`, else the default.
fn interval() -> Duration {
    let ms = std::env::var(INTERVAL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .unwrap_or(INTERVAL_MS_DEFAULT);
    Duration::from_millis(ms)
}

/// One plain progress line (a phase that counts nothing, `unit` empty, gives its time and
/// message only): `reading the log back: 12,000 of 40,000 events (30%), 3,000
/// events/s, about 9 s left, 4 s so far (catching up)`. The rate is the mean since the
/// phase began; the time left assumes it holds.
pub fn progress_line(
    name: &str,
    unit: &str,
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
    message: &str,
) -> String {
    if unit.is_empty() {
        let mut line = format!("{name}: {} so far", duration_text(elapsed.as_secs_f64()));
        if !message.is_empty() {
            line.push_str(&format!(" ({message})"));
        }
        return line;
    }
    let rate = rate(done, elapsed);
    let mut line = match total {
        Some(total) => {
            // An empty total is all done.
            let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
            format!(
                "{name}: {} of {} {unit} ({percent}%), {} {unit}/s",
                grouped(done),
                grouped(total),
                rate_text(rate)
            )
        }
        None => format!(
            "{name}: {} {unit}, {} {unit}/s",
            grouped(done),
            rate_text(rate)
        ),
    };
    if let Some(total) = total {
        if done >= total {
            line.push_str(", all counted");
        } else if rate > 0.0 {
            let left = (total - done) as f64 / rate;
            line.push_str(&format!(", about {} left", duration_text(left)));
        }
    }
    line.push_str(&format!(
        ", {} so far",
        duration_text(elapsed.as_secs_f64())
    ));
    if !message.is_empty() {
        line.push_str(&format!(" ({message})"));
    }
    line
}

/// The line that ends a phase: `reading the log back: done, 40,000 events in 12 s (3,333
/// events/s)`, then the outcome if any.
pub fn finished_line(
    name: &str,
    unit: &str,
    done: u64,
    elapsed: Duration,
    outcome: &str,
) -> String {
    let mut line = if unit.is_empty() {
        format!("{name}: done in {}", duration_text(elapsed.as_secs_f64()))
    } else {
        format!(
            "{name}: done, {} {unit} in {} ({} {unit}/s)",
            grouped(done),
            duration_text(elapsed.as_secs_f64()),
            rate_text(rate(done, elapsed))
        )
    };
    if !outcome.is_empty() {
        line.push_str(&format!("; {outcome}"));
    }
    line
}

/// Units per second since the start; 0 before any time has passed.
fn rate(done: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        done as f64 / seconds
    } else {
        0.0
    }
}

/// A rate to a sensible precision: one decimal below 10, whole numbers grouped above.
fn rate_text(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        grouped(rate.round() as u64)
    }
}

/// Seconds as `7.5 s`, `42 s`, `3 min 5 s` or `2 h 4 min`.
pub fn duration_text(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3_600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3_600, whole % 3_600 / 60),
    }
}

/// A count with thousands separators: `379,495`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_with_a_total_gives_rate_and_time_left() {
        // 12,000 of 40,000 in 4 s: 3,000/s, 28,000 left take 9.3 s.
        let line = progress_line(
            "reading the log back",
            "events",
            12_000,
            Some(40_000),
            Duration::from_secs(4),
            "",
        );
        assert_eq!(
            line,
            "reading the log back: 12,000 of 40,000 events (30%), 3,000 events/s, about 9.3 s left, 4.0 s so far"
        );
    }

    #[test]
    fn a_line_without_a_total_gives_count_rate_and_message() {
        let line = progress_line(
            "saving the tables",
            "batches",
            3,
            None,
            Duration::from_secs(2),
            "final commit",
        );
        assert_eq!(
            line,
            "saving the tables: 3 batches, 1.5 batches/s, 2.0 s so far (final commit)"
        );
    }

    #[test]
    fn time_left_grows_into_minutes_and_hours() {
        // 100 of 100,000 in 10 s: 10/s, 99,900 left take 9,990 s = 2 h 46 min.
        let line = progress_line(
            "x",
            "events",
            100,
            Some(100_000),
            Duration::from_secs(10),
            "",
        );
        assert!(
            line.contains("10 events/s, about 2 h 46 min left, 10 s so far"),
            "{line}"
        );
        // 1 of 3 in 50 s: 0.02/s, 2 left take 100 s.
        let line = progress_line("x", "hours", 1, Some(3), Duration::from_secs(50), "");
        assert!(
            line.contains("(33%), 0.0 hours/s, about 1 min 40 s left, 50 s so far"),
            "{line}"
        );
    }

    #[test]
    fn nothing_done_yet_or_all_done() {
        let line = progress_line("x", "events", 0, Some(10), Duration::ZERO, "");
        assert_eq!(line, "x: 0 of 10 events (0%), 0.0 events/s, 0.0 s so far");
        let line = progress_line(
            "x",
            "events",
            10,
            Some(10),
            Duration::from_secs(5),
            "saving",
        );
        assert_eq!(
            line,
            "x: 10 of 10 events (100%), 2.0 events/s, all counted, 5.0 s so far (saving)"
        );
        let line = progress_line("x", "events", 0, Some(0), Duration::from_secs(1), "");
        assert!(
            line.contains("(100%)") && line.contains("all counted"),
            "{line}"
        );
    }

    #[test]
    fn a_phase_that_counts_nothing_gives_its_time() {
        let line = progress_line("saving", "", 0, None, Duration::from_secs(75), "commit");
        assert_eq!(line, "saving: 1 min 15 s so far (commit)");
        let line = finished_line("saving", "", 0, Duration::from_secs(3), "");
        assert_eq!(line, "saving: done in 3.0 s");
    }

    #[test]
    fn the_final_line_sums_up() {
        let line = finished_line(
            "verifying the log",
            "events",
            379_495,
            Duration::from_millis(12_400),
            "intact",
        );
        assert_eq!(
            line,
            "verifying the log: done, 379,495 events in 12 s (30,604 events/s); intact"
        );
    }

    #[test]
    fn counts_and_durations_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(378_688), "378,688");
        assert_eq!(grouped(12_345_678), "12,345,678");
        assert_eq!(duration_text(0.04), "0.0 s");
        assert_eq!(duration_text(59.4), "59 s");
        assert_eq!(duration_text(185.0), "3 min 5 s");
        assert_eq!(duration_text(7_440.0), "2 h 4 min");
    }
}
