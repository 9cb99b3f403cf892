//! The `swh-bridge` command: parses the arguments and hands each command to its module under
//! `cli/`, which calls the library and prints.

mod cli;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "swh-bridge",
    version,
    about = "Keep Nix builds working when upstream sources vanish, with Software Heritage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute and convert the hashes Nix and Software Heritage use.
    #[command(subcommand)]
    Hash(cli::hash::HashCommand),
    /// Write and read NAR (Nix ARchive) streams.
    #[command(subcommand)]
    Nar(cli::nar::NarCommand),
    List(cli::list::ListArgs),
    /// Check, compare and count sources.json files (nixpkgs-swh's or Guix's).
    #[command(subcommand)]
    Sources(cli::sources::SourcesCommand),
    Fetch(cli::fetch::FetchArgs),
    Prefetch(cli::prefetch::PrefetchArgs),
    Load(Box<cli::load::LoadArgs>),
    Audit(cli::audit::AuditArgs),
    Serve(cli::serve::ServeArgs),
    Publish(cli::publish::PublishArgs),
    /// Record, rebuild and inspect tarball recipes: what Software Heritage drops when it archives
    /// a tarball unpacked.
    #[command(subcommand)]
    Recipe(cli::recipe::RecipeCommand),
    /// One preflate call in a process of its own, with limits (started by this program itself).
    #[command(name = "__preflate", hide = true)]
    Preflate {
        call: swh_bridge::recipes::preflate_process::PreflateCall,
    },
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    if let Command::Preflate { call } = command {
        return swh_bridge::recipes::preflate_process::child_main(call);
    }
    report_panics_briefly();
    // preflate-rs can loop forever on a hostile recipe: run it where it can be stopped.
    if let Ok(program) = std::env::current_exe() {
        swh_bridge::recipes::preflate_process::use_helper(program);
    }
    match run(command) {
        Ok(code) => code,
        Err(err) if cli::stdout_closed(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A panic the program catches (a capture's thread, say) becomes an error of its own; the hook
/// says once, on one line, that it is a bug and where, with a backtrace only when
/// `RUST_BACKTRACE` asks for one.
fn report_panics_briefly() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info.location().map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
        eprintln!("error: internal error (a bug, please report it){location}: {message}");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            eprintln!("{backtrace}");
        }
    }));
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Hash(command) => cli::hash::run(command),
        Command::Nar(command) => cli::nar::run(command),
        Command::List(args) => cli::list::run(args),
        Command::Sources(command) => cli::sources::run(command),
        Command::Publish(args) => cli::publish::run(args),
        Command::Fetch(args) => cli::asynchronously(cli::fetch::run(args)),
        Command::Prefetch(args) => cli::asynchronously(cli::prefetch::run(args)),
        Command::Load(args) => cli::asynchronously(cli::load::run(*args)),
        Command::Audit(args) => cli::asynchronously(cli::audit::run(args)),
        Command::Serve(args) => cli::asynchronously(cli::serve::run(args)),
        Command::Recipe(command) => cli::asynchronously(cli::recipe::run(command)),
        Command::Preflate { .. } => unreachable!("answered before"),
    }
}
