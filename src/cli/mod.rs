//! The commands, one module each: its clap arguments, what it asks of the library, and what it
//! prints. Nothing here decides anything the library could: a command parses, calls, prints.

/// `println!` that hands a failed write to the caller (`?`) instead of panicking: a closed
/// stdout (`| head`) must end the program quietly (see [`stdout_closed`]), not with a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub mod audit;
pub mod fetch;
pub mod hash;
pub mod list;
pub mod load;
pub mod nar;
pub mod prefetch;
pub mod publish;
pub mod recipe;
pub mod serve;
pub mod sources;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use swh_bridge::atomic::{self, Existing};
use swh_bridge::workspace::{Settings, Workspace};

/// Whether `err` comes from writing to a stdout whose reader went away (`| head`): not a
/// failure but a reason to stop, quietly, as `cat` and `rg` do. Both must hold: a broken pipe
/// in the error (another pipe, to a child process, may break too) and stdout's own pipe
/// reporting an error.
pub fn stdout_closed(err: &anyhow::Error) -> bool {
    let broken_pipe = err.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    let mut stdout = libc::pollfd { fd: libc::STDOUT_FILENO, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one pollfd, not kept past the call; a timeout of 0 does not block.
    let polled = unsafe { libc::poll(&mut stdout, 1, 0) };
    broken_pipe && polled == 1 && stdout.revents & libc::POLLERR != 0
}

/// Where sources come from and where their copies are kept: the settings every command that
/// reaches the archive shares.
#[derive(Clone, clap::Args)]
pub struct ArchiveArgs {
    /// The archive's API root [default: the configuration file's, else the public archive].
    #[arg(long, env = "SWH_BRIDGE_ARCHIVE")]
    archive: Option<url::Url>,
    /// Hashed mirrors to try after a source's own URLs, as Nix's `hashed-mirrors` (repeatable;
    /// adds to the configuration file's).
    #[arg(long = "hashed-mirror")]
    hashed_mirrors: Vec<String>,
    /// Nix binary caches to try after the archive, for sources whose store path is known
    /// (repeatable; adds to the configuration file's).
    #[arg(long = "binary-cache")]
    binary_caches: Vec<url::Url>,
    /// Where the cache, the recipe store and the state live [default: $XDG_DATA_HOME/swh-bridge].
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
    /// Give up a download from upstream, a mirror or a binary cache after this many seconds
    /// without a byte, or once it has run this long averaging under 1 KiB/s.
    #[arg(long, default_value_t = swh_bridge::fallback::DEFAULT_UPSTREAM_TIMEOUT.as_secs())]
    upstream_timeout: u64,
    /// Give up one call to the archive, its retries included, after this many seconds (a
    /// rate-limit wait, bounded by --max-wait, does not count).
    #[arg(long, default_value_t = swh_bridge::archive::DEFAULT_CALL_DEADLINE.as_secs())]
    archive_timeout: u64,
    /// Give up waiting for the vault to cook a bundle after this many seconds.
    #[arg(long, default_value_t = swh_bridge::archive::DEFAULT_VAULT_DEADLINE.as_secs())]
    vault_timeout: u64,
    /// Refuse a file download (upstream, mirror, archive) past this many bytes.
    #[arg(long, default_value_t = swh_bridge::fallback::DEFAULT_MAX_DOWNLOAD)]
    max_download: u64,
    /// A recipe store (a directory or an HTTP base URL) for rebuilding tarballs that the archive
    /// keeps unpacked [default: the configuration file's, else `recipes` in the data directory
    /// if it exists].
    #[arg(long)]
    recipes: Option<String>,
    /// The configuration file [default: $XDG_CONFIG_HOME/swh-bridge/config.json, if present].
    #[arg(long)]
    config: Option<PathBuf>,
}

impl ArchiveArgs {
    pub fn settings(self) -> Settings {
        Settings {
            archive: self.archive,
            config: self.config,
            data_dir: self.data_dir,
            hashed_mirrors: self.hashed_mirrors,
            binary_caches: self.binary_caches,
            recipes: self.recipes,
            no_cache: self.no_cache,
            walk_limit: self.walk_limit,
            max_wait: Duration::from_secs(self.max_wait),
            upstream_timeout: Duration::from_secs(self.upstream_timeout),
            archive_timeout: Duration::from_secs(self.archive_timeout),
            vault_timeout: Duration::from_secs(self.vault_timeout),
            max_download: self.max_download,
            nixos_copies: false,
        }
    }

    pub fn workspace(self) -> Result<Workspace> {
        Ok(Workspace::open(self.settings())?)
    }
}

pub fn show_counts<K: std::fmt::Display, N: std::fmt::Display>(counts: impl IntoIterator<Item = (K, N)>) -> String {
    counts.into_iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

/// Counts by name, for JSON.
pub fn counts_by_name<K, N>(
    counts: impl IntoIterator<Item = (K, N)>,
    name: impl Fn(&K) -> &str,
) -> BTreeMap<String, N> {
    counts.into_iter().map(|(k, n)| (name(&k).to_owned(), n)).collect()
}

/// Reads a sources.json, reporting the entries it had to skip.
pub fn read_sources(path: &Path) -> Result<swh_bridge::sources::ReadSources> {
    let read = swh_bridge::sources::read_file(path)?;
    for problem in &read.problems {
        eprintln!("warning: {}: skipping {problem}", path.display());
    }
    Ok(read)
}

/// Writes a report or an output file whole, replacing what was there.
/// Writes a file the user names as a command's result (a fetched or rebuilt file, a recipe),
/// atomically, refusing to replace one that exists, as `fetch` and `nar restore` do.
pub fn write_new_output(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    match atomic::write_with(path, Existing::Refuse, write) {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("refusing to replace {}, which exists", path.display())
        }
        written => written.with_context(|| format!("failed to write {}", path.display())),
    }
}

/// Fails early, before the work, if `path` exists: [`write_new_output`] would refuse it.
pub fn refuse_existing(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        anyhow::bail!("refusing to replace {}, which exists", path.display());
    }
    Ok(())
}

/// Writes a report or listing (`list -o`, `audit -o`), atomically, replacing the previous one.
pub fn write_output(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    atomic::write_with(path, Existing::Replace, write).with_context(|| format!("failed to write {}", path.display()))
}

/// The seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// A spinner with a message template, ticking while long work runs.
pub fn progress(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0)
        .with_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs what talks to servers on an async runtime; the rest runs without one: idle runtime
/// threads cost the hashing commands measurable time, and once a process has a second thread
/// glibc's malloc takes a lock on every call (a quarter of `list --from-raw`'s time).
pub fn asynchronously<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("failed to start the async runtime: {err}"))?;
    runtime.block_on(work)
}
