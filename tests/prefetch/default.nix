# Sources whose upstream URLs are dead, and a package that needs them: what `swh-bridge
# prefetch` must rescue. Built with real Nix in a chroot store (`--store DIR`), whose sandbox
# needs `extra-sandbox-paths` for /bin/sh, tar and python3 from the host.
{ flatSha256, treeSha256, lostSha256, dead ? "http://127.0.0.1:1" }:
rec {
  # fetchurl: a flat file, by Nix's built-in fetcher.
  flat = import <nix/fetchurl.nix> {
    url = "${dead}/greeting.txt";
    sha256 = flatSha256;
  };

  # fetchzip style: a tarball unpacked with its top folder stripped, NAR-hashed.
  tree = builtins.derivation {
    name = "tree-source";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" ''
      set -e
      /usr/bin/python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], "src.tar.gz")' ${dead}/tree.tar.gz
      /bin/mkdir $out
      /bin/tar -xzf src.tar.gz -C $out --strip-components=1
    '' ];
    urls = [ "${dead}/tree.tar.gz" ];
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = treeSha256;
  };

  package = builtins.derivation {
    name = "package";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "/bin/cat ${flat} ${tree}/hello.txt > $out" ];
  };

  # A source nobody archived.
  lost = import <nix/fetchurl.nix> {
    url = "${dead}/lost.txt";
    sha256 = lostSha256;
  };
}
