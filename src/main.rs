//! The `swh-bridge` command: parses arguments, calls the library, prints.

use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use swh_bridge::hashing::swhid::content_id_of_reader;
use swh_bridge::hashing::tree::ExecutableRule;
use swh_bridge::hashing::tree::Limits;
use swh_bridge::hashing::tree::disk::WalkOptions;
use swh_bridge::hashing::{Encoding, Hash, HashAlgo, nar, tree_hasher};

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
    Hash(HashCommand),
    /// Write and read NAR (Nix ARchive) streams.
    #[command(subcommand)]
    Nar(NarCommand),
    /// List the sources a Nixpkgs revision needs, as sources.json, by evaluating it with Nix.
    List(ListArgs),
    /// Check, compare and count sources.json files (nixpkgs-swh's or Guix's).
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Get a source back by its hash, from its URLs or from Software Heritage, verified.
    Fetch(FetchArgs),
    /// Add the sources that building derivations needs, and the store lacks, to the Nix store:
    /// fetched by hash, verified, and placed at the output paths Nix expects.
    Prefetch(PrefetchArgs),
    /// Make a sources.json's sources recoverable: Save Code Now for VCS revisions the archive
    /// lacks (within the quota), and, while they can still be downloaded, recipes, content ids
    /// and tree SWHIDs into the recipe store (--recipes DIR). Resumable: the state is kept in
    /// SQLite, and a rerun skips what is done. `load status` follows the save requests.
    Load(Box<LoadArgs>),
    /// Report how much of a sources.json Software Heritage has, and how much `fetch` can give
    /// back bit for bit (and why not), in few API requests: JSON, Markdown or HTML.
    Audit(AuditArgs),
    /// Run a hashed mirror for Nix and Guix builds: every flat-hashed download whose upstream is
    /// gone is answered from Software Heritage, verified (`hashed-mirrors = http://ADDR/` in
    /// nix.conf).
    Serve(ServeArgs),
    /// Publish a recipe store as a static site (recipes, bridge index, sources.json, stats and
    /// an index page) that any web server can serve and `fetch --recipes URL` reads.
    Publish(PublishArgs),
    /// Record, rebuild and inspect tarball recipes: what Software Heritage drops when it archives
    /// a tarball unpacked.
    #[command(subcommand)]
    Recipe(RecipeCommand),
}

