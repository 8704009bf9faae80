#!/usr/bin/env bash
# Builds the release's native Node modules (better-sqlite3; onoff's epoll for the GPIO; the DTLS server's
# portcullis-dtls-crypto from native/) for the target
# architecture. For the build host's own architecture the modules the repository already built from the same
# lock file are copied; otherwise (arm64 on amd64) they are cross-compiled with Debian's g++-aarch64-linux-gnu
# against the host's Node headers — the same Node major as the target's Debian nodejs, hence the same module
# ABI (customize.sh proves the result loads inside the target root file system).
#   native-modules.sh REPO RELEASE_DIR ARCH
set -euo pipefail
repo="$1" release="$2" arch="$3"
host_arch="$(dpkg --print-architecture)"
version_of() { node -p "require('$1/package.json').version" 2>/dev/null || true; }
gyp="$(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"  # its include/node has the headers

for m in better-sqlite3 epoll portcullis-dtls-crypto; do
  target="$release/node_modules/$m"
  [[ -d "$target" ]] || continue
  built="$repo/node_modules/$m/build/Release"
  if [[ "$arch" == "$host_arch" && -d "$built" && "$(version_of "$repo/node_modules/$m")" == "$(version_of "$target")" ]]; then
    mkdir -p "$target/build" && cp -a "$built" "$target/build/"
    continue
  fi
  env=()
  if [[ "$arch" != "$host_arch" ]]; then
    [[ "$arch" == arm64 ]] || { echo "no cross build for $arch on $host_arch" >&2; exit 1; }
    command -v aarch64-linux-gnu-g++ >/dev/null ||
      { echo "arm64 native modules need g++-aarch64-linux-gnu (apt-get install g++-aarch64-linux-gnu)" >&2; exit 1; }
    env=(CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar)
  fi
  [[ -f "$gyp" ]] || { echo "node-gyp (bundled with npm) not found at $gyp" >&2; exit 1; }
  echo "== building $m for $arch"
  (cd "$target" && env "${env[@]}" node "$gyp" rebuild --release --arch="$([[ "$arch" == amd64 ]] && echo x64 || echo arm64)" \
    --nodedir="$nodedir" >/dev/null)
done
