//! preflate-rs calls, run in a child process with CPU-time and address-space limits.
//!
//! preflate-rs 0.7.1 can loop forever, its memory growing by about 80 MB/s, when corrections do
//! not fit their data: 4 % of the 1–3 byte corruptions of a corrections field did, and the
//! fuzzer finds more within minutes. Recipes come from HTTP stores and published sites, so they
//! are untrusted; and modelling a stream verifies by recreating it, so a hostile archive could do
//! the same. A thread cannot be stopped, so each call runs where it can be: this program started
//! again with a hidden subcommand (`swh-bridge __preflate model|recreate`), which reads its input
//! on stdin and writes its answer on stdout. The kernel stops it past its CPU time (SIGXCPU) or
//! address space (an allocation fails and it aborts); the parent kills it past a wall-clock
//! deadline. A runaway costs one child, never the caller (a `serve` process answers on).
//!
//! The program to start is set by the binary ([`use_helper`]) or by `SWH_BRIDGE_HELPER`; with
//! neither (unit tests, a library user that sets none), calls run in this process.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use preflate_rs::PreflateError;

static HELPER: OnceLock<PathBuf> = OnceLock::new();

/// Runs every later preflate call in `program` (which must be this program: it is started as
/// `program __preflate model|recreate`, see [`child_main`]).
pub fn use_helper(program: PathBuf) {
    let _ = HELPER.set(program);
}

fn helper() -> Option<PathBuf> {
    HELPER.get().cloned().or_else(|| std::env::var_os("SWH_BRIDGE_HELPER").map(PathBuf::from))
}

/// What a child is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreflateCall {
    /// Model a deflate stream (stdin): answer its size, its text's length and BLAKE3, and the
    /// corrections.
    Model,
    /// Recreate a deflate stream from corrections (an 8-byte little-endian length, then the
    /// bytes) and its text (the rest of stdin).
    Recreate,
}

impl PreflateCall {
    fn name(self) -> &'static str {
        match self {
            PreflateCall::Model => "model",
            PreflateCall::Recreate => "recreate",
        }
    }
}

/// Why preflate gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PreflateFailure {
    #[error("{0}")]
    Refused(String),
    #[error("preflate panicked on it")]
    Panicked,
    #[error("preflate went past its bound of {0}")]
    OutOfBounds(String),
    #[error("failed to run the preflate helper {program}")]
    Helper {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the preflate helper answered {0}")]
    Malformed(String),
}

/// Runs a preflate call, turning a panic into an error: preflate-rs 0.7 panics on some
/// corrections that do not fit the data (the fuzzer found index and arithmetic panics).
fn without_panics<T>(call: impl FnOnce() -> Result<T, PreflateError>) -> Result<T, PreflateFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(|e| PreflateFailure::Refused(format!("{e:?}"))),
        Err(_) => Err(PreflateFailure::Panicked),
    }
}

/// Limits for a call on `input_len` bytes: preflate takes well under a second per MB, and a
/// few times the stream in memory.
struct Bounds {
    cpu_seconds: u64,
    address_space: u64,
    wall: Duration,
}

fn bounds(input_len: usize) -> Bounds {
    let megabytes = input_len as u64 >> 20;
    let cpu_seconds = 5 + 2 * megabytes;
    Bounds {
        cpu_seconds,
        address_space: address_space_limit(input_len as u64),
        wall: Duration::from_secs(2 * cpu_seconds + 10),
    }
}

/// The address space a child calling preflate on `input_len` bytes may take.
pub(crate) fn address_space_limit(input_len: u64) -> u64 {
    (1 << 30) + 16 * input_len
}

/// preflate's model of a deflate stream.
pub(crate) struct Model {
    /// How many bytes of the input the stream took.
    pub(crate) compressed_size: u64,
    text_len: u64,
    text_hash: [u8; 32],
    pub(crate) corrections: Vec<u8>,
}

impl Model {
    /// Whether the modelled stream's text is `plain`.
    pub(crate) fn text_is(&self, plain: &[u8]) -> bool {
        self.text_len == plain.len() as u64 && self.text_hash == *blake3::hash(plain).as_bytes()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.corrections.len());
        out.extend_from_slice(&self.compressed_size.to_le_bytes());
        out.extend_from_slice(&self.text_len.to_le_bytes());
        out.extend_from_slice(&self.text_hash);
        out.extend_from_slice(&self.corrections);
        out
    }

    fn decode(answer: Vec<u8>) -> Result<Model, PreflateFailure> {
        if answer.len() < 48 {
            return Err(PreflateFailure::Malformed(format!("{} bytes to a model call", answer.len())));
        }
        let word = |at: usize| u64::from_le_bytes(answer[at..at + 8].try_into().expect("8 bytes"));
        Ok(Model {
            compressed_size: word(0),
            text_len: word(8),
            text_hash: answer[16..48].try_into().expect("32 bytes"),
            corrections: answer[48..].to_vec(),
        })
    }
}

fn model_here(deflated: &[u8]) -> Result<Model, PreflateFailure> {
    let (result, text) =
        without_panics(|| preflate_rs::preflate_whole_deflate_stream(deflated, true, super::MAX_PLAIN))?;
    Ok(Model {
        compressed_size: result.compressed_size as u64,
        text_len: text.text().len() as u64,
        text_hash: *blake3::hash(text.text()).as_bytes(),
        corrections: result.corrections,
    })
}

