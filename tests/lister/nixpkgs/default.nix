# A miniature package set for testing `swh-bridge list`: laid out like a Nixpkgs checkout, with
# fetchers that build derivations the way Nixpkgs' fetchers do (same attribute names and hash
# conventions), so that the lister cannot tell the difference. Nothing here is ever built.
{ config ? { }, overlays ? [ ], system ? builtins.currentSystem, ... }:
import ./pkgs/top-level/default.nix { inherit config system; }
