# The helpers `swh-bridge list` loads into its long-lived `nix repl` evaluators, one import of the
# package set per evaluator; each root attribute is then asked for on its own, so that an error
# Nix cannot catch (abort, a missing argument, infinite recursion) costs one attribute, not the
# import.
#
# Written for Nix 2.8 (Debian's nix-bin) as well as current Nix: builtins only, no Nixpkgs lib.
#
#   rootNames       the root attributes: --attr paths, else all-tarballs.nix's jobs, else the
#                   top-level package set
#   eval NAME       { drvs = [ drvPath … ]; failed = [ attribute path … ] } for one root: its
#                   derivations' drvPaths (forcing them writes the .drv files to the store), in
#                   nested sets that ask for it (all of them under all-tarballs.nix); the paths
#                   whose evaluation threw or failed an assertion (tryEval catches only those)
#   probe PATH      forces one attribute path without tryEval, so that Nix says why it fails
#   mirrors         the revision's pkgs/build-support/fetchurl/mirrors.nix (site -> prefixes)
#   usesAllTarballs whether the roots are all-tarballs.nix's
{ nixpkgs              # the checkout's absolute path, as a string
, system ? null        # the system to instantiate for (null: the package set's default)
, attrsJson ? "null"   # JSON list of dotted attribute paths; null for the default roots
, allTarballs ? true   # start from maintainers/scripts/all-tarballs.nix if the revision has it
}:
let
  inherit (builtins) attrNames concatMap filter functionArgs getAttr intersectAttrs isAttrs
    listToAttrs pathExists tryEval typeOf;

  root = /. + nixpkgs;
  attrPaths = builtins.fromJSON attrsJson;
  allTarballsFile = root + "/maintainers/scripts/all-tarballs.nix";
  mirrorsFile = root + "/pkgs/build-support/fetchurl/mirrors.nix";
  usesAllTarballs = allTarballs && attrPaths == null && system == null && pathExists allTarballsFile;

  # Only the arguments the package set's function takes: before 17.03 (and in some forks) it has
  # no `overlays`, and a set without `...` refuses what it does not name.
  packageSet = import root;
  wanted = {
    config = {
      allowBroken = true;
      allowUnfree = true;
      allowUnsupportedSystem = true;
      allowInsecurePredicate = _: true;
    };
    overlays = [ ];
  } // (if system == null then { } else { inherit system; localSystem = { inherit system; }; });
  pkgs = packageSet (intersectAttrs (functionArgs packageSet) wanted);

  splitPath = p: filter (s: typeOf s == "string" && s != "") (builtins.split "\\." p);
  getPath = path: set: builtins.foldl' (v: n: getAttr n v) set path;

  roots =
    if attrPaths != null then listToAttrs (map (p: { name = p; value = getPath (splitPath p) pkgs; }) attrPaths)
    else if usesAllTarballs then import allTarballsFile
    else pkgs;

  force = v: let t = tryEval v; in if t.success then t.value else null;
  isDrv = v: isAttrs v && force (v.type or null) == "derivation";

  collect = recurseAll: path: v:
    let evaluated = tryEval v; value = evaluated.value;
    in
    if !evaluated.success then { drvs = [ ]; failed = [ path ]; }
    else if isDrv value then
      (let drvPath = tryEval value.drvPath;
       in if drvPath.success then { drvs = [ drvPath.value ]; failed = [ ]; } else { drvs = [ ]; failed = [ path ]; })
    else if isAttrs value && (recurseAll || force (value.recurseForDerivations or false) == true) then
      let parts = map (n: collect recurseAll "${path}.${n}" (getAttr n value)) (attrNames value);
      in { drvs = concatMap (p: p.drvs) parts; failed = concatMap (p: p.failed) parts; }
    else { drvs = [ ]; failed = [ ]; };
in
{
  inherit usesAllTarballs;
  rootNames = attrNames roots;
  eval = name: collect usesAllTarballs name (getAttr name roots);
  probe = path:
    let v = getPath (splitPath path) (if attrPaths != null then pkgs else roots);
    in if isAttrs v then (if v ? drvPath then v.drvPath else null) else builtins.deepSeq v null;
  mirrors = if pathExists mirrorsFile then import mirrorsFile else { };
}
