//! The integration tests: one binary, so that the crate is linked once. Golden values come from
//! the reference tools (`nix-store`, `nix-hash`, `nix`, `git`, `swh identify`), run here on trees
//! the tests generate; `scripts/test.sh` installs those tools.

mod adversarial;
mod agreement;
mod archive_client;
mod archive_end_to_end;
mod audit;
mod binary_cache;
mod cli;
mod daily;
mod golden_hashing;
mod hostile;
mod lister;
mod loader;
mod local_archive;
mod prefetch;
mod recipes;
mod reference_tools;
mod roundtrip;
mod saves;
mod serve;
mod substituter;
mod trees;
mod vault;
