#!/usr/bin/env bash
# The full appliance disk image: the root file system of build-rootfs.sh plus a kernel and what the target's
# firmware boots from, built from files alone (mkfs.fat + mtools, mkfs.ext4 -d, sfdisk): no loop devices, no
# mounts.
#
#   pc  (amd64 industrial PC, the default): GPT with an EFI System Partition (systemd-boot) and an ext4 root
#       found by its partition label. Write it to the PC's disk and boot with UEFI.
#   rpi (Raspberry Pi 3/4/400/CM4, arm64): Debian's linux-image-arm64 and raspi-firmware; MBR with the FAT
#       firmware partition RASPIFIRM (the Pi's boot ROM reads start*.elf, config.txt, cmdline.txt, the kernel,
#       initrd and device trees from it) and the ext4 root RASPIROOT. Write it to the SD card.
#
#   image-build/build-image.sh --release-key KEY.pub.pem [--target pc|rpi] [--mirror URL]
#                              [--keystore tpm2|software] [--from-rootfs DIR] OUT.img
#
# --keystore: pc defaults to tpm2 (industrial PCs have a firmware or discrete TPM); rpi to software — a
# Raspberry Pi has no TPM, and with tpm2 the gateway would refuse to start (a TPM HAT needs its device-tree
# overlay added to /etc/default/raspi-firmware-custom; Debian's raspi-firmware ships none).
#
# --from-rootfs: start from a root file system build-rootfs.sh already made with the target's packages and
# keystore (pc: --extra-packages linux-image-amd64,initramfs-tools,systemd-boot-efi; rpi: --arch arm64
# --keystore software --components main,non-free-firmware --extra-packages
# linux-image-arm64,initramfs-tools,raspi-firmware); it is copied, not changed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key=
target=pc
mirror=http://deb.debian.org/debian
from=
keystore=
out=
while (($#)); do
  case "$1" in
    --release-key) key="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --from-rootfs) from="$2"; shift 2 ;;
    --keystore) keystore="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
[[ -n "$out" && ( -n "$key" || -n "$from" ) ]] ||
  { echo "usage: $0 --release-key KEY.pub.pem [--target pc|rpi] [--from-rootfs DIR] OUT.img" >&2; exit 2; }
[[ "$target" == pc || "$target" == rpi ]] || { echo "--target pc or rpi" >&2; exit 2; }
bash "$here/../scripts/ensure-debian-packages.sh" mmdebstrap fdisk dosfstools mtools e2fsprogs
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
export MTOOLS_SKIP_CHECK=1
boot_mib=256

# The root file system: built now with the target's extra arguments, or copied from --from-rootfs.
make_rootfs() {
  if [[ -n "$from" ]]; then
    [[ -x "$from/usr/local/bin/portcullis" ]] || { echo "--from-rootfs $from is not a build-rootfs.sh result" >&2; exit 1; }
    cp -a "$from" "$rootfs"
  else
    bash "$here/build-rootfs.sh" --release-key "$key" --mirror "$mirror" "$@" "$rootfs"
  fi
  # A root file system whose build stopped before its last hook still has the stand-in for update-initramfs
  # (initramfs-once.sh) and no initramfs: an image made from it would not boot or update its kernel.
  if grep -qF portcullis-real "$rootfs/var/lib/dpkg/diversions" 2>/dev/null; then
    echo "the root file system still diverts update-initramfs: its build did not finish" >&2
    exit 1
  fi
  local kernel
  for kernel in "$rootfs"/boot/vmlinuz-*; do
    [[ -e "$kernel" ]] || continue
    [[ -f "$rootfs/boot/initrd.img-${kernel##*/vmlinuz-}" ]] || { echo "no initramfs for ${kernel##*/}" >&2; exit 1; }
  done
}

