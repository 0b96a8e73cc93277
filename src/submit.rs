//! `closeloop submit`: commands from a file or stdin, each answered on a line of its own that
//! names the input line its command starts on (`"line": N`).
//!
//! The input is a sequence of JSON documents, however laid out: JSON lines, one pretty-printed
//! document, or several in a row. serde_json's `StreamDeserializer` finds where each ends
//! (reading it as `IgnoredAny`: the command's own strict parser reads its bytes afterwards).
//! A document that is not JSON is answered `rejected` with the line and column of the input
//! where reading it failed; reading then resumes at the next line after the one the broken
//! document starts on that can start a document (whose first byte is none of JSON's
//! whitespace, `}`, `]`, `,` or `:`): in JSON lines that is the next line, and in
//! pretty-printed input the next top-level document, its inner lines being indented.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use closeloop_commands::{Handler, HandlerConfig, Reply};
use closeloop_core::domain::Rejection;
use closeloop_core::log::EventLog;
use serde::de::IgnoredAny;
use serde::Serialize;

/// One document of the input: the line it starts on (1-based) and its bytes, or why it could
/// not be read as JSON.
#[derive(Debug, PartialEq)]
pub struct Document<'a> {
    pub line: usize,
    pub bytes: Result<&'a [u8], String>,
}

/// The input's documents, in order.
pub fn documents(input: &[u8]) -> Vec<Document<'_>> {
    let lines = Lines::new(input);
    let mut found = Vec::new();
    // Where the stream deserializer (re)starts: always the start of a line, so an error's
    // column is the input's and its line is counted from this line.
    let mut from = 0;
    'restart: loop {
        let first_line = lines.of(from);
        let mut stream =
            serde_json::Deserializer::from_slice(&input[from..]).into_iter::<IgnoredAny>();
        loop {
            let start = skip_whitespace(input, from + stream.byte_offset());
            if start == input.len() {
                break 'restart;
            }
            let line = lines.of(start);
            match stream.next() {
                None => break 'restart,
                Some(Ok(IgnoredAny)) => found.push(Document {
                    line,
                    bytes: Ok(&input[start..from + stream.byte_offset()]),
                }),
                Some(Err(e)) => {
                    let at = format!(" at line {} column {}", e.line(), e.column());
                    let text = e.to_string();
                    let what = text.strip_suffix(&at).unwrap_or(&text);
                    found.push(Document {
                        line,
                        bytes: Err(format!(
                            "malformed JSON at line {} column {} of the input: {what}",
                            first_line + e.line() - 1,
                            e.column()
                        )),
                    });
                    match lines.next_document_start(input, line) {
                        Some(next) => {
                            from = next;
                            continue 'restart;
                        }
                        None => break 'restart,
                    }
                }
            }
        }
    }
    found
}

fn skip_whitespace(input: &[u8], mut at: usize) -> usize {
    while at < input.len() && matches!(input[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// The byte offsets where the input's lines start.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(input: &[u8]) -> Lines {
        let mut starts = vec![0];
        starts.extend(
            input
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { starts }
    }

    /// The 1-based line holding byte `offset`.
    fn of(&self, offset: usize) -> usize {
        self.starts.partition_point(|start| *start <= offset)
    }

    /// The start of the first line after `line` whose first byte can start a document.
    fn next_document_start(&self, input: &[u8], line: usize) -> Option<usize> {
        self.starts[line..].iter().copied().find(|start| {
            input.get(*start).is_some_and(|b| {
                !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'}' | b']' | b',' | b':')
            })
        })
    }
}

/// A reply as `submit` prints it: the input line its command starts on, then the reply.
#[derive(Serialize)]
struct Numbered<'a> {
    line: usize,
    #[serde(flatten)]
    reply: &'a Reply,
}

