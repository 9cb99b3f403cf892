# Fetchers with Nixpkgs' conventions: the attribute names, hash arguments and output modes of
# pkgs/build-support/{fetchurl,fetchzip,fetchpatch,fetchgit,fetchgithub,fetchsvn,fetchhg}.
{ mkDerivation }:
rec {
  fetchurl =
    { url ? "", urls ? [ ], name ? null, hash ? "", sha256 ? "", sha512 ? "", sha1 ? "", md5 ? ""
    , recursiveHash ? false, executable ? false, postFetch ? "", passthru ? { }, meta ? { } }:
    let
      urls_ = if urls != [ ] then urls else [ url ];
      hash_ =
        if hash != "" then { outputHashAlgo = null; outputHash = hash; }
        else if sha512 != "" then { outputHashAlgo = "sha512"; outputHash = sha512; }
        else if sha256 != "" then { outputHashAlgo = "sha256"; outputHash = sha256; }
        else if sha1 != "" then { outputHashAlgo = "sha1"; outputHash = sha1; }
        else if md5 != "" then { outputHashAlgo = "md5"; outputHash = md5; }
        else throw "fetchurl requires a hash for fixed-output derivation: ${toString urls_}";
    in
    mkDerivation ({
      name = if name != null then name else baseNameOf (toString (builtins.head urls_));
      urls = urls_;
      inherit postFetch executable passthru meta;
      outputHashMode = if recursiveHash || executable then "recursive" else "flat";
    } // hash_);

  fetchzip = { name ? "source", url ? "", urls ? [ ], postFetch ? "", ... }@args:
    fetchurl ((removeAttrs args [ "stripRoot" ]) // {
      inherit name;
      recursiveHash = true;
      postFetch = "unpackFile \"$downloadedFile\"\nmv \"$unpackDir\" \"$out\"\n" + postFetch;
    });

  fetchpatch = { url, hash ? "", sha256 ? "", name ? null, ... }@args:
    fetchurl (args // {
      postFetch = "tmpfile=\"$TMPDIR/patch\"\nfilterdiff --clean \"$out\" > \"$tmpfile\"\nmv \"$tmpfile\" \"$out\"\n";
    });

  fetchgit =
    { url, rev ? "HEAD", tag ? null, hash ? "", sha256 ? "", fetchSubmodules ? true
    , sparseCheckout ? [ ], leaveDotGit ? false, deepClone ? false, postFetch ? "", name ? "source" }:
    mkDerivation {
      inherit name url leaveDotGit deepClone fetchSubmodules postFetch;
      rev = if tag != null then "refs/tags/${tag}" else rev;
      sparseCheckout = builtins.concatStringsSep "\n" sparseCheckout;
      outputHashAlgo = if hash != "" then null else "sha256";
      outputHashMode = "recursive";
      outputHash = if hash != "" then hash else sha256;
      passthru = { gitRepoUrl = url; };
    };

  fetchFromGitHub =
    { owner, repo, rev ? null, tag ? null, hash ? "", sha256 ? "", fetchSubmodules ? false
    , sparseCheckout ? [ ], name ? "source" }:
    let
      revWithTag = if tag != null then "refs/tags/${tag}" else rev;
      gitRepoUrl = "https://github.com/${owner}/${repo}.git";
    in
    if fetchSubmodules || sparseCheckout != [ ] then
      fetchgit { inherit name tag hash sha256 fetchSubmodules sparseCheckout; url = gitRepoUrl; rev = if rev != null then rev else "HEAD"; }
    else
      fetchzip {
        inherit name hash sha256;
        url = "https://github.com/${owner}/${repo}/archive/${revWithTag}.tar.gz";
        passthru = { inherit gitRepoUrl; };
      };

  fetchsvn = { url, rev ? "HEAD", hash ? "", sha256 ? "", ignoreExternals ? false, name ? null }:
    let repoName = baseNameOf url;
    in mkDerivation {
      name = if name != null then name else "${repoName}-r${toString rev}";
      inherit url rev ignoreExternals;
      ignoreKeywords = false;
      outputHashAlgo = if hash != "" then null else "sha256";
      outputHashMode = "recursive";
      outputHash = if hash != "" then hash else sha256;
    };

  fetchhg = { url, rev ? null, hash ? "", sha256 ? "", fetchSubrepos ? false, name ? null }:
    mkDerivation {
      name = "hg-archive" + (if name != null then "-${name}" else "");
      inherit url rev;
      subrepoClause = if fetchSubrepos then "S" else "";
      outputHashAlgo = if hash != "" then null else "sha256";
      outputHashMode = "recursive";
      outputHash = if hash != "" then hash else sha256;
    };
}
