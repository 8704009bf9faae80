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
lanes=()
if [[ ${#files[@]} -eq 0 ]]; then
  # The whole suite: the Raspberry Pi image (the longest build, ~14 min of one core, mostly emulated maintainer
  # scripts) is built in the background from the start.
  # First the files that mostly wait (on a browser, a rate window, a code's 30-second step, a namespace's
  # timers): measured at 0.5-1.1 of the two cores, they leave the rest to the background build below, which
  # otherwise takes it from files that need both. Then the rest by name.
  waiting=(test/ui-console.test.ts test/segmentation-netns.test.ts test/systemd.test.ts test/ui-fleet.test.ts
    test/policy-netns.test.ts test/ui-browser.test.ts test/ui-console-admin.test.ts test/updates.test.ts)
  # Once the build is done its core would idle: a second lane takes the Raspberry Pi boot, then files that touch
  # nothing another file uses (no fixed port, no namespace or firewall, no systemd, nothing outside their temp
  # directories, no deadline a loaded machine could miss), so that they can overlap anything in the main lane.
  # A file not listed runs in the main lane, the safe default.
  beside=(test/rpi-image-boot.test.ts test/activity.test.ts test/alerts.test.ts test/anomaly-baseline-saver.test.ts
    test/anomaly.test.ts test/anomaly-realistic.test.ts test/appliance-vm.test.ts test/architecture.test.ts
    test/argon2-thread.test.ts test/audit.test.ts test/bench-options.test.ts test/coap-dedupe.test.ts
    test/coap.test.ts test/compliance.test.ts test/config.test.ts test/dtls-crypto.test.ts
    test/dtls-internals.test.ts test/dtls-session-memory.test.ts test/events.test.ts test/fleet-fetch.test.ts
    test/hardware.test.ts test/identity-version.test.ts test/log-throttle.test.ts test/policy.test.ts
    test/policy-shared-compiled.test.ts test/policy-ui.test.ts test/segmentation.test.ts
    test/setup-code-console.test.ts test/store.test.ts test/ui-access.test.ts test/ui-auth.test.ts
    test/ui-console-pages.test.ts test/ui-pages.test.ts test/uplink-coalesced-writes.test.ts
    test/uplink-post-batching.test.ts test/uplink-queue.test.ts)
  for f in "${waiting[@]}" "${beside[@]}"; do
    [[ -f "$f" ]] || { echo "run-tests.sh: $f is listed but missing" >&2; exit 2; }
  done
  files=("${waiting[@]}")
  mapfile -t -O "${#files[@]}" files < <(find test -name '*.test.ts' | sort |
    grep -vxF -f <(printf '%s\n' "${waiting[@]}" "${beside[@]}"))
  # The background build, unless scripts/test.sh started it before the checks.
  # shellcheck source=scripts/rpi-prebuild.sh
  source scripts/rpi-prebuild.sh
  start_rpi_prebuild
  # The amd64 image's two emulated VMs boot against systemd's deadlines: nothing runs beside them.
  lanes=(--second-lane-after "$PORTCULLIS_RPI_PREBUILD/rc" --alone test/appliance-boot.test.ts)
  for f in "${beside[@]}"; do lanes+=(--second-lane "$f"); done
fi
# One file at a time in each lane, in the order above (scripts/test-runner.mjs: `node --test` would sort them,
# and could not keep apart the files that must not overlap): several tests bind the product's default ports or
# the host's firewall, and the machine has two cores.
# A bound on each file, 20 min, turns a hung peer into a failure instead of a stuck CI run (Node 20 applies no
# per-test default in the files' own processes; tests that need one set it). The amd64 appliance boot file (two
# emulated VMs on two cores, beside the background Raspberry Pi build but nothing of the second lane) runs ~8 min
# and has its own 19 min budget, so that a boot that fails late still keeps its journal.
node --import tsx scripts/test-runner.mjs --file-timeout 1200000 "${opts[@]}" "${lanes[@]}" "${files[@]}"
