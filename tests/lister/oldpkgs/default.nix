# A package set as Nixpkgs was before 17.03 (and as some forks still are): its function takes
# `config` alone, no `overlays` and no `...`, so calling it with anything else is an error. Its
# maintainers/scripts/all-tarballs.nix does not evaluate.
{ config ? { } }:
let
  mkDerivation = args: derivation ({
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "exit 1" ];
  } // args);
  fetchurl = { url, sha256 }: mkDerivation {
    name = baseNameOf url;
    urls = [ url ];
    outputHashAlgo = "sha256";
    outputHashMode = "flat";
    outputHash = sha256;
  };
in
{
  oldhello = mkDerivation {
    name = "oldhello-2.1";
    src = fetchurl {
      url = "mirror://gnu/hello/hello-2.1.1.tar.gz";
      sha256 = "1md7jsfd8pa45z73bz1kszpp01yw6x5ljkjk2hx7wl800any6465";
    };
  };
}