fn recreate_here(plain: &[u8], corrections: &[u8]) -> Result<Vec<u8>, PreflateFailure> {
    without_panics(|| preflate_rs::recreate_whole_deflate_stream(plain, corrections))
}

/// Models the deflate stream at the start of `deflated`, within bounds.
pub(crate) fn model(deflated: &[u8]) -> Result<Model, PreflateFailure> {
    match helper() {
        None => model_here(deflated),
        Some(program) => {
            // Corrections are worth keeping only well under the stream's size (see `deflate::model`).
            let most = 48 + deflated.len() + (1 << 20);
            Model::decode(run_child(&program, PreflateCall::Model, &[deflated], deflated.len(), most)?)
        }
    }
}

/// Recreates a deflate stream from its text and preflate's corrections, within bounds.
pub(crate) fn recreate(plain: &[u8], corrections: &[u8]) -> Result<Vec<u8>, PreflateFailure> {
    match helper() {
        None => recreate_here(plain, corrections),
        Some(program) => {
            let len = (corrections.len() as u64).to_le_bytes();
            // An encoder can code worse than storing (fixed codes on binary data are 9 bits a
            // byte; 15-bit codes, nearly 2 bytes): twice the text bounds every real stream.
            let most = 2 * plain.len() + (1 << 20);
            run_child(&program, PreflateCall::Recreate, &[&len, corrections, plain], plain.len(), most)
        }
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit only reads the struct, and is async-signal-safe (called between fork and exec).
    if unsafe { libc::setrlimit(resource, &limit) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Runs `program __preflate call` on `input` (pieces written one after the other), with the
/// bounds for `input_len` bytes; returns at most `most_out` bytes of its stdout.
fn run_child(
    program: &Path,
    call: PreflateCall,
    input: &[&[u8]],
    input_len: usize,
    most_out: usize,
) -> Result<Vec<u8>, PreflateFailure> {
    let bounds = bounds(input_len);
    let helper_failed = |source| PreflateFailure::Helper { program: program.to_owned(), source };
    let mut command = Command::new(program);
    command.args(["__preflate", call.name()]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let (cpu, address_space) = (bounds.cpu_seconds, bounds.address_space);
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            set_limit(libc::RLIMIT_CPU, cpu)?;
            set_limit(libc::RLIMIT_AS, address_space)
        });
    }
    let mut child = command.spawn().map_err(helper_failed)?;
    let pid = child.id() as libc::pid_t;
    let mut stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (done, deadline) = mpsc::channel::<()>();
    let (answer, message, timed_out) = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A child that stops reading (it failed) closes the pipe: the error is its to tell.
            for piece in input {
                if stdin.write_all(piece).is_err() {
                    break;
                }
            }
        });
        let message = scope.spawn(move || {
            let mut message = String::new();
            let _ = stderr.take(4096).read_to_string(&mut message);
            message
        });
        let watchdog = scope.spawn(move || {
            let timed_out = deadline.recv_timeout(bounds.wall) == Err(mpsc::RecvTimeoutError::Timeout);
            if timed_out {
                // SAFETY: the child is not reaped before this thread is joined, so `pid` is still it.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            timed_out
        });
        let mut answer = Vec::new();
        let read = stdout.take(most_out as u64 + 1).read_to_end(&mut answer);
        let message = message.join().expect("reading stderr does not panic");
        let _ = done.send(());
        let timed_out = watchdog.join().expect("the watchdog does not panic");
        (read.map(|_| answer), message, timed_out)
    });
    let status = child.wait().map_err(helper_failed)?;
    if timed_out {
        return Err(PreflateFailure::OutOfBounds(format!("{} s of wall-clock time", bounds.wall.as_secs())));
    }
    match status.signal() {
        Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
            return Err(PreflateFailure::OutOfBounds(format!("{} s of CPU time", bounds.cpu_seconds)));
        }
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) => {
            return Err(PreflateFailure::OutOfBounds(format!("{} MiB of memory", bounds.address_space >> 20)));
        }
        _ => {}
    }
    if !status.success() {
        let message = message.trim();
        return Err(if message == "panicked" {
            PreflateFailure::Panicked
        } else {
            PreflateFailure::Refused(message.to_owned())
        });
    }
    let answer = answer.map_err(helper_failed)?;
    if answer.len() > most_out {
        return Err(PreflateFailure::Malformed(format!("more than {most_out} bytes")));
    }
    Ok(answer)
}

/// The child's side: reads the call's input on stdin, answers on stdout; on failure, says why
/// on stderr and exits with 1.
pub fn child_main(call: PreflateCall) -> std::process::ExitCode {
    // A panic is an answer ("panicked"), not a message with a backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("failed to read the input: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let answer = match call {
        PreflateCall::Model => model_here(&input).map(|model| model.encode()),
        PreflateCall::Recreate => match input.split_first_chunk::<8>() {
            Some((len, rest)) if u64::from_le_bytes(*len) <= rest.len() as u64 => {
                let (corrections, plain) = rest.split_at(u64::from_le_bytes(*len) as usize);
                recreate_here(plain, corrections)
            }
            _ => Err(PreflateFailure::Refused("the input is cut short".into())),
        },
    };
    match answer {
        Ok(answer) => match std::io::stdout().lock().write_all(&answer) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(_) => std::process::ExitCode::FAILURE,
        },
        Err(PreflateFailure::Panicked) => {
            eprintln!("panicked");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
