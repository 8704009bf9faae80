# Sourced by scripts/test.sh and scripts/run-tests.sh: the whole run's background Raspberry Pi image build
# (scripts/prebuild-rpi-image.sh), started once by whichever of the two comes first.

# What the build needs from Debian (image-build/build-image.sh's and build-rootfs.sh's own lists for an arm64
# image on an amd64 host). They install anything missing themselves; installing these first lets scripts/test.sh
# start the build before the rest of the suite's packages, instead of after them.
RPI_PREBUILD_PACKAGES=(mmdebstrap fdisk dosfstools mtools e2fsprogs qemu-user-static arch-test g++-aarch64-linux-gnu)

# Starts the build unless this shell's parent already did (PORTCULLIS_RPI_PREBUILD names its directory), and
# exports where it writes (PORTCULLIS_RPI_PREBUILD) and its PID (PORTCULLIS_RPI_PREBUILD_PID). The caller that
# started it stops it and removes its directory when it exits.
start_rpi_prebuild() {
  if [[ -n "${PORTCULLIS_RPI_PREBUILD:-}" && -d "$PORTCULLIS_RPI_PREBUILD" ]]; then
    return 0
  fi
  local prebuild builder
  prebuild="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-rpi-prebuild.XXXXXX")"
  # Its own session, so that killing it kills the whole build. That session is also its own scheduler autogroup
  # (Linux's sched_autogroup, on in Debian's kernels): nice values count only inside a group and groups share
  # the CPU equally, so the build's `nice -n 19` still takes a full share beside the tests. That is wanted for
  # most of the run (niced as a group for all of it, the build finished late and the Raspberry Pi test waited
  # ~6 min for it on one busy core: 39 min instead of 35), but not while the amd64 image boots its two emulated
  # VMs: starved by it, their gateways missed systemd's start timeout. That file lowers the group to the least
  # share from its image's boots to its end (test/helpers/background-build.ts), through this PID.
  setsid bash scripts/prebuild-rpi-image.sh "$prebuild" &
  builder=$!
  export PORTCULLIS_RPI_PREBUILD="$prebuild"
  export PORTCULLIS_RPI_PREBUILD_PID="$builder"
  # shellcheck disable=SC2064 # the values now, not at exit
  trap "stop_rpi_prebuild '$builder' '$prebuild'" EXIT
}

# Stops the build's whole session (a failed check or test can end the run while mmdebstrap is mid-way), waits for
# every process in it to end (mmdebstrap unmounts what it mounted in the root file system when it is stopped), and
# removes its directory, which holds all it made; never across a mount left behind.
stop_rpi_prebuild() {
  local builder="$1" prebuild="$2" i
  # `|| true`: under errexit a failing kill (the build already finished) would otherwise become the exit code.
  kill -- -"$builder" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 -- -"$builder" 2>/dev/null || break
    sleep 0.1
  done
  wait "$builder" 2>/dev/null || true
  rm -rf --one-file-system "$prebuild" || true
}