/// Handles every document of the input in order and prints one reply per document. Exit code
/// 1 when any command was rejected, or when stdout closed before every reply was written (the
/// commands after it are not submitted, and stderr says from which line on).
pub async fn run(log: Arc<dyn EventLog>, file: Option<String>) -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    match file.as_deref() {
        None | Some("-") => {
            std::io::stdin()
                .read_to_end(&mut input)
                .context("reading stdin")?;
        }
        Some(path) => input = std::fs::read(path).with_context(|| format!("reading {path}"))?,
    }
    // Local, like the store it opens: its input's actor and business time are trusted (any
    // past time; still monotonic per stream and not in the future).
    let handler = Handler::new(log, HandlerConfig::trusting());
    let documents = documents(&input);
    let mut rejected = 0;
    let mut out = std::io::stdout().lock();
    for (i, document) in documents.iter().enumerate() {
        let reply = match document.bytes {
            Ok(bytes) => handler.handle_bytes(bytes).await,
            Err(ref message) => Reply::rejected(None, Rejection::validation("", message.clone())),
        };
        if matches!(reply, Reply::Rejected { .. }) {
            rejected += 1;
        }
        let numbered = Numbered {
            line: document.line,
            reply: &reply,
        };
        let written = serde_json::to_writer(&mut out, &numbered)
            .map_err(std::io::Error::from)
            .and_then(|()| std::io::Write::write_all(&mut out, b"\n"))
            .and_then(|()| std::io::Write::flush(&mut out));
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                let rest = match documents.get(i + 1) {
                    Some(next) => format!(
                        "; the commands from line {} on were not submitted",
                        next.line
                    ),
                    None => String::new(),
                };
                eprintln!(
                    "stdout closed: the reply to the command at line {} was not written{rest}",
                    document.line
                );
                return Ok(ExitCode::from(1));
            }
            Err(e) => return Err(anyhow::Error::new(e).context("writing a reply")),
        }
    }
    Ok(if rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_and_texts(input: &str) -> Vec<(usize, Result<&str, String>)> {
        documents(input.as_bytes())
            .into_iter()
            .map(|d| (d.line, d.bytes.map(|b| std::str::from_utf8(b).unwrap())))
            .collect()
    }

    #[test]
    fn json_lines_pretty_documents_and_blank_lines() {
        assert_eq!(
            lines_and_texts("{\"a\":1}\n\n{\"b\":2}\n"),
            [(1, Ok("{\"a\":1}")), (3, Ok("{\"b\":2}"))]
        );
        assert_eq!(
            lines_and_texts("{\n  \"a\": 1\n}\n{\n  \"b\": [\n    2\n  ]\n}"),
            [
                (1, Ok("{\n  \"a\": 1\n}")),
                (4, Ok("{\n  \"b\": [\n    2\n  ]\n}"))
            ]
        );
        assert!(documents(b"").is_empty() && documents(b" \n\t\r\n").is_empty());
    }

    #[test]
    fn a_broken_line_is_answered_and_the_next_line_read() {
        let found = lines_and_texts("{not json\n{\"a\":1\n{\"b\":2}\n");
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            found[0],
            (
                1,
                Err("malformed JSON at line 1 column 2 of the input: key must be a string".into())
            )
        );
        // Unterminated: JSON reads on into the next line, where it fails.
        assert_eq!(found[1].0, 2);
        let e = found[1].1.as_ref().unwrap_err();
        assert!(e.contains("at line 3 column 1 of the input"), "{e}");
        assert_eq!(found[2], (3, Ok("{\"b\":2}")));
    }

    #[test]
    fn a_broken_pretty_document_is_one_reply_and_the_next_is_read() {
        let input = "{\n  \"a\": 1\n  \"b\": 2\n}\n{\n  \"c\": 3\n}\n";
        let found = lines_and_texts(input);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, 1);
        let e = found[0].1.as_ref().unwrap_err();
        assert!(
            e.starts_with("malformed JSON at line 3 column 3 of the input: expected `,` or `}`"),
            "{e}"
        );
        assert_eq!(found[1], (5, Ok("{\n  \"c\": 3\n}")));
    }
}
