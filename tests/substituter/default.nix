# Fixed outputs whose only URL is dead, as nixpkgs' fetchers name them: a flat file after its
# URL's base name, an unpacked tree (fetchzip, fetchgit, fetchFromGitHub) `source`. Nix's
# builtin fetcher, which needs no sandbox paths, stands in for each; only the output path
# (name, hash, mode) matters to a substituter.
{ dead ? "http://127.0.0.1:1", treeSha256, gitSha256, tarballSha256, patchSha256, lostSha256 }:
let
  flat = name: sha256: import <nix/fetchurl.nix> { url = "${dead}/${name}"; inherit sha256; };
  tree = name: sha256: import <nix/fetchurl.nix> {
    url = "${dead}/${name}";
    name = "source";
    unpack = true;
    inherit sha256;
  };
in
{
  tree = tree "sub-tree-1.0.tar.gz" treeSha256;
  git = tree "sub-repo.tar.gz" gitSha256;
  tarball = flat "sub-tarball-1.0.tar.gz" tarballSha256;
  patch = flat "fix-build.patch" patchSha256;
  lost = flat "sub-lost.tar.gz" lostSha256;
}
