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
{ nixpkgs
, attrsJson ? "null"   # JSON list of dotted attribute paths; null for the default roots
, onlyJson ? "null"    # JSON list of root names to evaluate; null for all of them
, listRoots ? false    # return only the root names
, probe ? null         # a dotted attribute path to force without tryEval, to see its error
}:
let
  inherit (builtins) attrNames concatMap filter getAttr hasAttr isAttrs isList length
    listToAttrs pathExists tryEval typeOf;

  attrPaths = builtins.fromJSON attrsJson;
  allTarballs = nixpkgs + "/maintainers/scripts/all-tarballs.nix";
  mirrorsFile = nixpkgs + "/pkgs/build-support/fetchurl/mirrors.nix";
  useAllTarballs = attrPaths == null && pathExists allTarballs;

  pkgs = import nixpkgs {
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
    let value = force v;
    in
    if value == null then { drvs = [ ]; failed = [ path ]; }
    else if isDrv value then
      (if drvPathOf value != null then { drvs = [ value ]; failed = [ ]; } else { drvs = [ ]; failed = [ path ]; })
    else if isAttrs value && (recurseAll || force (value.recurseForDerivations or false) == true) then
      let parts = map (n: collect recurseAll "${path}.${n}" (getAttr n value)) (attrNames value);
      in { drvs = concatMap (p: p.drvs) parts; failed = concatMap (p: p.failed) parts; }
    else { drvs = [ ]; failed = [ ]; };

  collected = map (n: collect useAllTarballs n (getAttr n roots)) rootNames;
  rootDrvs = concatMap (c: c.drvs) collected;

  # Inputs are derivations, or lists of them, in any attribute but meta, passthru and what
  # passthru added.
  skipped = d:
    let passthru = force (d.passthru or { });
    in [ "meta" "passthru" "all" "out" "outputs" "drvAttrs" ] ++ (if isAttrs passthru then attrNames passthru else [ ]);
  inputsOf = d:
    let
      names = filter (n: !(builtins.elem n (skipped d))) (attrNames d);
      drvsIn = v: let x = force v; in
        if isDrv x then [ x ]
        else if isList x then filter isDrv (map force x)
        else [ ];
    in
    filter (x: drvPathOf x != null) (concatMap (n: drvsIn (getAttr n d)) names);

  closure = builtins.genericClosure {
    startSet = map (d: { key = drvPathOf d; drv = d; }) rootDrvs;
    operator = item: map (d: { key = drvPathOf d; drv = d; }) (inputsOf item.drv);
  };

  # Attribute values as JSON-safe scalars (strings, booleans, ints) or null.
  str = v: let x = force v; in
    if x == null then null
    else if builtins.isString x then (let s = tryEval (builtins.seq (builtins.stringLength x) x); in if s.success then s.value else null)
    else if builtins.isInt x || builtins.isBool x then x
    else if builtins.isPath x then toString x
    else null;
  strList = v: let x = force v; in if isList x then filter (s: s != null) (map str x) else null;

  isSource = d:
    let hash = str (d.outputHash or null);
    in hash != null && hash != "" && (hasAttr "url" d || hasAttr "urls" d);

  record = d: {
    storePath = str (d.outPath or null);
    name = str (d.name or null);
    urls = strList (d.urls or null);
    url = str (d.url or null);
    outputHash = str (d.outputHash or null);
    outputHashAlgo = str (d.outputHashAlgo or null);
    outputHashMode = str (d.outputHashMode or null);
    postFetch = str (d.postFetch or null);
    rev = str (d.rev or null);
    fetchSubmodules = str (d.fetchSubmodules or null);
    sparseCheckout = str (d.sparseCheckout or null);
    leaveDotGit = str (d.leaveDotGit or null);
    ignoreExternals = str (d.ignoreExternals or null);
    subrepoClause = str (d.subrepoClause or null);
  };
  probed = getPath (splitPath probe) roots;
in
if listRoots then attrNames roots
else if probe != null then (if isAttrs probed && probed ? drvPath then probed.drvPath else builtins.deepSeq probed null)
else {
  mirrors = if pathExists mirrorsFile then import mirrorsFile else { };
  sources = map (item: record item.drv) (filter (item: isSource item.drv) closure);
  failed = concatMap (c: c.failed) collected;
  roots = length rootNames;
}