#[derive(Subcommand)]
enum RecipeCommand {
    /// Record how to rebuild FILE from its unpacked tree; checked by rebuilding it at once.
    Create {
        file: PathBuf,
        /// The hash FILE must have (any spelling Nix uses).
        #[arg(long)]
        expect: Option<String>,
        /// Where to write the recipe.
        #[arg(short, long, required_unless_present = "store")]
        output: Option<PathBuf>,
        /// A recipe store directory to add it to, under each of FILE's hashes, with its bridge
        /// index entry.
        #[arg(long)]
        store: Option<PathBuf>,
    },
    /// Rebuild the file from the tree it was unpacked to (the directory holding its top folder).
    Apply {
        recipe: PathBuf,
        #[arg(long)]
        tree: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Summarise a recipe.
    Show {
        recipe: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Look a file up in a recipe store's bridge index: by a flat hash, by the NAR hash of its
    /// unpacked tree (with --nar), or by the SWHID of its extraction root. Prints the entry (JSON).
    Lookup {
        /// A hash (any spelling Nix uses) or a `swh:1:dir:` SWHID.
        key: String,
        /// The hash is the NAR hash (sha256) of the unpacked tree, not the file's flat hash.
        #[arg(long)]
        nar: bool,
        /// The recipe store: a directory or an HTTP base URL.
        #[arg(long)]
        recipes: String,
    },
}

/// Where fetched sources come from, and where fetching keeps its cache.
#[derive(Clone, clap::Args)]
struct ArchiveArgs {
    /// The archive's API root [default: the configuration file's, else the public archive].
    #[arg(long, env = "SWH_BRIDGE_ARCHIVE")]
    archive: Option<url::Url>,
    /// Hashed mirrors to try after a source's own URLs, as Nix's `hashed-mirrors` (repeatable;
    /// adds to the configuration file's).
    #[arg(long = "hashed-mirror")]
    hashed_mirrors: Vec<String>,
    /// Where the cache lives [default: $XDG_DATA_HOME/swh-bridge].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Neither look in the cache nor keep what is fetched there.
    #[arg(long)]
    no_cache: bool,
    /// Walk a directory through the API only while that takes at most this many requests;
    /// larger ones come from the vault (0: always the vault first).
    #[arg(long, default_value_t = swh_bridge::fallback::DEFAULT_WALK_LIMIT)]
    walk_limit: usize,
    /// When the archive rate-limits, wait for the reset if it comes within this many seconds;
    /// else stop, saying when to retry.
    #[arg(long, default_value_t = 0)]
    max_wait: u64,
    /// Give up a download from upstream or a mirror after this many seconds without a byte.
    #[arg(long, default_value_t = swh_bridge::fallback::DEFAULT_UPSTREAM_TIMEOUT.as_secs())]
    upstream_timeout: u64,
    /// A recipe store (a directory or an HTTP base URL) for rebuilding tarballs that the archive
    /// keeps unpacked [default: the configuration file's, else `recipes` in the data directory
    /// if it exists].
    #[arg(long)]
    recipes: Option<String>,
    /// The configuration file [default: $XDG_CONFIG_HOME/swh-bridge/config.json, if present].
    #[arg(long)]
    config: Option<PathBuf>,
}

/// The archive settings, once flags, environment and configuration file are merged.
struct Archive {
    fetcher: swh_bridge::fallback::Fetcher,
    hashed_mirrors: Vec<String>,
    data_dir: PathBuf,
    /// The recipe store the fetcher reads, if any.
    recipes: Option<swh_bridge::recipes::store::RecipeStore>,
}

impl ArchiveArgs {
    fn resolve(self) -> Result<Archive> {
        use swh_bridge::archive::{ArchiveClient, ClientConfig};
        use swh_bridge::config::Config;

        let config = Config::load(&self.config.unwrap_or_else(Config::default_path))?;
        let api = match (self.archive, config.archive) {
            (Some(api), _) | (None, Some(api)) => api,
            (None, None) => url::Url::parse(swh_bridge::archive::PUBLIC_API).expect("the public API URL is valid"),
        };
        let mut client = ClientConfig::for_api(api);
        client.token = client.token.or(config.token);
        client.max_rate_limit_wait = std::time::Duration::from_secs(self.max_wait);
        let data_dir = self.data_dir.unwrap_or_else(swh_bridge::fallback::Cache::default_data_dir);
        let fetcher = swh_bridge::fallback::Fetcher::new(ArchiveClient::new(client))
            .with_walk_limit(self.walk_limit)
            .with_upstream_timeout(std::time::Duration::from_secs(self.upstream_timeout));
        let fetcher =
            if self.no_cache { fetcher } else { fetcher.with_cache(swh_bridge::fallback::Cache::new(&data_dir)) };
        let default_store = Some(data_dir.join("recipes")).filter(|store| store.is_dir());
        let recipes = self
            .recipes
            .or(config.recipes)
            .or(default_store.map(|s| s.display().to_string()))
            .map(|location| swh_bridge::recipes::store::RecipeStore::new(&location));
        let fetcher = match &recipes {
            Some(store) => fetcher.with_recipes(store.clone()),
            None => fetcher,
        };
        let mut hashed_mirrors = self.hashed_mirrors;
        hashed_mirrors.extend(config.hashed_mirrors);
        Ok(Archive { fetcher, hashed_mirrors, data_dir, recipes })
    }
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct LoadArgs {
    #[command(subcommand)]
    command: Option<LoadCommand>,
    /// The sources.json to load.
    #[arg(required = true)]
    sources: Option<PathBuf>,
    /// Load only the sources added or changed since this earlier sources.json.
    #[arg(long)]
    since: Option<PathBuf>,
    /// The loader's state [default: state.sqlite in the data directory].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Sources captured at once.
    #[arg(short, long, default_value_t = 4)]
    jobs: usize,
    /// Downloads at once from one host.
    #[arg(long, default_value_t = 2)]
    per_host: usize,
    /// Save Code Now requests per hour (the archive allows about 10); the rest wait, queued,
    /// for a later run.
    #[arg(long, default_value_t = 10)]
    saves_per_hour: u64,
    /// Memory the captures may hold at once, in MiB: a capture is reckoned at 8 times its
    /// file's size, and waits for room (a file larger than the budget runs alone).
    #[arg(long, default_value_t = 4096)]
    memory_budget: u32,
    /// Nix binary caches whose NARs are the last resort for a source's bytes (repeatable).
    #[arg(long = "binary-cache")]
    binary_caches: Vec<url::Url>,
    /// Do not use the NixOS project's copies: tarballs.nixos.org (as a hashed mirror) and
    /// cache.nixos.org (as a binary cache), which are used by default.
    #[arg(long)]
    no_nixos_mirrors: bool,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print one JSON object per source, then the summary as one, instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum LoadCommand {
    /// Poll the open Save Code Now requests, ask the archive which waiting revisions it now has,
    /// and show every request's status.
    Status {
        /// The loader's state [default: state.sqlite in the data directory].
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        archive: ArchiveArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The NixOS project's copies of sources: a hashed mirror and a binary cache.
const NIXOS_HASHED_MIRROR: &str = "https://tarballs.nixos.org/";
const NIXOS_BINARY_CACHE: &str = "https://cache.nixos.org/";

#[derive(clap::Args)]
struct AuditArgs {
    /// The sources.json to audit.
    sources: PathBuf,
    #[arg(long, value_enum, default_value_t = AuditFormat::Json)]
    format: AuditFormat,
    /// Where to write the report [default: standard output].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Fetch this many recoverable sources, picked at random, to check the audit's word.
    #[arg(long, default_value_t = 0)]
    verify_sample: usize,
    /// The random pick's seed [default: the time].
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds a cached verdict other than "recoverable" is trusted (recoverable ones always are).
    #[arg(long, default_value_t = 86_400)]
    max_age: i64,
    /// The state database holding cached verdicts and earlier audits [default: state.sqlite in
    /// the data directory].
    #[arg(long)]
    state: Option<PathBuf>,
    #[command(flatten)]
    archive: ArchiveArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuditFormat {
    Json,
    Md,
    Html,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Fetches from the archive that may run at once.
    #[arg(long, default_value_t = 4)]
    max_resolutions: usize,
    /// Seconds a request waits for its source to be found before answering 404 (the search goes
    /// on, and a later request finds it cached).
    #[arg(long, default_value_t = 120)]
    resolve_timeout: u64,
    /// Seconds a hash found missing is answered 404 without asking the archive again.
    #[arg(long, default_value_t = 600)]
    negative_ttl: u64,
    #[command(flatten)]
    archive: ArchiveArgs,
}

#[derive(clap::Args)]
struct PublishArgs {
    /// The recipe store (a directory) to publish.
    #[arg(long)]
    recipes: PathBuf,
    /// The site's directory (created if need be).
    #[arg(long)]
    out: PathBuf,
    /// The sources.json the recipes were captured from, published beside them.
    #[arg(long)]
    sources: Option<PathBuf>,
    /// The loader's state, for the statistics [default: state.sqlite in the data directory, if
    /// it exists].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Print the statistics as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct PrefetchArgs {
    /// Derivations (`.drv` store paths, as `nix-instantiate` prints them).
    #[arg(required = true)]
    drvs: Vec<String>,
    /// The Nix store to add to, as Nix's `--store` (a directory is a chroot store).
    #[arg(long)]
    store: Option<String>,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Print one JSON object per source instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct FetchArgs {
    /// The hash: SRI, `algo:…`, or bare with --algo.
    hash: String,
    #[arg(long, value_enum, default_value_t = FetchMode::Flat)]
    mode: FetchMode,
    /// Algorithm of a bare hash.
    #[arg(long)]
    algo: Option<HashAlgo>,
    /// Upstream URLs to try first (repeatable).
    #[arg(long = "url")]
    urls: Vec<String>,
    /// Where to put the file or tree; it must not exist [default: ./NAME].
    #[arg(short, long, required_unless_present = "name")]
    output: Option<PathBuf>,
    /// The source's name (its store name): the output's file name when -o is not given.
    #[arg(long)]
    name: Option<String>,
    /// For --mode recursive of a git checkout: its full commit id, looked up when no ExtID maps
    /// the hash.
    #[arg(long)]
    git_commit: Option<String>,
    #[command(flatten)]
    archive: ArchiveArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FetchMode {
    /// The hash of the file's bytes (fetchurl).
    Flat,
    /// The NAR hash of a tree (fetchzip, fetchgit, …).
    Recursive,
}

#[derive(clap::Args)]
struct ListArgs {
    /// A Nixpkgs checkout, or a git repository with --rev.
    #[arg(required_unless_present = "from_raw")]
    nixpkgs: Option<PathBuf>,
    /// The revision to list (checked out into a temporary directory).
    #[arg(long)]
    rev: Option<String>,
    /// Start from this attribute path instead of the default roots (repeatable).
    #[arg(long = "attr")]
    attrs: Vec<String>,
    /// Evaluator processes to run at once.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Where to write sources.json.
    #[arg(short, long)]
    output: PathBuf,
    /// Also keep the evaluation's raw output here.
    #[arg(long)]
    save_raw: Option<PathBuf>,
    /// Post-process a raw evaluation saved with --save-raw instead of evaluating.
    #[arg(long, conflicts_with_all = ["nixpkgs", "rev", "attrs"])]
    from_raw: Option<PathBuf>,
    /// Print the summary as JSON on standard output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SourcesCommand {
    /// Check every entry and report each problem with its index and field.
    Validate {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Sources added, removed and changed from OLD to NEW.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Counts by type, hash mode and algorithm, host, scheme and file type.
    Stats {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum HashCommand {
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
enum PathHashType {
    /// The NAR hash (recursive fixed-output hash).
    Nar,
    /// The SWHID (`swh:1:dir:` for a directory, `swh:1:cnt:` for a file).
    Swhid,
    /// Both, reading every file once.
    All,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FileHashType {
    /// The hash of the bytes (flat fixed-output hash).
    Flat,
    /// The content SWHID (`swh:1:cnt:`).
    Swhid,
}

#[derive(Subcommand)]
enum NarCommand {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Hash(HashCommand::Path { paths, hash_type, algo, format, any_exec_bit, json }) => {
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
                        print_one(out, json, path, || json!({ "swhid": swhid.to_string() }), &swhid.to_string())
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
                                    entry["swhid"] = json!(c.swhid.to_string());
                                    entry
                                })
                                .collect();
                            json!({
                                "nar": hashes.nar.to_sri(),
                                "swhid": hashes.swhid.to_string(),
                                "contents": contents,
                            })
                        };
                        print_one(out, json, path, value, &format!("{}\t{}", hashes.nar.encode(format), hashes.swhid))
                    }
                }
            })
        }
        Command::Hash(HashCommand::File { files, hash_type, algo, format }) => each(&files, |path, out| {
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
        Command::Hash(HashCommand::Convert { hashes, to, algo }) => each(&hashes, |text, out| {
            writeln!(out, "{}", Hash::parse(text, algo)?.encode(to))?;
            Ok(())
        }),
        Command::List(args) => list(args),
        Command::Fetch(args) => fetch(args),
        Command::Prefetch(args) => prefetch(args),
        Command::Load(args) => load(*args),
        Command::Publish(args) => publish(args),
        Command::Serve(args) => serve(args),
        Command::Audit(args) => audit(args),
        Command::Recipe(command) => recipe(command),
        Command::Sources(command) => sources(command),
        Command::Nar(NarCommand::Dump { path }) => {
            nar::dump_path(&path, io::stdout().lock()).with_context(|| format!("failed to dump {}", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Nar(NarCommand::Restore { dest, expect }) => {
            let expected = expect.as_deref().map(|h| Hash::parse(h, None)).transpose()?;
            let restored = nar::restore(io::stdin().lock(), &dest, expected.as_ref(), Limits::default())
                .with_context(|| format!("failed to restore {}", dest.display()))?;
            eprintln!("restored {} ({} NAR bytes, {})", dest.display(), restored.nar_size, restored.nar_hash);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `job` for every input, reporting each failure and going on; fails if any failed.
fn each<T>(inputs: &[T], mut job: impl FnMut(&T, &mut dyn Write) -> Result<()>) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut failed = 0;
    for input in inputs {
        if let Err(err) = job(input, &mut out) {
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
    path: &std::path::Path,
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

fn list(args: ListArgs) -> Result<ExitCode> {
    use swh_bridge::listers::nixpkgs::{self, ListOptions, RawEvaluation};

    let listing = match (&args.from_raw, &args.nixpkgs) {
        (Some(raw), _) => {
            let bytes = std::fs::read(raw).with_context(|| format!("failed to read {}", raw.display()))?;
            let evaluation: RawEvaluation =
                serde_json::from_slice(&bytes).with_context(|| format!("failed to parse {}", raw.display()))?;
            nixpkgs::Listing::from_raw(evaluation)
        }
        (None, Some(path)) => {
            let options = ListOptions { nixpkgs: path.clone(), rev: args.rev, attrs: args.attrs, jobs: args.jobs };
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{spinner} evaluating {pos}/{len} chunks of roots {elapsed}")
                    .expect("a valid template"),
            );
            // One chunk can take minutes: keep the spinner moving meanwhile.
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            let listing = nixpkgs::list(&options, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            });
            bar.finish_and_clear();
            listing.with_context(|| format!("failed to list {}", path.display()))?
        }
        (None, None) => unreachable!("clap requires NIXPKGS or --from-raw"),
    };
    if let Some(raw_path) = &args.save_raw {
        write_atomically(raw_path, |out| Ok(serde_json::to_writer(out, &listing.raw)?))?;
    }
    write_atomically(&args.output, |out| swh_bridge::sources::write(&listing.file, out).map_err(Into::into))?;

    let counts = swh_bridge::sources::stats::stats_of(&listing.file.sources, 0);
    if args.json {
        let failed: Vec<_> =
            listing.failed.iter().map(|f| json!({ "attribute": f.attribute, "reason": f.reason })).collect();
        let rejected: Vec<_> = listing.rejected.iter().map(|r| r.to_string()).collect();
        println!(
            "{}",
            json!({
                "sources": listing.file.sources.len(),
                "roots": listing.roots,
                "by_type": counts.by_type,
                "by_hash_mode": counts.by_hash_mode,
                "failed": failed,
                "rejected": rejected,
                "unknown_mirrors": listing.unknown_mirrors,
            })
        );
    } else {
        eprintln!(
            "{} sources from {} root attributes written to {}",
            listing.file.sources.len(),
            listing.roots,
            args.output.display()
        );
        eprintln!("  by type: {}", show_counts(&counts.by_type));
        eprintln!("  by hash mode: {}", show_counts(&counts.by_hash_mode));
        if !listing.failed.is_empty() {
            eprintln!("  {} attributes failed to evaluate and were skipped:", listing.failed.len());
            for failure in &listing.failed {
                eprintln!(
                    "    {}: {}",
                    failure.attribute,
                    failure.reason.as_deref().unwrap_or("(reason not looked up)")
                );
            }
        }
        if !listing.rejected.is_empty() {
            eprintln!("  {} fixed-output derivations could not be described:", listing.rejected.len());
            for rejected in &listing.rejected {
                eprintln!("    {rejected}");
            }
        }
        if !listing.unknown_mirrors.is_empty() {
            eprintln!(
                "  {} URLs name a mirror site mirrors.nix lacks, and were dropped:",
                listing.unknown_mirrors.len()
            );
            for url in &listing.unknown_mirrors {
                eprintln!("    {url}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sources(command: SourcesCommand) -> Result<ExitCode> {
    use swh_bridge::sources::{diff, stats, validate};

    match command {
        SourcesCommand::Validate { file, json } => {
            let bytes = std::fs::read(&file).with_context(|| format!("failed to read {}", file.display()))?;
            let document: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("failed to parse {} as JSON", file.display()))?;
            let report = validate::validate(&document);
            if json {
                let problems: Vec<_> = report.problems.iter().map(|p| p.to_string()).collect();
                println!("{}", json!({ "entries": report.entries, "problems": problems }));
            } else {
                for problem in &report.problems {
                    println!("{}: {problem}", file.display());
                }
                eprintln!("{} entries, {} problems", report.entries, report.problems.len());
            }
            Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        SourcesCommand::Diff { old, new, json } => {
            let (old_read, new_read) = (read_sources(&old)?, read_sources(&new)?);
            let changes = diff::diff(&old_read.file.sources, &new_read.file.sources);
            let mut out = io::stdout().lock();
            if json {
                serde_json::to_writer(&mut out, &changes)?;
                writeln!(out)?;
            } else {
                for source in &changes.added {
                    writeln!(out, "+ {} {}", source.identity(), source.primary_url().unwrap_or(""))?;
                }
                for source in &changes.removed {
                    writeln!(out, "- {} {}", source.identity(), source.primary_url().unwrap_or(""))?;
                }
                for change in &changes.changed {
                    writeln!(out, "~ {} ({})", change.identity, change.fields.join(", "))?;
                }
                eprintln!(
                    "{} added, {} removed, {} changed",
                    changes.added.len(),
                    changes.removed.len(),
                    changes.changed.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        SourcesCommand::Stats { file, json } => {
            let read = read_sources(&file)?;
            let counts = stats::stats(&read);
            if json {
                println!("{}", serde_json::to_string(&counts)?);
            } else {
                println!("sources: {} (and {} without an origin)", counts.sources, counts.without_origin);
                println!("by type: {}", show_counts(&counts.by_type));
                println!("by hash mode: {}", show_counts(&counts.by_hash_mode));
                println!("by hash algorithm: {}", show_counts(&counts.by_hash_algo));
                println!("url sources by scheme: {}", show_counts(&counts.by_scheme));
                println!("url sources by file type: {}", show_counts(&counts.by_file_type));
                println!("hosts: {}", counts.hosts);
                for (host, n) in &counts.top_hosts {
                    println!("  {n:>8}  {host}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn show_counts<N: std::fmt::Display>(counts: &std::collections::BTreeMap<String, N>) -> String {
    counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// Reads a sources.json, reporting the entries it had to skip.
fn read_sources(path: &std::path::Path) -> Result<swh_bridge::sources::ReadSources> {
    let read = swh_bridge::sources::read_file(path)?;
    for problem in &read.problems {
        eprintln!("warning: {}: skipping {problem}", path.display());
    }
    Ok(read)
}

/// Writes `path` through a temporary file beside it, renamed into place once complete.
fn write_atomically(path: &std::path::Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    // An ordinary file's mode, where a temp file starts 0600.
    let mut temp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .with_context(|| format!("failed to write {}", path.display()))?;
    {
        let mut out = io::BufWriter::new(temp.as_file_mut());
        write(&mut out)?;
        out.flush().with_context(|| format!("failed to write {}", path.display()))?;
    }
    temp.persist(path).with_context(|| format!("failed to write {}", path.display()))?;
    Ok(())
}

fn fetch(args: FetchArgs) -> Result<ExitCode> {
    use swh_bridge::fallback::{FetchRequest, Mode};

    let hash = Hash::parse(&args.hash, args.algo)?;
    let mode = match args.mode {
        FetchMode::Flat => Mode::Flat,
        FetchMode::Recursive => Mode::Recursive,
    };
    let output = match (args.output, &args.name) {
        (Some(output), _) => output,
        (None, Some(name)) if !name.is_empty() && !name.contains('/') && name != "." && name != ".." => {
            PathBuf::from(name)
        }
        (None, name) => bail!("--name {name:?} cannot name a file: give -o OUT"),
    };
    let archive = args.archive.resolve()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let request = FetchRequest {
        hash: &hash,
        mode,
        urls: &args.urls,
        git_commit: args.git_commit.as_deref(),
        hashed_mirrors: &archive.hashed_mirrors,
    };
    let report = runtime
        .block_on(archive.fetcher.fetch(&request, &output))
        .with_context(|| format!("failed to fetch {hash}"))?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    eprintln!(
        "fetched {hash} from {} to {} ({} archive requests)",
        report.origin,
        output.display(),
        report.archive_requests
    );
    Ok(ExitCode::SUCCESS)
}

fn load(args: LoadArgs) -> Result<ExitCode> {
    use swh_bridge::loader::binary_cache::BinaryCache;
    use swh_bridge::loader::state::State;
    use swh_bridge::loader::{Concurrency, Loader, Outcome};

    if let Some(LoadCommand::Status { state, archive, json }) = args.command {
        return load_status(state, archive, json);
    }
    let data_dir = args.archive.data_dir.clone().unwrap_or_else(swh_bridge::fallback::Cache::default_data_dir);
    let recipes = args.archive.recipes.clone().unwrap_or_else(|| data_dir.join("recipes").display().to_string());
    // Created even if nothing gets captured, so that publishing it finds it.
    std::fs::create_dir_all(&recipes).with_context(|| format!("failed to create the recipe store {recipes}"))?;
    let store = swh_bridge::recipes::store::RecipeStore::Directory(PathBuf::from(&recipes));
    let sources_path = args.sources.expect("clap requires it without a subcommand");
    let read = read_sources(&sources_path)?;
    let mut archive = args.archive.resolve()?;
    let state_path = args.state.clone().unwrap_or_else(|| archive.data_dir.join("state.sqlite"));
    let state = State::open(&state_path)?;
    let sources: Vec<swh_bridge::sources::Source> = match &args.since {
        None => read.file.sources,
        Some(previous) => {
            // What is new or changed, and what an earlier run failed on or never reached.
            let old = read_sources(previous)?;
            let diff = swh_bridge::sources::diff::diff(&old.file.sources, &read.file.sources);
            let changed = diff.changed.iter().map(|change| change.new);
            let fresh: std::collections::HashSet<String> =
                diff.added.iter().copied().chain(changed).map(swh_bridge::sources::Source::identity).collect();
            let unfinished = |source: &swh_bridge::sources::Source| -> Result<bool> {
                if source.kind != swh_bridge::sources::SourceType::Url {
                    return Ok(false);
                }
                let Some(hash) =
                    source.integrity.as_deref().and_then(|i| swh_bridge::hashing::Hash::parse(i, None).ok())
                else {
                    return Ok(false);
                };
                Ok(state.get(&hash.to_sri())?.is_none_or(|record| record.status == "failed"))
            };
            let mut chosen = Vec::new();
            for source in read.file.sources {
                if fresh.contains(&source.identity()) || unfinished(&source)? {
                    chosen.push(source);
                }
            }
            chosen
        }
    };
    let mut binary_caches: Vec<BinaryCache> = args.binary_caches.iter().map(BinaryCache::new).collect();
    if !args.no_nixos_mirrors {
        archive.hashed_mirrors.push(NIXOS_HASHED_MIRROR.to_owned());
        binary_caches.push(BinaryCache::new(&url::Url::parse(NIXOS_BINARY_CACHE).expect("a valid URL")));
    }
    let loader = Loader {
        fetcher: &archive.fetcher,
        store: &store,
        state: &state,
        hashed_mirrors: &archive.hashed_mirrors,
        binary_caches: &binary_caches,
        concurrency: Concurrency {
            jobs: args.jobs,
            per_host: args.per_host,
            saves_per_hour: args.saves_per_hour,
            memory_mib: args.memory_budget,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = std::time::Instant::now();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let saved = runtime.block_on(loader.save(&sources, now))?;

    let bar = indicatif::ProgressBar::new(sources.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} loading {pos}/{len} sources {elapsed} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let (mut download, mut compute) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut stdout = io::stdout().lock();
    let mut write_failed = false;
    runtime.block_on(loader.capture_all(&sources, |index, report| {
        bar.inc(1);
        download += report.timings.download;
        compute += report.timings.compute;
        let status = report.outcome.status();
        *counts.entry(status.to_owned()).or_insert(0) += 1;
        let integrity = sources[index].integrity.as_deref().unwrap_or("");
        let detail = match &report.outcome {
            Outcome::Captured { swhid } => swhid.clone(),
            Outcome::AlreadyCaptured => String::new(),
            Outcome::Failed { error } => error.clone(),
            Outcome::Skipped { why } => (*why).to_owned(),
        };
        let line = if args.json {
            let line = json!({"index": index, "integrity": integrity, "kind": report.kind,
                              "status": status, "detail": detail});
            Some(line.to_string())
        } else {
            matches!(report.outcome, Outcome::Captured { .. } | Outcome::Failed { .. })
                .then(|| format!("{status} {} {integrity}: {detail}", report.kind))
        };
        if let Some(line) = line {
            write_failed |= bar.suspend(|| writeln!(stdout, "{line}")).is_err();
        }
    }))?;
    bar.finish_and_clear();
    if write_failed {
        bail!("failed to write to standard output");
    }
    let requests = archive.fetcher.archive().requests();
    let failed = counts.contains_key("failed") || !saved.errors.is_empty();
    let summary = json!({
        "sources": sources.len(),
        "captures": counts,
        "vcs": {
            "archived": saved.archived,
            "waiting": saved.waiting,
            "submitted": saved.submitted.iter().map(|(o, s)| json!({"visit_type": o.visit_type, "url": o.url, "status": s})).collect::<Vec<_>>(),
            "reconciled": saved.reconciled,
            "queued": saved.queued.iter().map(|o| json!({"visit_type": o.visit_type, "url": o.url})).collect::<Vec<_>>(),
            "rate_limited": saved.rate_limited,
            "errors": saved.errors,
        },
        "seconds": {"wall": started.elapsed().as_secs_f64(), "download": download.as_secs_f64(), "compute": compute.as_secs_f64()},
        "archive_requests": requests,
    });
    if args.json {
        writeln!(stdout, "{}", json!({ "summary": summary }))?;
    } else {
        for error in &saved.errors {
            eprintln!("error: {error}");
        }
        if let Some(why) = &saved.rate_limited {
            eprintln!("note: Save Code Now stopped early: {why}");
        }
        eprintln!("{} sources: {}", sources.len(), show_counts(&counts));
        eprintln!(
            "VCS revisions: {} archived, {} waiting; save requests: {} sent, {} settled from an interrupted run, {} queued",
            saved.archived,
            saved.waiting,
            saved.submitted.len(),
            saved.reconciled,
            saved.queued.len()
        );
        eprintln!(
            "{:.1} s: {:.1} s waiting on downloads, {:.1} s computing (summed over {} jobs); {requests} archive requests",
            started.elapsed().as_secs_f64(),
            download.as_secs_f64(),
            compute.as_secs_f64(),
            args.jobs
        );
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn audit(args: AuditArgs) -> Result<ExitCode> {
    use swh_bridge::audit::report::{AuditReport, Change};
    use swh_bridge::audit::{Auditor, Summary, Verdict, verify_sample};
    use swh_bridge::loader::state::State;

    let read = read_sources(&args.sources)?;
    // The sample is fetched from the archive itself, not from what the cache kept.
    let verifier = ArchiveArgs { no_cache: true, ..args.archive.clone() }.resolve()?;
    let archive = args.archive.resolve()?;
    let state = State::open(&args.state.clone().unwrap_or_else(|| archive.data_dir.join("state.sqlite")))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let client = archive.fetcher.archive();
    let before = client.requests();
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{spinner} looking sources up one by one: {pos}/{len} {elapsed}")
            .expect("a valid template"),
    );
    let progress = |done: usize, of: usize| {
        bar.set_length(of as u64);
        bar.set_position(done as u64);
    };
    let auditor = Auditor {
        archive: client,
        store: archive.recipes.as_ref(),
        state: &state,
        max_age: args.max_age,
        progress: &progress,
    };
    let sources = &read.file.sources;
    let audited = runtime.block_on(auditor.audit(sources, now as i64))?;
    bar.finish_and_clear();
    let archive_requests = client.requests() - before;
    let verified = match args.verify_sample {
        0 => Vec::new(),
        n => runtime.block_on(verify_sample(&verifier.fetcher, sources, &audited, n, args.seed.unwrap_or(now))),
    };
    let verification_requests = verifier.fetcher.archive().requests();
    let summary = Summary::of(&audited);
    // Sources the archive could not be asked about (a rate limit, an error) leave it unfinished.
    let unasked = audited.iter().any(|a| {
        matches!(&a.verdict, Verdict::CannotTell { why } if !why.starts_with("no hash")
            && !why.starts_with("unreadable hash") && !why.starts_with("unknown hash mode")
            && !why.starts_with("a VCS source"))
    });
    let file = std::fs::canonicalize(&args.sources).unwrap_or_else(|_| args.sources.clone()).display().to_string();
    let counts = serde_json::to_string(&summary.by_status)?;
    // An unfinished audit is no baseline for the next one's "change".
    let previous = match unasked {
        false => state.record_audit(&file, read.file.revision.as_deref(), &counts, now as i64)?,
        true => None,
    };
    let change = previous.and_then(|(counts, revision)| {
        let counts: std::collections::BTreeMap<String, usize> = serde_json::from_str(&counts).ok()?;
        Some(Change::between(&counts, &summary.by_status, revision))
    });
    let report = AuditReport {
        file,
        revision: read.file.revision.clone(),
        generated_at: now as i64,
        archive_requests,
        verification_requests,
        summary,
        change,
        verified,
        sources: audited,
    };
    let rendered = match args.format {
        AuditFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        AuditFormat::Md => report.markdown(),
        AuditFormat::Html => report.html(),
    };
    match &args.output {
        Some(path) => write_atomically(path, |out| Ok(out.write_all(rendered.as_bytes())?))?,
        None => io::stdout().lock().write_all(rendered.as_bytes())?,
    }
    eprintln!(
        "{} sources: {}; {} archive requests ({} verdicts from the cache)",
        report.summary.sources,
        show_counts(&report.summary.by_status),
        report.archive_requests,
        report.summary.cached
    );
    let failed_checks = report.verified.iter().filter(|v| !v.ok).count();
    if !report.verified.is_empty() {
        eprintln!(
            "checked by fetching: {} of {} sampled sources came back",
            report.verified.len() - failed_checks,
            report.verified.len()
        );
    }
    // Sources the archive could not be asked about (a rate limit, an error) leave it unfinished.
    let unasked = report.sources.iter().any(|a| {
        matches!(&a.verdict, Verdict::CannotTell { why } if !why.starts_with("no hash") && !why.starts_with("unreadable hash") && !why.starts_with("unknown hash mode"))
    });
    Ok(if failed_checks > 0 || unasked { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    use swh_bridge::serve::{ServeOptions, Server};

    let no_cache = args.archive.no_cache;
    let archive = args.archive.resolve()?;
    let cache = (!no_cache).then(|| swh_bridge::fallback::Cache::new(&archive.data_dir));
    let options = ServeOptions {
        max_resolutions: args.max_resolutions,
        resolve_timeout: std::time::Duration::from_secs(args.resolve_timeout),
        negative_ttl: std::time::Duration::from_secs(args.negative_ttl),
    };
    let scratch = archive.data_dir.join("serve-scratch");
    let server = std::sync::Arc::new(Server::new(archive.fetcher, cache, scratch, options));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("failed to listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        eprintln!("serving a hashed mirror on http://{address}/ (nix.conf: hashed-mirrors = http://{address}/)");
        swh_bridge::serve::run(server, listener).await.context("the server failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn publish(args: PublishArgs) -> Result<ExitCode> {
    use swh_bridge::loader::state::State;
    use swh_bridge::publish::{Publication, publish};

    let state_path =
        args.state.clone().unwrap_or_else(|| swh_bridge::fallback::Cache::default_data_dir().join("state.sqlite"));
    let state = match (&args.state, state_path.exists()) {
        (Some(_), _) | (None, true) => Some(State::open(&state_path)?),
        (None, false) => None,
    };
    let revision = match &args.sources {
        Some(path) => read_sources(path)?.file.revision,
        None => None,
    };
    let publication = Publication {
        recipes: &args.recipes,
        out: &args.out,
        sources: args.sources.as_deref().map(|path| (path, revision.as_deref())),
        state: state.as_ref(),
    };
    let report = publish(&publication)?;
    if args.json {
        println!("{}", serde_json::to_string(&report.stats)?);
    } else {
        eprintln!(
            "published {} recipes to {}: {} files written, {} unchanged",
            report.stats.recipes,
            args.out.display(),
            report.written,
            report.unchanged
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_status(state: Option<PathBuf>, archive: ArchiveArgs, json: bool) -> Result<ExitCode> {
    use swh_bridge::loader::save::{Saver, save_status};
    use swh_bridge::loader::state::State;

    let archive = archive.resolve()?;
    let state = State::open(&state.unwrap_or_else(|| archive.data_dir.join("state.sqlite")))?;
    let saver = Saver { archive: archive.fetcher.archive(), state: &state, per_hour: 0 };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let errors = runtime.block_on(saver.refresh())?;
    let saves = state.saves(false)?;
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for save in &saves {
        *by_status.entry(save_status(save).to_owned()).or_insert(0) += 1;
    }
    let revisions: std::collections::BTreeMap<String, u64> = state.revision_counts()?.into_iter().collect();
    let captures: std::collections::BTreeMap<String, u64> = state.capture_counts()?.into_iter().collect();
    let mut stdout = io::stdout().lock();
    if json {
        let requests: Vec<_> = saves
            .iter()
            .map(|save| {
                json!({"visit_type": save.origin.visit_type, "url": save.origin.url, "id": save.request_id,
                       "status": save_status(save), "request_status": save.request_status,
                       "task_status": save.task_status, "note": save.note, "submitted_at": save.submitted_at})
            })
            .collect();
        let answer = json!({"requests": requests, "saves": by_status, "revisions": revisions,
                            "captures": captures, "errors": errors});
        writeln!(stdout, "{answer}")?;
    } else {
        for save in &saves {
            let id = save.request_id.map_or_else(|| "-".to_owned(), |id| id.to_string());
            writeln!(stdout, "{:<10} {id:>8} {} {}", save_status(save), save.origin.visit_type, save.origin.url)?;
        }
        for error in &errors {
            eprintln!("error: {error}");
        }
        eprintln!("save requests: {}", show_counts(&by_status));
        eprintln!("VCS revisions: {}; captures: {}", show_counts(&revisions), show_counts(&captures));
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn prefetch(args: PrefetchArgs) -> Result<ExitCode> {
    use swh_bridge::fallback::prefetch::{MissingSource, prefetch_source};
    use swh_bridge::store::NixStore;

    let store = NixStore::new(args.store.clone());
    let missing = store.missing_fixed_outputs(&args.drvs).context("failed to read the derivations' closure")?;
    let archive = args.archive.resolve()?;
    let scratch = archive.data_dir.join("scratch");
    std::fs::create_dir_all(&scratch).with_context(|| format!("failed to create {}", scratch.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let bar = indicatif::ProgressBar::new(missing.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{spinner} fetching {pos}/{len} missing sources {elapsed} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let (mut added, mut failed, mut requests) = (0, 0, 0);
    let mut stdout = io::stdout().lock();
    for (drv, derivation) in &missing {
        let Some(source) = MissingSource::of(drv, derivation) else { continue };
        let result = source.and_then(|source| {
            bar.set_message(source.name().to_owned());
            runtime
                .block_on(prefetch_source(&archive.fetcher, &store, &source, &archive.hashed_mirrors, &scratch))
                .map(|report| (source, report))
        });
        bar.inc(1);
        let line = match result {
            Ok((source, report)) => {
                added += 1;
                requests += report.archive_requests;
                if args.json {
                    json!({"drv": drv, "output": source.output, "status": "added", "origin": report.origin,
                           "archive_requests": report.archive_requests, "notes": report.notes})
                    .to_string()
                } else {
                    format!(
                        "added {} from {} ({} archive requests)",
                        source.output, report.origin, report.archive_requests
                    )
                }
            }
            Err(err) => {
                failed += 1;
                let reason = format!("{:#}", anyhow::Error::from(err));
                let reason = reason.replace('\n', " ");
                if args.json {
                    json!({"drv": drv, "status": "failed", "error": reason}).to_string()
                } else {
                    format!("failed {drv}: {reason}")
                }
            }
        };
        bar.suspend(|| writeln!(stdout, "{line}"))?;
    }
    bar.finish_and_clear();
    eprintln!("{} missing sources: {added} added, {failed} failed ({requests} archive requests)", missing.len());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn recipe(command: RecipeCommand) -> Result<ExitCode> {
    use swh_bridge::hashing::tree::disk;
    use swh_bridge::hashing::tree::memory::NodeBuilder;
    use swh_bridge::recipes::bridge::BridgeEntry;
    use swh_bridge::recipes::{Compression, Recipe};

    let read = |path: &PathBuf| std::fs::read(path).with_context(|| format!("failed to read {}", path.display()));
    match command {
        RecipeCommand::Create { file, expect, output, store } => {
            let bytes = read(&file)?;
            if let Some(expect) = expect {
                let expected = Hash::parse(&expect, None)?;
                let mut hasher = expected.algo().hasher();
                hasher.update(&bytes);
                let actual = hasher.finish();
                if actual != expected {
                    bail!("{} hashes to {actual}, not {expected}", file.display());
                }
            }
            let (recipe, tree) =
                Recipe::create(&bytes).with_context(|| format!("failed to make a recipe for {}", file.display()))?;
            let encoded = recipe.encode();
            let mut written = Vec::new();
            if let Some(output) = output {
                write_atomically(&output, |out| Ok(out.write_all(&encoded)?))?;
                written.push(output);
            }
            if let Some(store) = store {
                let store = swh_bridge::recipes::store::RecipeStore::Directory(store);
                written.extend(store.put(&recipe, &bytes, &BridgeEntry::of(&bytes, &tree, &recipe.tree))?);
            }
            eprintln!(
                "{}: {} bytes of recipe for {} bytes ({:.2} %), tree {}",
                written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                encoded.len(),
                bytes.len(),
                100.0 * encoded.len() as f64 / bytes.len().max(1) as f64,
                recipe.tree
            );
        }
        RecipeCommand::Apply { recipe, tree, output } => {
            let recipe =
                Recipe::decode(&read(&recipe)?).with_context(|| format!("failed to read {}", recipe.display()))?;
            let mut builder = NodeBuilder::new();
            disk::walk(&tree, &disk::WalkOptions::nix(), &mut builder)
                .with_context(|| format!("failed to read {}", tree.display()))?;
            let node = builder.finish().with_context(|| format!("{} is not a tree", tree.display()))?;
            let file = recipe.apply(&node).with_context(|| format!("failed to rebuild from {}", tree.display()))?;
            write_atomically(&output, |out| Ok(out.write_all(&file)?))?;
            eprintln!("rebuilt {} ({} bytes, {})", output.display(), file.len(), recipe.expected_hash()?);
        }
        RecipeCommand::Lookup { key, nar, recipes } => {
            let key = if let Some(hex) = key.strip_prefix("swh:1:dir:") {
                format!("swh-dir/{hex}")
            } else {
                let hash = Hash::parse(&key, None)?;
                match nar {
                    true if hash.algo() != swh_bridge::hashing::HashAlgo::Sha256 => {
                        bail!("the bridge index keeps NAR hashes in sha256 only, not {}", hash.algo().name())
                    }
                    true => format!("nar-sha256/{}", hash.to_hex()),
                    false => format!("{}/{}", hash.algo().name(), hash.to_hex()),
                }
            };
            let store = swh_bridge::recipes::store::RecipeStore::new(&recipes);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match runtime.block_on(store.bridge(&key))? {
                Some(entry) => println!("{}", serde_json::to_string_pretty(&entry)?),
                None => bail!("{recipes} has no bridge index entry {key}"),
            }
        }
        RecipeCommand::Show { recipe: path, json } => {
            let bytes = read(&path)?;
            let recipe = Recipe::decode(&bytes).with_context(|| format!("failed to read {}", path.display()))?;
            let members = match &recipe.compression {
                Compression::Gzip(layer) => layer.members.len(),
                Compression::Xz(_) => 1,
                Compression::Bzip2(layer) => layer.streams.len(),
                Compression::None => 0,
            };
            let summary = json!({
                "sha256": recipe.expected_hash()?.to_sri(),
                "size": recipe.size,
                "tree": recipe.tree,
                "compression": recipe.compression.name(),
                "compressed_members": members,
                "container": recipe.container.name(),
                "container_members": recipe.container.members(),
                "literal_bytes": recipe.container.literal_bytes(),
                "deflate_corrections": recipe.deflate_corrections(),
                "deflate_encoders": recipe.deflate_encoders(),
                "recipe_bytes": bytes.len(),
            });
            if json {
                println!("{summary}");
            } else {
                for (key, value) in summary.as_object().expect("an object") {
                    println!("{key:>20}: {}", value.as_str().map_or_else(|| value.to_string(), str::to_owned));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
