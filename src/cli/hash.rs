//! `swh-bridge hash path|file|convert`.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use swh_bridge::hashing::swhid::content_id_of_reader;
use swh_bridge::hashing::tree::ExecutableRule;
use swh_bridge::hashing::tree::disk::WalkOptions;
use swh_bridge::hashing::{Encoding, Hash, HashAlgo, tree_hasher};

#[derive(Subcommand)]
pub enum HashCommand {
    /// Hash a file or directory tree: its NAR hash (as `nix hash path`), its SWHID (as
    /// `swh identify`), or both in one pass.
    Path {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long = "type", value_enum, default_value_t = PathHashType::Nar)]
        hash_type: PathHashType,
        /// Digest algorithm of the NAR hash.
        #[arg(long, default_value = "sha256")]
        algo: HashAlgo,
        /// Encoding of the NAR hash.
        #[arg(long, default_value = "sri")]
        format: Encoding,
        /// Count a file as executable if any execute bit is set, as `swh identify` does, instead
        /// of only the owner's as git, Nix and the archive's loaders (which normalise modes) do.
        #[arg(long)]
        any_exec_bit: bool,
        /// Print JSON; with `--type all` it lists every file's content SWHID.
        #[arg(long)]
        json: bool,
    },
    /// Hash files' bytes (as `nix hash file` and `nix-hash --flat`), or give their content SWHID.
    File {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long = "type", value_enum, default_value_t = FileHashType::Flat)]
        hash_type: FileHashType,
        #[arg(long, default_value = "sha256")]
        algo: HashAlgo,
        #[arg(long, default_value = "sri")]
        format: Encoding,
    },
    /// Re-encode hashes (as `nix hash to-sri`, `to-base32`, `to-base16`, `to-base64`).
    Convert {
        #[arg(required = true)]
        hashes: Vec<String>,
        /// Target encoding.
        #[arg(long)]
        to: Encoding,
        /// Algorithm of bare hashes; required when the length does not tell it.
        #[arg(long)]
        algo: Option<HashAlgo>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PathHashType {
    /// The NAR hash (recursive fixed-output hash).
    Nar,
    /// The SWHID (`swh:1:dir:` for a directory, `swh:1:cnt:` for a file).
    Swhid,
    /// Both, reading every file once.
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FileHashType {
    /// The hash of the bytes (flat fixed-output hash).
    Flat,
    /// The content SWHID (`swh:1:cnt:`).
    Swhid,
}

pub fn run(command: HashCommand) -> Result<ExitCode> {
    match command {
        HashCommand::Path { paths, hash_type, algo, format, any_exec_bit, json } => {
            if any_exec_bit && hash_type != PathHashType::Swhid {
                bail!("--any-exec-bit applies to --type swhid only: Nix's NAR counts the owner's execute bit");
            }
            let options =
                WalkOptions { executable: if any_exec_bit { ExecutableRule::Any } else { ExecutableRule::Owner } };
            each(&paths, |path, out| {
                let shown = path.display();
                match hash_type {
                    PathHashType::Nar => {
                        let hash =
                            tree_hasher::nar_hash(path, algo).with_context(|| format!("failed to hash {shown}"))?;
                        print_one(out, json, path, || json!({ "nar": hash.to_sri() }), &hash.encode(format))
                    }
                    PathHashType::Swhid => {
                        let swhid =
                            tree_hasher::swhid(path, &options).with_context(|| format!("failed to hash {shown}"))?;
                        print_one(out, json, path, || json!({ "swhid": swhid }), &swhid.to_string())
                    }
                    PathHashType::All => {
                        let hashes =
                            tree_hasher::hash_tree(path, algo).with_context(|| format!("failed to hash {shown}"))?;
                        let value = || {
                            let contents: Vec<_> = hashes
                                .contents
                                .iter()
                                .map(|c| {
                                    let mut entry = path_json(&c.path);
                                    entry["swhid"] = json!(c.swhid);
                                    entry
                                })
                                .collect();
                            json!({ "nar": hashes.nar.to_sri(), "swhid": hashes.swhid, "contents": contents })
                        };
                        print_one(out, json, path, value, &format!("{}\t{}", hashes.nar.encode(format), hashes.swhid))
                    }
                }
            })
        }
        HashCommand::File { files, hash_type, algo, format } => each(&files, |path, out| {
            let text = match hash_type {
                FileHashType::Flat => tree_hasher::file_hash(path, algo)?.encode(format),
                FileHashType::Swhid => {
                    let file =
                        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
                    let len = file.metadata().with_context(|| format!("failed to read {}", path.display()))?.len();
                    content_id_of_reader(file, len)
                        .with_context(|| format!("failed to read {}", path.display()))?
                        .to_string()
                }
            };
            writeln!(out, "{text}")?;
            Ok(())
        }),
        HashCommand::Convert { hashes, to, algo } => each(&hashes, |text, out| {
            writeln!(out, "{}", Hash::parse(text, algo)?.encode(to))?;
            Ok(())
        }),
    }
}

/// Runs `job` for every input, reporting each failure and going on; fails if any failed.
fn each<T>(inputs: &[T], mut job: impl FnMut(&T, &mut dyn Write) -> Result<()>) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut failed = 0;
    for input in inputs {
        if let Err(err) = job(input, &mut out) {
            if super::stdout_closed(&err) {
                return Err(err);
            }
            eprintln!("error: {err:#}");
            failed += 1;
        }
    }
    out.flush()?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints `text`, or with `--json` the path and what `value` builds.
fn print_one(
    out: &mut dyn Write,
    json: bool,
    path: &Path,
    value: impl FnOnce() -> serde_json::Value,
    text: &str,
) -> Result<()> {
    if json {
        let mut value = value();
        let mut described = path_json(path.as_os_str().as_bytes());
        if let (Some(obj), Some(extra)) = (described.as_object_mut(), value.as_object_mut()) {
            obj.append(extra);
        }
        writeln!(out, "{described}")?;
    } else {
        writeln!(out, "{text}")?;
    }
    Ok(())
}

/// A path as JSON: `path` (lossy when not UTF-8), plus `path_base64` with the exact bytes when the
/// path is not UTF-8, so that nothing is lost.
fn path_json(path: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(path) {
        Ok(text) => json!({ "path": text }),
        Err(_) => json!({
            "path": String::from_utf8_lossy(path),
            "path_base64": data_encoding::BASE64.encode(path),
        }),
    }
}
