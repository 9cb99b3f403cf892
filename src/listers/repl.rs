//! A long-lived Nix evaluator: `nix repl`, driven over its standard input, which survives the
//! errors `tryEval` cannot catch (abort, a missing argument, infinite recursion). The package set
//! is imported once per process, and what was evaluated stays evaluated between questions.
//!
//! Quirks of `nix repl` (Nix 2.8 and later) read through pipes:
//! - it prints a prompt, `nix-repl> `, before each input line, and values colour-coded (ANSI
//!   escapes) even when its output is not a terminal;
//! - a string is printed as a Nix string literal: `"…"`, with `\"`, `\\`, `\n`, `\r`, `\t` and
//!   `\${` escaped; every question here asks for `builtins.toJSON …`, one line;
//! - an error goes to standard error (`error: …`, then its location, `at FILE:LINE:COL:`, and
//!   the code around it) and the repl goes on;
//! - so each question is followed by a marker, `builtins.trace "M" "M"`, which ends up on both
//!   streams: what came before it on each stream is the question's answer.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Why an evaluator could not answer at all (as opposed to Nix reporting an error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplError {
    #[error("failed to start `nix repl`")]
    Spawn(#[source] std::io::Error),
    #[error("`nix repl` stopped while evaluating {what}{}", last_words(stderr))]
    Died { what: String, stderr: Vec<String> },
    #[error("`nix repl` gave no answer for {what} within {} s", timeout.as_secs())]
    TimedOut { what: String, timeout: Duration },
    #[error("`nix repl` answered {what} with something that is not JSON: {answer}")]
    Unreadable { what: String, answer: String },
}

fn last_words(stderr: &[String]) -> String {
    match stderr.iter().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => format!(": {}", line.trim()),
        None => String::new(),
    }
}

/// An error Nix reported, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixError {
    /// The `error:` lines, joined.
    pub message: String,
    /// `FILE:LINE:COL`, when Nix gave one.
    pub location: Option<String>,
}

impl std::fmt::Display for NixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{} (at {location})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// How to start an evaluator.
#[derive(Debug, Clone)]
pub struct ReplCommand {
    /// Passed to Nix as `--store`.
    pub store: String,
    /// How long one question may take.
    pub timeout: Duration,
}

/// One running `nix repl`.
pub struct Repl {
    child: Child,
    stdin: ChildStdin,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    asked: u64,
    timeout: Duration,
}

impl Repl {
    pub fn start(command: &ReplCommand) -> Result<Repl, ReplError> {
        let mut child = Command::new("nix")
            .args(["repl", "--extra-experimental-features", "nix-command", "--store", &command.store])
            // No import from derivation: it would build, and Nixpkgs does not use it.
            .args(["--option", "allow-import-from-derivation", "false"])
            .env("TERM", "dumb")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ReplError::Spawn)?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = lines_of(child.stdout.take().expect("stdout is piped"));
        let stderr = lines_of(child.stderr.take().expect("stderr is piped"));
        Ok(Repl { child, stdin, stdout, stderr, asked: 0, timeout: command.timeout })
    }

    /// Binds `name` to `expression` for the questions that follow.
    pub fn bind(&mut self, name: &str, expression: &str) -> Result<Result<(), NixError>, ReplError> {
        let (answer, errors) = self.ask(&format!("{name} = {expression}"), name)?;
        Ok(match (answer, error_of(&errors)) {
            (_, Some(err)) => Err(err),
            _ => Ok(()),
        })
    }

    /// The value of `builtins.toJSON (expression)`, or Nix's error; `what` names the question
    /// in errors.
    pub fn json(&mut self, expression: &str, what: &str) -> Result<Result<Value, NixError>, ReplError> {
        let (answer, errors) = self.ask(&format!("builtins.toJSON ({expression})"), what)?;
        let Some(literal) = answer else {
            return Ok(Err(error_of(&errors).unwrap_or_else(|| NixError {
                message: "Nix gave neither a value nor an error".into(),
                location: None,
            })));
        };
        let text = unquote(&literal)
            .ok_or_else(|| ReplError::Unreadable { what: what.to_owned(), answer: literal.clone() })?;
        serde_json::from_str(&text)
            .map(Ok)
            .map_err(|_| ReplError::Unreadable { what: what.to_owned(), answer: literal })
    }

    /// Sends one input line and its marker; returns the last value printed before the marker
    /// (a Nix string literal) and what came on standard error.
    fn ask(&mut self, input: &str, what: &str) -> Result<(Option<String>, Vec<String>), ReplError> {
        self.asked += 1;
        let marker = format!("swh-bridge-{}-{}", std::process::id(), self.asked);
        let sent = writeln!(self.stdin, "{input}")
            .and_then(|()| writeln!(self.stdin, "builtins.trace \"{marker}\" \"{marker}\""))
            .and_then(|()| self.stdin.flush());
        if sent.is_err() {
            return Err(self.died(what));
        }
        let deadline = Instant::now() + self.timeout;
        let quoted_marker = format!("\"{marker}\"");
        let mut answer = None;
        loop {
            let line = self.next_line(Stream::Out, deadline, what)?;
            let line = strip_ansi(&line);
            let line = line.trim();
            // The prompt comes before every input line, and may share a line with what follows.
            let line = line.trim_start_matches("nix-repl>").trim();
            if line == quoted_marker {
                break;
            }
            if line.starts_with('"') {
                answer = Some(line.to_owned());
            }
        }
        let mut errors = Vec::new();
        loop {
            let line = self.next_line(Stream::Err, deadline, what)?;
            if line.contains(&marker) {
                break;
            }
            errors.push(strip_ansi(&line));
        }
        Ok((answer, errors))
    }

    fn next_line(&mut self, stream: Stream, deadline: Instant, what: &str) -> Result<String, ReplError> {
        let receiver = match stream {
            Stream::Out => &self.stdout,
            Stream::Err => &self.stderr,
        };
        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Disconnected) => Err(self.died(what)),
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                Err(ReplError::TimedOut { what: what.to_owned(), timeout: self.timeout })
            }
        }
    }

    fn died(&mut self, what: &str) -> ReplError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.try_iter().map(|line| strip_ansi(&line)).collect();
        ReplError::Died { what: what.to_owned(), stderr }
    }

    /// The process id, for whoever measures the evaluators' memory.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// A thread that forwards `reader`'s lines; the channel closes when the stream does.
