#!/usr/bin/env bash
# Build the ggk-gateway container image from Debian packages and the project's wheel, with no
# registry image: mmdebstrap makes the root file system, buildah turns it into an image.
#
#   deploy/image/build.sh [TAG]          (default tag: ggk-gateway:<version>)
#
# Needs root (or a user namespace), mmdebstrap and buildah (apt-get install mmdebstrap buildah).
# The Debian packages come from the host's own apt sources, the Python packages from the host's
# pip configuration: the root file system never reaches the network itself.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
tag=${1:-ggk-gateway:$version}
suite=${GGK_IMAGE_SUITE:-bookworm}
sources=${GGK_IMAGE_SOURCES:-}
if [ -z "$sources" ]; then
  for candidate in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    [ -f "$candidate" ] && { sources=$candidate; break; }
  done
fi
[ -n "$sources" ] || { echo "no apt sources found: set GGK_IMAGE_SOURCES" >&2; exit 2; }
for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install $tool" >&2; exit 2; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "[1/4] wheels: ggk-gateway $version and its dependencies (pinned by .ci/constraints.txt)"
env -u PIP_FIND_LINKS python3 -m pip wheel --quiet -c .ci/constraints.txt -w "$work/wheels" .

echo "[2/4] root file system: Debian $suite, minbase + python3 (mmdebstrap)"
# The image's user has a fixed uid so a mounted data volume can be given to it.
mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,tzdata \
  --customize-hook="copy-in $work/wheels /tmp" \
  --customize-hook='chroot "$1" python3 -m venv /opt/ggk' \
  --customize-hook='chroot "$1" env -u PIP_FIND_LINKS /opt/ggk/bin/pip install --quiet --no-index --no-cache-dir --find-links /tmp/wheels ggk-gateway' \
  --customize-hook='rm -rf "$1/tmp/wheels" "$1/var/cache/apt/"*.bin "$1/var/lib/apt/lists/"*' \
  --customize-hook='chroot "$1" useradd --uid 10001 --user-group --home-dir /var/lib/ggk --create-home --shell /usr/sbin/nologin ggk' \
  --customize-hook='chmod 0700 "$1/var/lib/ggk"' \
  "$suite" "$work/rootfs.tar" "$sources"

echo "[3/4] image: from scratch + the root file system (buildah)"
container=$(buildah from scratch)
trap 'buildah rm "$container" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
buildah add --quiet "$container" "$work/rootfs.tar" / >/dev/null
buildah config \
  --entrypoint '["/opt/ggk/bin/ggk"]' \
  --cmd 'serve --config /var/lib/ggk/gateway.toml' \
  --user ggk --workingdir /var/lib/ggk --port 8443 --volume /var/lib/ggk \
  --env PYTHONUNBUFFERED=1 --env TZ=Europe/Amsterdam \
  --label org.opencontainers.image.title=ggk-gateway \
  --label "org.opencontainers.image.version=$version" \
  "$container"

echo "[4/4] commit $tag"
buildah commit --quiet --rm "$container" "$tag" >/dev/null
trap 'rm -rf "$work"' EXIT
echo "built $tag"
