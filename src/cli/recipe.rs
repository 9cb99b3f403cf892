//! `swh-bridge recipe create|apply|show|lookup`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use swh_bridge::hashing::tree::disk;
use swh_bridge::hashing::tree::memory::NodeBuilder;
use swh_bridge::hashing::{Hash, HashAlgo, ObjectType, Swhid};
use swh_bridge::recipes::bridge::{BridgeEntry, BridgeKey};
use swh_bridge::recipes::store::RecipeStore;
use swh_bridge::recipes::{Footprint, MAX_PLAIN, MAX_RECIPE_FILE, Recipe};

use super::{refuse_existing, write_new_output};

#[derive(Subcommand)]
pub enum RecipeCommand {
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

/// Reads `path` whole, refusing it past `limit` bytes (so that `/dev/zero` or a huge file fails
/// at once rather than when memory runs out).
fn read(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .with_context(|| format!("failed to read {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(bytes)
}

pub async fn run(command: RecipeCommand) -> Result<ExitCode> {
    match command {
        RecipeCommand::Create { file, expect, output, store } => {
            if let Some(output) = &output {
                refuse_existing(output)?;
            }
            let bytes = read(&file, MAX_PLAIN as u64)?;
            if let Some(expect) = expect {
                let expected = Hash::parse(&expect, None)?;
                let mut hasher = expected.algo().hasher();
                hasher.update(&bytes);
                let actual = hasher.finish();
                if actual != expected {
                    bail!("{} hashes to {actual}, not {expected}", file.display());
                }
            }
            let made = Footprint::of(&bytes).and_then(|footprint| {
                Recipe::create_measured(&bytes, &footprint).map(|(recipe, tree)| (recipe, tree, footprint))
            });
            let (recipe, tree, footprint) =
                made.with_context(|| format!("failed to make a recipe for {}", file.display()))?;
            let encoded = recipe.encode();
            let mut written = Vec::new();
            if let Some(output) = output {
                write_new_output(&output, |out| out.write_all(&encoded))?;
                written.push(output);
            }
            if let Some(store) = store {
                let store = RecipeStore::Directory(store);
                written.extend(store.put(&recipe, &bytes, &BridgeEntry::of(&bytes, &tree, recipe.tree))?);
            }
            eprintln!(
                "{}: {} bytes of recipe for {} bytes ({:.2} %), tree {}; it unpacks to {} bytes, reckoned to take {} MiB",
                written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                encoded.len(),
                bytes.len(),
                100.0 * encoded.len() as f64 / bytes.len().max(1) as f64,
                recipe.tree,
                footprint.unpacked(),
                footprint.peak().div_ceil(1 << 20),
            );
        }
        RecipeCommand::Apply { recipe, tree, output } => {
            refuse_existing(&output)?;
            let recipe = Recipe::decode(&read(&recipe, MAX_RECIPE_FILE)?)
                .with_context(|| format!("failed to read {}", recipe.display()))?;
            let mut builder = NodeBuilder::new();
            disk::walk(&tree, &disk::WalkOptions::nix(), &mut builder)
                .with_context(|| format!("failed to read {}", tree.display()))?;
            let node = builder.finish().with_context(|| format!("{} is not a tree", tree.display()))?;
            let file = recipe.apply(&node).with_context(|| format!("failed to rebuild from {}", tree.display()))?;
            write_new_output(&output, |out| out.write_all(&file))?;
            eprintln!("rebuilt {} ({} bytes, {})", output.display(), file.len(), recipe.expected_hash()?);
        }
        RecipeCommand::Lookup { key, nar, recipes } => {
            let key = match key.parse::<Swhid>() {
                Ok(swhid) if swhid.object_type == ObjectType::Directory => BridgeKey::Directory(swhid),
                Ok(swhid) => bail!("the bridge index keeps directories by SWHID, not {swhid}"),
                Err(_) => {
                    let hash = Hash::parse(&key, None)?;
                    match nar {
                        true if hash.algo() != HashAlgo::Sha256 => {
                            bail!("the bridge index keeps NAR hashes in sha256 only, not {}", hash.algo())
                        }
                        true => BridgeKey::NarSha256(hash),
                        false => BridgeKey::Flat(hash),
                    }
                }
            };
            match RecipeStore::new(&recipes).bridge(&key).await? {
                Some(entry) => outln!("{}", serde_json::to_string_pretty(&entry)?),
                None => bail!("{recipes} has no bridge index entry {key}"),
            }
        }
        RecipeCommand::Show { recipe: path, json } => {
            let bytes = read(&path, MAX_RECIPE_FILE)?;
            let recipe = Recipe::decode(&bytes).with_context(|| format!("failed to read {}", path.display()))?;
            let summary = serde_json::to_value(recipe.summary(bytes.len())?)?;
            if json {
                outln!("{summary}");
            } else {
                for (key, value) in summary.as_object().expect("a summary is an object") {
                    outln!("{key:>20}: {}", value.as_str().map_or_else(|| value.to_string(), str::to_owned));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