fn lines_of(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The string a Nix string literal (`"…"`, as the repl prints it) stands for.
fn unquote(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            other => out.push(other),
        }
    }
    Some(out)
}

/// The error among what Nix wrote on standard error, if it reported one: the `error:` lines
/// (a message may continue on the lines after, up to a blank one) and the first location.
fn error_of(stderr: &[String]) -> Option<NixError> {
    let start = stderr.iter().position(|line| line.trim_start().starts_with("error:"))?;
    let lines = || stderr[start..].iter().map(|line| line.trim());
    let message: Vec<&str> = lines()
        .take_while(|line| !line.is_empty() && !line.starts_with("at ") && !line.starts_with("(use '--show-trace'"))
        .collect();
    let location = lines().find_map(|line| line.strip_prefix("at ")).map(|at| at.trim_end_matches(':').to_owned());
    let message = message.join(" ");
    Some(NixError { message: message.trim_start_matches("error:").trim().to_owned(), location })
}

/// `text` as a Nix string literal, for building expressions around names.
pub fn nix_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a Nix string literal.
pub fn nix_path_string(path: &Path) -> String {
    nix_string(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_back_as_nix_escapes_them() {
        assert_eq!(unquote(r#""{\"a\":\"b\\\\c\"}""#).as_deref(), Some(r#"{"a":"b\\c"}"#));
        assert_eq!(unquote(r#""\${x} \n""#).as_deref(), Some("${x} \n"));
        assert_eq!(unquote("no quotes"), None);
        for text in ["plain", "a \"quoted\" ${x} \\ \n line"] {
            assert_eq!(unquote(&nix_string(text)).as_deref(), Some(text));
        }
    }

    #[test]
    fn escapes_are_stripped_and_errors_read_with_their_location() {
        assert_eq!(strip_ansi("\u{1b}[35;1m\"x\"\u{1b}[0m"), "\"x\"");
        let stderr: Vec<String> = [
            "trace: something",
            "error: attribute 'foo' missing",
            "",
            "       at /tmp/nixpkgs/pkgs/top-level/default.nix:12:5:",
            "",
            "           11|   x = 1;",
            "           12|   y = pkgs.foo;",
            "             |     ^",
            "(use '--show-trace' to show detailed location information)",
        ]
        .map(str::to_owned)
        .to_vec();
        let err = error_of(&stderr).unwrap();
        assert_eq!(err.message, "attribute 'foo' missing");
        assert_eq!(err.location.as_deref(), Some("/tmp/nixpkgs/pkgs/top-level/default.nix:12:5"));
        assert_eq!(error_of(&["trace: fine".to_owned()]), None);
    }
}
