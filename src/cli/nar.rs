//! `swh-bridge nar dump|restore`.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use swh_bridge::hashing::tree::Limits;
use swh_bridge::hashing::{Hash, nar};

#[derive(Subcommand)]
pub enum NarCommand {
    /// Write the NAR of PATH to standard output (as `nix-store --dump`).
    Dump { path: PathBuf },
    /// Unpack a NAR from standard input to DEST, which must not exist (as `nix-store --restore`).
    Restore {
        dest: PathBuf,
        /// Refuse the NAR unless it has this hash; nothing is left at DEST then.
        #[arg(long)]
        expect: Option<String>,
    },
}

pub fn run(command: NarCommand) -> Result<ExitCode> {
    match command {
        NarCommand::Dump { path } => {
            nar::dump_path(&path, io::stdout().lock()).with_context(|| format!("failed to dump {}", path.display()))?;
        }
        NarCommand::Restore { dest, expect } => {
            let expected = expect.as_deref().map(|h| Hash::parse(h, None)).transpose()?;
            let restored = nar::restore(io::stdin().lock(), &dest, expected.as_ref(), Limits::default())
                .with_context(|| format!("failed to restore {}", dest.display()))?;
            eprintln!("restored {} ({} NAR bytes, {})", dest.display(), restored.nar_size, restored.nar_hash);
        }
    }
    Ok(ExitCode::SUCCESS)
}
