#!/usr/bin/env bash
# Fetches a fixed corpus of package files that Nixpkgs pins by flat hash, as their registries
# serve them: Python wheels (zip, made by many versions of `wheel` and other builders), Java jars
# (zip, made by Maven's and Gradle's archivers, from Maven Central, or else the Debian-built ones
# in /usr/share/java), GitHub's source zips (from swh-web's test data, when its venv is there),
# npm packages (gzipped tar made by `npm pack`) and Rust crates (gzipped tar made by
# `cargo package`, taken from cargo's own download cache).
# For scripts/bench-recipes.sh. Not a test.
#
#   scripts/fetch-package-corpus.sh [DIR]   default: ~/.cache/swh-bridge/package-corpus
set -euo pipefail

dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/package-corpus}
mkdir -p "$dir"
cd "$dir"

wheels=(
  six==1.17.0 requests==2.32.3 urllib3==2.2.3 idna==3.10 certifi==2024.8.30 charset-normalizer==3.4.0
  attrs==24.2.0 click==8.1.7 jinja2==3.1.4 markupsafe==3.0.2 packaging==24.2 pyparsing==3.2.0
  python-dateutil==2.9.0.post0 pytz==2024.2 pyyaml==6.0.2 setuptools==75.6.0 wheel==0.45.1 pip==24.3.1
  numpy==2.1.3 cffi==1.17.1 pycparser==2.22 cryptography==43.0.3 typing-extensions==4.12.2
  tomli==2.1.0 pluggy==1.5.0 iniconfig==2.0.0 pytest==8.3.3 filelock==3.16.1 platformdirs==4.3.6
  docutils==0.21.2 pygments==2.18.0 rich==13.9.4 markdown-it-py==3.0.0 mdurl==0.1.2 sqlalchemy==2.0.36
  lxml==5.3.0 pillow==11.0.0 psutil==6.1.0 wrapt==1.17.0 frozenlist==1.5.0
)
jars=(
  org/apache/commons/commons-lang3/3.17.0 com/google/guava/guava/33.3.1-jre junit/junit/4.13.2
  org/slf4j/slf4j-api/2.0.16 com/fasterxml/jackson/core/jackson-core/2.18.1 com/google/code/gson/gson/2.11.0
  org/apache/logging/log4j/log4j-api/2.24.2 commons-io/commons-io/2.18.0 commons-codec/commons-codec/1.17.1
  joda-time/joda-time/2.13.0 org/antlr/antlr4-runtime/4.13.2 org/yaml/snakeyaml/2.3
  org/ow2/asm/asm/9.7.1 org/hamcrest/hamcrest/3.0 org/jsoup/jsoup/1.18.1
)
npms=(
  lodash@4.17.21 react@18.3.1 express@4.21.1 chalk@5.3.0 commander@12.1.0 debug@4.3.7 semver@7.6.3
  typescript@5.6.3 uuid@11.0.3 yargs@17.7.2 minimist@1.2.8 glob@11.0.0 axios@1.7.7 moment@2.30.1
  underscore@1.13.7 async@3.2.6 ws@8.18.0 prettier@3.3.3 esbuild@0.24.0 left-pad@1.3.0
)

platform=(--platform manylinux_2_17_x86_64 --python-version 3.12 --implementation cp --abi cp312)
for wheel in "${wheels[@]}"; do
  name=${wheel%%==*}
  ls "${name//-/_}"-*.whl "${name}"-*.whl >/dev/null 2>&1 && continue
  pip download -q --disable-pip-version-check --no-deps --only-binary=:all: "${platform[@]}" -d . "$wheel" \
    || echo "could not fetch $wheel" >&2
done
for jar in "${jars[@]}"; do
  artifact=$(basename "$(dirname "$jar")")
  version=$(basename "$jar")
  file="$artifact-$version.jar"
  [ -e "$file" ] || curl -fsSL -o "$file" "https://repo1.maven.org/maven2/$jar/$file" 2>/dev/null \
    || echo "could not fetch $jar" >&2
done
if ! ls ./*.jar >/dev/null 2>&1 && [ -d /usr/share/java ]; then
  find /usr/share/java -maxdepth 1 -name '*.jar' -type f -size +20k | sort | head -20 | xargs -r cp -t .
fi
venv=${SWH_BRIDGE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/swh-bridge/venv}
find "$venv" -path '*swh/web/tests/resources/repos/*.zip' -size +20k 2>/dev/null | while read -r zip; do
  [ -e "$(basename "$zip")" ] || cp "$zip" .
done
for npm in "${npms[@]}"; do
  ls "$(echo "${npm%@*}" | tr / -)-${npm##*@}.tgz" >/dev/null 2>&1 || npm pack --silent "$npm" >/dev/null \
    || echo "could not fetch $npm" >&2
done
# Crates: the first 40 in cargo's cache (the ones this project builds with), renamed `.crate`
# -> `.crate.gz` so the bench knows their compression.
find "${CARGO_HOME:-$HOME/.cargo}/registry/cache" -name '*.crate' | sort | head -40 | while read -r crate; do
  [ -e "$(basename "$crate").gz" ] || cp "$crate" "$(basename "$crate").gz"
done
ls | wc -l
