//! Listing the sources a package collection needs: for Nixpkgs, by evaluating a revision with
//! real Nix ([`nixpkgs`]) and normalising what the derivations hold ([`normalise`]) into
//! sources.json entries ([`crate::sources`]).

pub mod nixpkgs;
pub mod normalise;
