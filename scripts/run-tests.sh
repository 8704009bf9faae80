#!/usr/bin/env bash
# Runs the test files with Node's own test runner (TypeScript through tsx).
# With no arguments: every test/**/*.test.ts. Arguments that name files run only those; other arguments are
# passed to the runner, e.g. `npm run test:unit -- --test-name-pattern audit`.
set -euo pipefail
cd "$(dirname "$0")/.."
opts=()
files=()
for a in "$@"; do
  if [[ "$a" == *.test.ts ]]; then files+=("$a"); else opts+=("$a"); fi
done
prebuild=
if [[ ${#files[@]} -eq 0 ]]; then
  # The whole suite: the Raspberry Pi image (the longest build, mostly waiting on emulated maintainer scripts)
  # is built in the background at the lowest priority from the start, and its boot test runs last.
  mapfile -t files < <(find test -name '*.test.ts' ! -name rpi-image-boot.test.ts | sort)
  files+=(test/rpi-image-boot.test.ts)
  prebuild="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-rpi-prebuild.XXXXXX")"
  # Its own session, so that killing it kills the whole build. The session is also its own scheduler autogroup
  # (Linux's sched_autogroup, on in Debian's kernels): nice values count only inside a group and groups share the
  # CPU equally, so the build's `nice -n 19` alone still took half of the two cores from the tests (two
  # CPU-bound processes got 0.53 of a core each beside it). Niced as a group, it takes only what the tests leave.
  setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true; exec bash scripts/prebuild-rpi-image.sh "$1"' \
    prebuild "$prebuild" &
  builder=$!
  export PORTCULLIS_RPI_PREBUILD="$prebuild"
  # `|| true`: under errexit a failing kill (the build already finished) would otherwise become the exit code.
  trap 'kill -- -"$builder" 2>/dev/null || true; wait "$builder" 2>/dev/null || true; rm -rf "$prebuild"' EXIT
fi
# One file at a time: several tests bind the product's default ports, and the machine has two cores.
# A per-test timeout turns a hung peer into a failure instead of a stuck CI run. It also bounds each file as a
# whole: 15 min, as the amd64 appliance boot file (two emulated VMs on two cores, beside the background Raspberry
# Pi build) ran 565 s in one full run and past 600 s in the next, with no test in it failing.
node --import tsx --test --test-concurrency=1 --test-timeout=900000 "${opts[@]}" "${files[@]}"