# A FAT32 partition image holding SRC's files (mcopy: no mount needed).
fat_image() { # OUT LABEL SRC_DIR
  mkfs.fat -F 32 -n "$2" -C "$1" $((boot_mib * 1024)) >/dev/null
  if [[ -n "$(ls -A "$3")" ]]; then mcopy -s -p -i "$1" "$3"/* ::/; fi
}

# The ext4 root partition image, sized from the tree with headroom for updates (A/B releases) and data.
root_image() { # OUT LABEL
  root_mib=$(($(du -sm "$rootfs" | cut -f1) * 14 / 10 + 512))
  mkfs.ext4 -q -L "$2" -d "$rootfs" "$1" "${root_mib}M"
}

# The disk: LABEL_TYPE gpt|dos, then the two partition images and their sfdisk lines.
disk_image() { # LABEL_TYPE BOOT_IMG BOOT_LINE ROOT_IMG ROOT_LINE
  local sectors_boot=$((boot_mib * 2048)) sectors_root=$((root_mib * 2048))
  local start_root=$((2048 + sectors_boot))
  rm -f "$out"
  truncate -s $(((start_root + sectors_root + 2048) * 512)) "$out"
  sfdisk --quiet "$out" <<PARTS
label: $1
start=2048, size=$sectors_boot, $3
start=$start_root, size=$sectors_root, $5
PARTS
  dd if="$2" of="$out" bs=512 seek=2048 conv=notrunc,sparse status=none
  dd if="$4" of="$out" bs=512 seek="$start_root" conv=notrunc,sparse status=none
}

build_pc() {
  make_rootfs --keystore "${keystore:-tpm2}" --extra-packages linux-image-amd64,initramfs-tools,systemd-boot-efi
  local kver efi
  kver="$(basename "$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')"
  efi="$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
  [[ -n "$kver" && -f "$efi" ]] || { echo "kernel or systemd-boot missing from the rootfs" >&2; exit 1; }
  cat > "$rootfs/etc/fstab" <<'FSTAB'
PARTLABEL=portcullis-root  /          ext4  defaults,noatime  0 1
PARTLABEL=ESP              /boot/efi  vfat  umask=0077        0 2
FSTAB
  # The kernel's command line, for this build and every kernel update (zz-portcullis-esp reads it).
  echo 'root=PARTLABEL=portcullis-root rw quiet console=tty0 console=ttyS0,115200' > "$rootfs/etc/kernel/cmdline"

  echo "== EFI System Partition (systemd-boot)"
  # Made in the root file system's /boot/efi, where the ESP is mounted on the device, by the same kernel hook
  # that later puts Debian's kernel updates there; then moved into the partition image.
  local esp="$rootfs/boot/efi"
  mkdir -p "$esp/EFI/BOOT" "$esp/loader/entries"
  cp "$efi" "$esp/EFI/BOOT/BOOTX64.EFI"
  # The newest entry (by its version) starts; no menu unless a key is held.
  printf 'default portcullis-*\ntimeout 0\n' > "$esp/loader/loader.conf"
  chroot "$rootfs" /etc/kernel/postinst.d/zz-portcullis-esp "$kver"
  [[ -f "$esp/loader/entries/portcullis-$kver.conf" ]] || { echo "the kernel hook made no ESP entry" >&2; exit 1; }
  mv "$esp" "$work/esp"
  mkdir -m 0700 "$esp"
  fat_image "$work/esp.img" ESP "$work/esp"

  echo "== root file system (ext4)"
  root_image "$work/root.img" portcullis-root
  echo "== GPT disk image"
  disk_image gpt "$work/esp.img" 'type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP' \
    "$work/root.img" 'type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=portcullis-root'
}

build_rpi() {
  # raspi-firmware (the Pi's boot blobs) is in Debian's non-free-firmware component.
  make_rootfs --keystore "${keystore:-software}" --arch arm64 --components main,non-free-firmware --extra-packages linux-image-arm64,initramfs-tools,raspi-firmware
  # raspi-firmware's kernel hook fills /boot/firmware (blobs, kernel, initrd, device trees, config.txt,
  # cmdline.txt); run it again now that it knows the root partition's label.
  # Serial console on the GPIO header's UART (headless gateways) and the screen.
  printf 'ROOTPART=LABEL=RASPIROOT\nCONSOLES="ttyS1,115200 tty0"\n' > "$rootfs/etc/default/raspi-firmware"
  local kver
  kver="$(basename "$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)" | sed 's/^vmlinuz-//')"
  # With /proc mounted the hook recognises the chroot (ischroot) instead of asking for a mounted /boot/firmware.
  mount -t proc proc "$rootfs/proc"
  trap 'umount "$rootfs/proc" || true; rm -rf "$work"' EXIT
  chroot "$rootfs" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware "$kver"
  umount "$rootfs/proc"
  trap 'rm -rf "$work"' EXIT
  local fw="$rootfs/boot/firmware"
  for f in config.txt cmdline.txt start4.elf fixup4.dat bcm2711-rpi-4-b.dtb; do
    [[ -f "$fw/$f" ]] || { echo "raspi-firmware did not put $f into /boot/firmware" >&2; exit 1; }
  done
  grep -q 'root=LABEL=RASPIROOT' "$fw/cmdline.txt" || { echo "cmdline.txt does not name RASPIROOT" >&2; exit 1; }
  cat > "$rootfs/etc/fstab" <<'FSTAB'
LABEL=RASPIROOT  /               ext4  defaults,noatime  0 1
LABEL=RASPIFIRM  /boot/firmware  vfat  umask=0077        0 2
FSTAB

  echo "== firmware partition (FAT32, RASPIFIRM)"
  mv "$fw" "$work/firmware"
  mkdir -m 0755 "$fw"
  fat_image "$work/firmware.img" RASPIFIRM "$work/firmware"
  echo "== root file system (ext4, RASPIROOT)"
  root_image "$work/root.img" RASPIROOT
  echo "== MBR disk image"
  disk_image dos "$work/firmware.img" 'type=c, bootable' "$work/root.img" 'type=83'
}

"build_$target"
echo "== done: $out ($(du -h --apparent-size "$out" | cut -f1); target $target)"
