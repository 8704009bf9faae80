#!/usr/bin/env bash
# Builds the Raspberry Pi disk image for test/rpi-image-boot.test.ts in the background of the whole test run:
# the arm64 root file system runs Debian's maintainer scripts under qemu-user (the longest build in the suite),
# so the whole run starts it first (scripts/rpi-prebuild.sh, from scripts/test.sh or run-tests.sh), niced in its
# own session (which the amd64 VM boot test lowers to the least CPU share while it runs), and the boot test (the
# first of the run's second lane, which starts when DIR/rc appears) uses it instead of building it in its own time.
# Everything it makes is under DIR (TMPDIR too), so that removing DIR after a stopped build leaves nothing behind.
#   prebuild-rpi-image.sh DIR   → DIR/portcullis-rpi.img, DIR/build.log, and DIR/rc (the exit code) when done
set -uo pipefail
dir="${1:?usage: $0 DIR}"
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$dir/tmp"
export TMPDIR="$dir/tmp"
node -e "const {generateKeyPairSync}=require('node:crypto');require('node:fs').writeFileSync(process.argv[1], generateKeyPairSync('ed25519').publicKey.export({type:'spki',format:'pem'}))" "$dir/release.pub.pem"
nice -n 19 ionice -c 3 bash "$here/image-build/build-image.sh" --target rpi --release-key "$dir/release.pub.pem" \
  "$dir/portcullis-rpi.img" >"$dir/build.log" 2>&1
echo $? >"$dir/rc.tmp" && mv "$dir/rc.tmp" "$dir/rc"
