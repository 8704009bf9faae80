#!/usr/bin/env bash
# Makes the image's initramfs once, at the end of the build, instead of at every package that asks for one.
# Installing the kernel makes one (its postinst) and initramfs-tools' trigger makes it again for the packages
# configured after it: under qemu-user (the Raspberry Pi image) each costs ~2.5 minutes of CPU, and the first
# is thrown away. Debian's own update-initramfs is diverted while the packages install and restored before the
# one that ships is made, so the appliance's kernel updates run the real one.
#
#   initramfs-once.sh defer ROOTFS   mmdebstrap --essential-hook: before the packages that make an initramfs
#   initramfs-once.sh make ROOTFS    mmdebstrap --customize-hook: the real one back, one initramfs per kernel
set -euo pipefail
mode="${1:?usage: $0 defer|make ROOTFS}" root="${2:?usage: $0 defer|make ROOTFS}"
tool=/usr/sbin/update-initramfs
# Where dpkg puts the package's own file while the stand-in is in place (build-image.sh looks for this name).
real="$tool.portcullis-real"
marker='# portcullis image build: deferred (image-build/initramfs-once.sh)'
# Inside the root file system: one line for each call the stand-in answered, counted by `make`.
calls=/var/tmp/portcullis-initramfs-deferred

case "$mode" in
  defer)
    chroot "$root" dpkg-divert --quiet --local --rename --divert "$real" --add "$tool"
    install -d -m 0755 "$root/usr/sbin"
    # The kernel's hook calls it only when `--version` says initramfs-tools; this one says otherwise, so the
    # hook and every trigger do nothing until `make`.
    printf '#!/bin/sh\n%s\necho "$*" >>%s\necho "update-initramfs: deferred to the end of the image build"\n' \
      "$marker" "$calls" >"$root$tool"
    chmod 0755 "$root$tool"
    ;;
  make)
    # Only our stand-in is removed: if a package had put the real tool at this path, removing it would leave the
    # image without one.
    if [[ -e "$root$tool" ]] && ! grep -qxF "$marker" "$root$tool"; then
      echo "initramfs-once: $tool is not the build's stand-in; refusing to remove it" >&2
      exit 1
    fi
    rm -f "$root$tool"
    chroot "$root" dpkg-divert --quiet --local --rename --divert "$real" --remove "$tool"
    # Said in the build's output, so a stand-in nobody called (the tool moved) shows as 0.
    n=0
    [[ -f "$root$calls" ]] && n=$(wc -l <"$root$calls")
    echo "initramfs-once: $n calls to update-initramfs deferred"
    rm -f "$root$calls"
    if [[ -x "$root$tool" ]]; then
      chroot "$root" update-initramfs -c -k all
    fi
    ;;
  *)
    echo "usage: $0 defer|make ROOTFS" >&2
    exit 2
    ;;
esac
