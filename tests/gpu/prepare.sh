#!/usr/bin/env bash
# Run HERE (a Debian 12 machine with the package registry), before tests/gpu/run.sh is run on a
# GPU machine that has PyTorch, nvcc, CMake and ninja but no registry and possibly none of the
# other C++ libraries the libtorch-only build needs. Puts into build-gpu/ (git-ignored; name it
# in the device tool's `carry`):
#   deps.tar.xz  Debian 12's Abseil, GoogleTest/GoogleMock, nlohmann-json and ICU (headers, CMake
#                files and shared libraries, unpacked under usr/; no static ICU), ~12 MB
#   models/      ../shared/models/specdec-tiny-py when it exists (the trained checkpoint, 30 MB)
# Usage: tests/gpu/prepare.sh [--no-model]
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$repo/build-gpu"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

packages=(libabsl-dev libabsl20220623 libgtest-dev libgmock-dev googletest nlohmann-json3-dev
          libicu-dev libicu72)
(cd "$work" && apt-get download "${packages[@]}" >/dev/null 2>&1) || {
  apt-get update -qq >/dev/null && (cd "$work" && apt-get download "${packages[@]}" >/dev/null)
}
mkdir -p "$work/root"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
# What the build does not need: ICU's static libraries, documentation, googletest's sources.
find "$work/root" -name 'libicu*.a' -delete
rm -rf "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/src"
tar -C "$work/root" -cJf "$out/deps.tar.xz" usr
ls -l "$out/deps.tar.xz"

if [[ "${1:-}" != "--no-model" && -f "$repo/../shared/models/specdec-tiny-py/model.safetensors" ]]; then
  mkdir -p "$out/models"
  rm -rf "$out/models/specdec-tiny-py"
  cp -r "$repo/../shared/models/specdec-tiny-py" "$out/models/"
  du -sh "$out/models/specdec-tiny-py"
fi
du -sh "$out"
echo "prepare: now run tests/gpu/run.sh on the GPU machine with build-gpu carried"
