# Lists the fixed-output sources that a Nixpkgs checkout needs, for `swh-bridge list`.
#
# Evaluated with `nix-instantiate --eval --strict --json --readonly-mode`. Written for Nix 2.8
# (Debian's nix-bin) as well as current Nix: builtins only, no Nixpkgs lib (the revision's own
# lib may be anything), no builtins.convertHash (hashes are normalised in Rust).
#
# Returns { mirrors, sources, failed, roots }:
# - mirrors: the revision's pkgs/build-support/fetchurl/mirrors.nix (site -> URL prefixes);
# - sources: one raw record per fixed-output derivation with `url` or `urls` found by following
#   the inputs of every root derivation (every attribute but meta and passthru);
# - failed: attribute paths whose evaluation threw or failed an assertion (tryEval catches only
#   those; other evaluation errors abort the run, and swh-bridge then bisects the roots);
# - roots: how many root attributes were evaluated.
# With listRoots, it returns the root names instead (swh-bridge shards them over processes); with
# probe, it forces one attribute without tryEval, so that Nix prints why it fails.
{ nixpkgs              # the checkout's absolute path, as a string
, attrsJson ? "null"   # JSON list of dotted attribute paths; null for the default roots
, onlyJson ? "null"    # JSON list of root names to evaluate; null for all of them
, listRoots ? false    # return only the root names
, probe ? null         # a dotted attribute path to force without tryEval, to see its error
}:
let
  inherit (builtins) attrNames concatMap filter getAttr hasAttr isAttrs isList length
    listToAttrs pathExists removeAttrs tryEval typeOf;

  root = /. + nixpkgs;
  attrPaths = builtins.fromJSON attrsJson;
  allTarballs = root + "/maintainers/scripts/all-tarballs.nix";
  mirrorsFile = root + "/pkgs/build-support/fetchurl/mirrors.nix";
  useAllTarballs = attrPaths == null && pathExists allTarballs;

  pkgs = import root {
    config = {
      allowBroken = true;
      allowUnfree = true;
      allowUnsupportedSystem = true;
      allowInsecurePredicate = _: true;
    };
    overlays = [ ];
  };

  splitPath = p: filter (s: typeOf s == "string" && s != "") (builtins.split "\\." p);
  getPath = path: set: builtins.foldl' (v: n: getAttr n v) set path;

  roots =
    if attrPaths != null then listToAttrs (map (p: { name = p; value = getPath (splitPath p) pkgs; }) attrPaths)
    else if useAllTarballs then import allTarballs
    else pkgs;

  only = builtins.fromJSON onlyJson;
  rootNames = if only == null then attrNames roots else filter (n: hasAttr n roots) only;

  # A value forced to weak head normal form, or null if that throws.
  force = v: let t = tryEval v; in if t.success then t.value else null;
  isDrv = v: isAttrs v && force (v.type or null) == "derivation";
  drvPathOf = d: force (d.drvPath or null);

  # The derivations in a root attribute, descending into package sets that ask for it (and into
  # every set of all-tarballs.nix's release jobs). Failures are recorded by attribute path.
  collect = recurseAll: path: v:
    let evaluated = tryEval v; value = evaluated.value;
    in
    if !evaluated.success then { drvs = [ ]; failed = [ path ]; }
    else if isDrv value then
      (if drvPathOf value != null then { drvs = [ value ]; failed = [ ]; } else { drvs = [ ]; failed = [ path ]; })
    else if isAttrs value && (recurseAll || force (value.recurseForDerivations or false) == true) then
      let parts = map (n: collect recurseAll "${path}.${n}" (getAttr n value)) (attrNames value);
      in { drvs = concatMap (p: p.drvs) parts; failed = concatMap (p: p.failed) parts; }
    else { drvs = [ ]; failed = [ ]; };

  collected = map (n: collect useAllTarballs n (getAttr n roots)) rootNames;
  rootDrvs = concatMap (c: c.drvs) collected;

  # Inputs are derivations, or lists of them, among the attributes the derivation was built from
  # (drvAttrs: exactly the inputs, without meta, passthru or inputDerivation). A derivation-like
  # set without drvAttrs is searched whole, but for meta and passthru.
  inputsOf = d:
    let
      drvAttrs = force (d.drvAttrs or null);
      attrs = if isAttrs drvAttrs then drvAttrs else removeAttrs d [ "meta" "passthru" "drvAttrs" "all" "out" ];
      drvsIn = v: let x = force v; in
        if isDrv x then [ x ]
        else if isList x then filter isDrv (map force x)
        else [ ];
    in
    filter (x: drvPathOf x != null) (concatMap (n: drvsIn (getAttr n attrs)) (attrNames attrs));

  closure = builtins.genericClosure {
    startSet = map (d: { key = drvPathOf d; drv = d; }) rootDrvs;
    operator = item: map (d: { key = drvPathOf d; drv = d; }) (inputsOf item.drv);
  };

  # Attribute values as strings (numbers and paths written out), or null for anything else, so
  # that one odd attribute cannot break the JSON the Rust side reads.
  text = v: let x = force v; in
    if builtins.isString x then x
    else if builtins.isInt x || builtins.isPath x then toString x
    else null;
  # Strings, numbers and booleans as they are (for rev and fetcher flags), else null.
  scalar = v: let x = force v; in
    if builtins.isString x || builtins.isInt x || builtins.isBool x then x else null;
  textList = v: let x = force v; in if isList x then filter (s: s != null) (map text x) else null;

  isSource = d:
    let hash = text (d.outputHash or null);
    in hash != null && hash != "" && (hasAttr "url" d || hasAttr "urls" d);

  record = d: {
    storePath = text (d.outPath or null);
    urls = textList (d.urls or null);
    url = text (d.url or null);
    outputHash = text (d.outputHash or null);
    outputHashAlgo = text (d.outputHashAlgo or null);
    outputHashMode = text (d.outputHashMode or null);
    postFetch = text (d.postFetch or null);
    rev = scalar (d.rev or null);
    fetchSubmodules = scalar (d.fetchSubmodules or null);
    # A newline-joined string in current Nixpkgs, a list in older ones.
    sparseCheckout =
      let x = force (d.sparseCheckout or null);
      in if isList x then builtins.concatStringsSep "\n" (textList x) else text x;
    leaveDotGit = scalar (d.leaveDotGit or null);
    ignoreExternals = scalar (d.ignoreExternals or null);
    subrepoClause = text (d.subrepoClause or null);
  };
  # Failures are named by paths into pkgs under --attr, into the roots otherwise.
  probed = getPath (splitPath probe) (if attrPaths != null then pkgs else roots);
in
if listRoots then attrNames roots
else if probe != null then (if isAttrs probed then (if probed ? drvPath then probed.drvPath else null) else builtins.deepSeq probed null)
else {
  mirrors = if pathExists mirrorsFile then import mirrorsFile else { };
  sources = map (item: record item.drv) (filter (item: isSource item.drv) closure);
  failed = concatMap (c: c.failed) collected;
  roots = length rootNames;
}
