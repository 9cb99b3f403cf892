# The packages: each exercises one case the lister must handle.
{ config ? { }, system ? builtins.currentSystem }:
let
  # Like stdenv.mkDerivation: meta and passthru stay out of the derivation, passthru's attributes
  # are added to the result.
  mkDerivation = args:
    let
      drv = derivation ({
        inherit system;
        builder = "/bin/sh";
        args = [ "-c" "exit 1" ];
      } // removeAttrs args [ "meta" "passthru" ]);
    in
    drv // { meta = args.meta or { }; passthru = args.passthru or { }; } // (args.passthru or { });

  fetchers = import ../build-support/fetchers.nix { inherit mkDerivation; };
  inherit (fetchers) fetchurl fetchzip fetchpatch fetchgit fetchFromGitHub fetchsvn fetchhg;

  package = name: args: mkDerivation ({ inherit name; } // args);

  sharedSource = fetchurl {
    url = "https://example.org/shared/shared-1.0.tar.gz";
    sha256 = "a4d26868017c0ccffe2efe50944ef4211834660cca834c6e9f86dec6a88246fa";
  };

  # What reaches a build only through a string with context, never through an attribute that
  # holds a derivation: Nixpkgs' buildEnv (its `pkgs` is JSON), linkFarm (its entries are
  # JSON), and any flag naming a path.
  perlModule = name: hash: package "perl-${name}-1.0" {
    src = fetchurl { url = "https://cpan.example.org/${name}-1.0.tar.gz"; inherit hash; };
  };
  buildEnv = name: paths: mkDerivation { inherit name; pkgs = builtins.toJSON [ { inherit paths; } ]; };
  linkFarm = name: entries: mkDerivation { inherit name; entries = builtins.toJSON entries; };
  crate = name: sha256: fetchurl {
    name = "${name}-1.0.crate";
    url = "https://static.crates.example.org/crates/${name}/${name}-1.0.crate";
    inherit sha256;
  };
in
{
  # fetchurl through a mirror, sha256 in Nix base32.
  hello = package "hello-2.12.1" {
    src = fetchurl {
      url = "mirror://gnu/hello/hello-2.12.1.tar.gz";
      sha256 = "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic";
    };
  };

  # sha256 in hex, and a patch fetched with postFetch.
  hexpkg = package "hexpkg-1.0" {
    src = fetchurl {
      url = "https://example.org/hexpkg/hexpkg-1.0.tar.xz";
      sha256 = "128df13c1e54ffaaafcc9d07ec7427d61f764214e6ae0321de23c94d261d0860";
    };
    patches = [
      (fetchpatch {
        url = "https://example.org/hexpkg/fix-build.patch";
        hash = "sha256-pIletEr8M2/su6blIM1n4XjazgJ2ZV0QL87/qOX3BXA=";
      })
    ];
  };

  # hash = SRI, no outputHashAlgo.
  sripkg = package "sripkg-2.0" {
    src = fetchurl {
      url = "https://example.org/sripkg-2.0.tar.bz2";
      hash = "sha256-1elmVsb0VdKw2NpJMKTHRAzYa05tKRXeF50fkvSTFqk=";
    };
  };

  # sha512 in hex, and sha1 in hex.
  sha512pkg = package "sha512pkg-3.1" {
    src = fetchurl {
      url = "mirror://sourceforge/sha512pkg/sha512pkg-3.1.zip";
      sha512 = "1f9720f871674c18e5fecff61d92c1355cd4bfac25699fb7ddfe7717c9669b4d085193982402156122dfaa706885fd64741704649795c65b2a5bdec40347e28a";
    };
  };
  sha1pkg = package "sha1pkg-0.9" {
    src = fetchurl {
      url = "https://example.org/sha1pkg-0.9.tgz";
      sha1 = "415ab40ae9b7cc4e66d6769cb2c08106e8293b48";
    };
  };

  # A list of urls.
  urlspkg = package "urlspkg-1.2" {
    src = fetchurl {
      urls = [
        "https://primary.example.org/urlspkg-1.2.tar.gz"
        "https://backup.example.net/urlspkg-1.2.tar.gz"
      ];
      sha256 = "2c195230dee8616d30968370c69853d55d0103faf8550c399c15a9eee4f4fd9c";
    };
  };

  # fetchzip: recursive, with a postFetch of its own.
  zippkg = package "zippkg-4.0" {
    src = fetchzip {
      url = "https://example.org/zippkg-4.0.zip";
      hash = "sha256-SnD+mqZDbgLC3qNA+9HjUuTvLYzmylKtJdS5VHH8i/I=";
      postFetch = "rm -r $out/tests\n";
    };
  };

  # fetchFromGitHub without submodules: a GitHub archive through fetchzip.
  ghpkg = package "ghpkg-5.2" {
    src = fetchFromGitHub {
      owner = "example";
      repo = "ghpkg";
      rev = "v5.2";
      hash = "sha256-+yt/zglAFhQGpqo+TYtKphBAFHdP+mZXQ/jZcE8OsOw=";
    };
  };

  # fetchFromGitHub with submodules: a git checkout.
  gitsubpkg = package "gitsubpkg-1.0" {
    src = fetchFromGitHub {
      owner = "example";
      repo = "gitsubpkg";
      rev = "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";
      fetchSubmodules = true;
      hash = "sha256-H3GyvI5VguVLU2jFFvBEKIklTIxtKJP6b0DG/AI7MWM=";
    };
  };

  # fetchgit with a sparse checkout and a tag, sha256 in base32.
  gitsparsepkg = package "gitsparsepkg-2.3" {
    src = fetchgit {
      url = "https://git.example.org/gitsparsepkg.git";
      tag = "v2.3";
      fetchSubmodules = false;
      sparseCheckout = [ "src" "include" ];
      sha256 = "0sd1md3j6dv4bwkbl3wlk667lzwr8cx1838qwxhln6x9m765cnfl";
    };
  };

  # fetchsvn, revision as a number.
  svnpkg = package "svnpkg-r1234" {
    src = fetchsvn {
      url = "svn://svn.example.org/svnpkg/trunk";
      rev = 1234;
      sha256 = "34f24a58ec1f0be7b2916ca9b6ebd9f8b8c98df89134d7649d7127dc10b62af9";
    };
  };

  # fetchhg.
  hgpkg = package "hgpkg-0.5" {
    src = fetchhg {
      url = "https://hg.example.org/hgpkg";
      rev = "a1b2c3d4e5f6";
      hash = "sha256-cBdhJKvZjZKrqu64jFH/DXgimC9T01/SMRmDkQeKyrs=";
    };
  };

  # Two packages with one source: listed once.
  shared-a = package "shared-a-1.0" { src = sharedSource; };
  shared-b = package "shared-b-1.0" { src = sharedSource; };

  # A source reached only through another package's inputs; and a source only in passthru and
  # meta, which are not inputs.
  withdep = package "withdep-1.0" {
    buildInputs = [
      (package "libdep-0.1" {
        src = fetchurl {
          url = "https://example.org/libdep-0.1.tar.gz";
          sha256 = "13ns0xymhkhgng27kis2x8w05bc8gw6nifqkg7r2npb3z0gfgqwc";
        };
      })
    ];
    passthru.updateSource = fetchurl {
      url = "https://example.org/not-an-input.tar.gz";
      sha256 = "0adz9m8flklgza3m65ii4pbpygnj4ya08j0w4nvi6wkg6yy5vxx3";
    };
  };

  # Two derivations with one store path (same name and hash) but other URLs: listed once, with
  # both URL lists.
  dup-a = package "dup-a-1.0" {
    src = fetchurl {
      url = "mirror://gnu/dup/dup-1.0.tar.gz";
      sha256 = "9eb6203435cb3e0033f544e3bf6f1b74b138c765fc489a38a092e8f7adbd9638";
    };
  };
  dup-b = package "dup-b-1.0" {
    src = fetchurl {
      url = "https://example.org/dup-1.0.tar.gz";
      sha256 = "9eb6203435cb3e0033f544e3bf6f1b74b138c765fc489a38a092e8f7adbd9638";
    };
  };

  # A mirror site mirrors.nix does not have: that URL is dropped, the other kept.
  unknownmirror = package "unknownmirror-1.0" {
    src = fetchurl {
      urls = [ "mirror://nowhere/um-1.0.tar.gz" "https://example.org/um-1.0.tar.gz" ];
      sha256 = "289c90decf40c8ec15f72f6080f2a4e7cd11d4128530dd5d290fc06ebadba620";
    };
  };

  # A perl with modules, as perl.withPackages makes it: the modules only in buildEnv's JSON.
  perlWithModules = package "perl-with-modules-5.38" {
    env = buildEnv "perl-env" [
      "${perlModule "Foo" "sha256-5l3Hl2c3E3Nsm7Z1ZVZMLfn2aHzu7V10dbjxeEPIBJE="}"
      "${perlModule "Bar" "sha256-0CMGTmeFvTeJaQqMi8A8M9xzNHWLlwvPO/xdq2EW3Ew="}"
    ];
  };

  # A Rust package whose crates are vendored through a linkFarm, as cargo vendoring does.
  rustpkg = package "rustpkg-0.3" {
    cargoDeps = linkFarm "rustpkg-vendor" [
      { name = "alpha-1.0"; path = "${crate "alpha" "0b3vh0a2x6v54h9sfwkfjxa2bdzkgyvxmqdgm5i3v5ww9aj6n6h6"}"; }
      { name = "beta-1.0"; path = "${crate "beta" "1rjw7rkfgvqbs1ib9dvwnv0hfq6w7y98zf2l6xm8hxa8krcgqpp3"}"; }
    ];
  };

  # A source used only inside a configure flag.
  confpkg = package "confpkg-2.1" {
    configureFlags = [
      "--with-tzdata=${fetchurl {
        url = "https://example.org/tzdata-2024a.tar.gz";
        sha256 = "0y7z3sl0h7smlh0xpqgiyx8wh1vn4dfcz3s4a4h8x64sz1bvm7fd";
      }}"
    ];
  };

  # A Go package: its source has a URL, its vendored modules (a fixed output) none. A binary
  # cache has both (tests/integration/lister.rs puts them there).
  gopkg = package "gopkg-1.0" {
    src = fetchurl {
      url = "https://example.org/cachedpkg-1.0.tar.gz";
      sha256 = "0c5ce64479553c95ac4524ef988d7329eb525f5c24672adaadee7320e91f08fd";
    };
    vendor = mkDerivation {
      name = "gopkg-vendor";
      outputHashMode = "recursive";
      outputHashAlgo = "sha256";
      outputHash = "0lcc3c3cvpil8qdg1cc83lz009ah6dfl1nq379jp5sllr4dqjdaq";
    };
  };

  # Only on aarch64-linux.
  armonly = if system == "aarch64-linux" then package "armonly-1.0" {
    src = fetchurl {
      url = "https://example.org/armonly-1.0.tar.gz";
      sha256 = "1mypi5d0xg6n0ilzbkwdrwbkn4mlkr3qs1nhwyplr2ranqw1cyv0";
    };
  } else null;

  # A function called without an argument it requires: tryEval cannot catch that either.
  missingarg = ({ src, patches }: package "missingarg-1.0" { inherit src patches; }) { src = null; };

  # null is a value, not a failure.
  nothing = null;

  # An abort inside a dependency stops the evaluator too.
  abortdep = package "abortdep-1.0" { buildInputs = [ (abort "abortdep's dependency aborts") ]; };

  # Packages that fail to evaluate: skipped and counted. tryEval catches throw and assert; abort
  # stops the whole evaluator, which swh-bridge must isolate by itself.
  broken-throw = throw "broken-throw has been removed";
  broken-abort = abort "broken-abort cannot be evaluated";
  broken-assert = assert config.enableBroken or false; package "broken-assert-1.0" { };

  # A package set that asks to be walked.
  extraPackages = {
    recurseForDerivations = true;
    broken = throw "extraPackages.broken is gone";
    nested = package "nested-1.0" {
      src = fetchurl {
        url = "https://example.org/nested-1.0.tar.gz";
        hash = "sha256-o5YkRkO1beShZCtayuWUcCRlC7ALl4XZZxBGwkfnFAQ=";
      };
    };
  };
}
