//! Listing the sources a package collection needs: for Nixpkgs, by instantiating a revision
//! with real Nix ([`nixpkgs`], through long-lived evaluators: [`repl`]), reading the build
//! closure's fixed-output derivations ([`normalise`]) into sources.json entries
//! ([`crate::sources`]), and adding what binary caches know of them ([`narinfo`]).

pub mod narinfo;
pub mod nixpkgs;
pub mod normalise;
pub mod repl;
