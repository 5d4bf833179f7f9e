#!/usr/bin/env bash
# Builds lockgate's image from the published Containerfile where no image registry can be
# reached (CI, a machine with only Debian's packages and PyPI):
#   1. podman, buildah, mmdebstrap and runc from Debian's packages, if missing;
#   2. the wheels lockgate needs, fetched by this machine's pip (its index settings and
#      certificates are not those a build container would see), then mounted into the build;
#   3. a Debian bookworm base (Debian's python3 is 3.11) made with mmdebstrap, imported into
#      the local container storage;
#   4. the Containerfile, built with --build-arg BASE_IMAGE=<that base>.
# Everything slow is kept between runs under $LOCKGATE_IMAGE_CACHE (default
# /var/cache/lockgate-image): the .deb files, the base tarball and the wheels, each keyed by what
# it is made from; buildah's layer cache keeps the dependency layer while only src/ changes.
#
#   scripts/build_image.sh [IMAGE]      # IMAGE default: localhost/lockgate:dev
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-localhost/lockgate:dev}
cache=${LOCKGATE_IMAGE_CACHE:-/var/cache/lockgate-image}
mkdir -p "$cache"
say() { printf 'build_image: %s\n' "$*" >&2; }
key() { sha256sum | cut -c1-16; }

# 1. Tools. runc runs the image where crun cannot (scripts/containers-ci.conf says why).
# Debian's own python3 and pip fetch the wheels: the base's interpreter, so that markers resolve
# as they will in the image (redis needs async-timeout below Python 3.11.3: Debian's is 3.11.2).
python=/usr/bin/python3
missing=()
for tool in podman buildah mmdebstrap runc; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
"$python" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if ((${#missing[@]})); then
  say "installing ${missing[*]} from Debian's packages"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. The wheels: lockgate's pinned dependencies, what builds its wheel, and the SBOM tool,
# keyed by pyproject.toml and this recipe.
wanted=$(mktemp)
trap 'rm -f "$wanted"' EXIT
"$python" - >"$wanted" <<'EOF'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
print(*project["project"]["dependencies"], *project["build-system"]["requires"], sep="\n")
print(re.search(r"cyclonedx-bom==[\d.]+", open("Containerfile").read())[0])
EOF
wheels_key=$({ cat "$wanted"; "$python" --version; } | key)
wheels=$cache/wheels-$wheels_key
fetch_wheels() {
  [[ -f $wheels/.complete ]] && return
  say "downloading wheels into $wheels"
  rm -rf "$wheels.part"
  "$python" -m pip download -qq --disable-pip-version-check --only-binary=:all: \
    --dest "$wheels.part" --requirement "$wanted"
  touch "$wheels.part/.complete"
  rm -rf "$wheels" && mv "$wheels.part" "$wheels"
  find "$cache" -maxdepth 1 -name 'wheels-*' ! -name "wheels-$wheels_key" -exec rm -rf {} +
}
# Fetched while the base is made: both mostly wait on the network.
fetch_wheels &
wheels_fetched=$!

# 3. The base. The recipe and the month make its key: a changed recipe builds a new one, and a
# new month brings Debian's security updates in. libstdc++6: wheels link it (greenlet, which
# SQLAlchemy's asyncio needs), as manylinux allows; the official slim images have it too.
suite=bookworm
packages=python3,python3-venv,ca-certificates,netbase,passwd,libstdc++6
mirrors=("deb http://deb.debian.org/debian $suite main"
         "deb http://deb.debian.org/debian $suite-updates main"
         "deb http://deb.debian.org/debian-security $suite-security main")
base_key=$(printf '%s\n' "$suite" "$packages" "${mirrors[@]}" "$(date -u +%Y-%m)" | key)
base=localhost/lockgate-base:$base_key
if ! podman image exists "$base"; then
  tarball=$cache/base-$base_key.tar
  if [[ ! -f $tarball ]]; then
    say "making the base with mmdebstrap ($suite: $packages)"
    mkdir -p "$cache/debs"
    # --variant=essential: only what dpkg itself needs, plus the packages named (no apt, no
    # perl). The merged-usr hook makes the /usr merge itself rather than installing usrmerge.
    # The hooks keep the downloaded .deb files for the next base.
    mmdebstrap --variant=essential --format=tar --include="$packages" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --skip=essential/unlink \
      --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
      --setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
      --customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
      "$suite" "$tarball.part" "${mirrors[@]}"
    mv "$tarball.part" "$tarball"
  fi
  say "importing $tarball as $base"
  podman import --quiet "$tarball" "$base" >/dev/null
  # Older bases are of no more use: their tarballs and images go.
  find "$cache" -maxdepth 1 -name 'base-*.tar' ! -name "base-$base_key.tar" -delete
  podman images --format '{{.Repository}}:{{.Tag}}' localhost/lockgate-base \
    | grep -vx "$base" | xargs -r podman rmi --force >/dev/null || true
fi

wait "$wheels_fetched"

# 4. The image. chroot isolation: the build's RUN steps need no OCI runtime, namespaces or
# network of their own (pip reads the mounted wheels only).
say "building $image on $base"
build=(buildah build --layers --force-rm --isolation chroot --quiet
       --build-arg BASE_IMAGE="$base"
       --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/wheels
       --volume "$wheels:/wheels:ro" --file Containerfile)
"${build[@]}" --tag "$image" . >/dev/null
# The builder stage's last layer gets a name too (every step is cached: a second or two), so
# that the prune below keeps the builder's layers for the next build, dependencies included;
# what it removes is the image this tag named before and the layers only that one used.
"${build[@]}" --target builder --tag localhost/lockgate-builder:cache . >/dev/null
podman image prune --force >/dev/null || say "could not prune older images (see podman images)"
say "built $image"
