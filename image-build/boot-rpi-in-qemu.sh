#!/usr/bin/env bash
# Boots a Raspberry Pi image's own kernel, initrd and root file system under QEMU's generic arm64 machine
# (`-M virt`, TCG): proof that the arm64 userland starts the gateway and shows the console's first-boot text.
# It does not exercise the Pi's boot ROM, firmware or device tree — QEMU loads the kernel itself.
#
#   image-build/boot-rpi-in-qemu.sh out/portcullis-rpi.img [SECONDS]
#
# The kernel and initrd come from the image's firmware partition (RASPIFIRM, mtools: no mount), the root file
# system is the image's RASPIROOT, on a copy-on-write overlay (the image is not changed). The serial console
# (ttyAMA0) is printed; with SECONDS (default 900) QEMU is stopped after that long. The UI's port 8443 is
# forwarded to 127.0.0.1:18443 (or $PORTCULLIS_RPI_UI_PORT).
set -euo pipefail
img="${1:?usage: $0 RPI_IMAGE [SECONDS]}"
seconds="${2:-900}"
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/../scripts/ensure-debian-packages.sh" qemu-system-arm qemu-utils mtools
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MTOOLS_SKIP_CHECK=1
# The firmware partition starts at sector 2048 (build-image.sh).
fw="$img@@$((2048 * 512))"
kernel="$(mdir -b -i "$fw" ::/ | sed -n 's|^::/\(vmlinuz-[^ ]*\)$|\1|p' | sort -V | tail -1)"
initrd="$(mdir -b -i "$fw" ::/ | sed -n 's|^::/\(initrd.img-[^ ]*\)$|\1|p' | sort -V | tail -1)"
[[ -n "$kernel" && -n "$initrd" ]] || { echo "no kernel or initrd on $img's firmware partition" >&2; exit 1; }
mcopy -i "$fw" "::/$kernel" "$work/vmlinuz"
mcopy -i "$fw" "::/$initrd" "$work/initrd.img"
qemu-img create -q -f qcow2 -F raw -b "$(realpath "$img")" "$work/disk.qcow2"
timeout --foreground "$seconds" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 2048 \
  -display none -monitor none -serial stdio \
  -kernel "$work/vmlinuz" -initrd "$work/initrd.img" \
  -append 'root=LABEL=RASPIROOT rw console=ttyAMA0 net.ifnames=1' \
  -drive "file=$work/disk.qcow2,format=qcow2,if=virtio" \
  -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:${PORTCULLIS_RPI_UI_PORT:-18443}-:8443" || true
