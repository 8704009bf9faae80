#!/usr/bin/env bash
# The full amd64 appliance image: the root file system of build-rootfs.sh plus a kernel, an EFI System
# Partition with systemd-boot, and a GPT disk image (ESP + ext4 root, found by partition label) — built from
# files alone (mkfs.fat + mtools, mkfs.ext4 -d, sfdisk), no loop devices or mounts. Write it to the industrial
# PC's disk (dd, or the vendor's imaging tool) and boot with UEFI.
#
#   image-build/build-image.sh --release-key KEY.pub.pem [--mirror URL] OUT.img
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
key=
mirror=http://deb.debian.org/debian
out=
while (($#)); do
  case "$1" in
    --release-key) key="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
[[ -n "$out" && -n "$key" ]] || { echo "usage: $0 --release-key KEY.pub.pem OUT.img" >&2; exit 2; }
for tool in mmdebstrap sfdisk mkfs.fat mcopy mkfs.ext4; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install mmdebstrap fdisk dosfstools mtools e2fsprogs)" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

bash "$here/build-rootfs.sh" --release-key "$key" --mirror "$mirror" \
  --extra-packages linux-image-amd64,initramfs-tools,systemd-boot-efi "$rootfs"

kernel="$(ls "$rootfs"/boot/vmlinuz-* | sort -V | tail -1)"
initrd="$(ls "$rootfs"/boot/initrd.img-* | sort -V | tail -1)"
efi="$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
[[ -f "$kernel" && -f "$initrd" && -f "$efi" ]] || { echo "kernel, initrd or systemd-boot missing from the rootfs" >&2; exit 1; }
cat > "$rootfs/etc/fstab" <<'FSTAB'
PARTLABEL=portcullis-root  /          ext4  defaults,noatime  0 1
PARTLABEL=ESP              /boot/efi  vfat  umask=0077        0 2
FSTAB
mkdir -p "$rootfs/boot/efi"

echo "== EFI System Partition (systemd-boot)"
esp="$work/esp.img"
esp_mib=256
mkfs.fat -F 32 -n ESP -C "$esp" $((esp_mib * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$esp" "$efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$kernel" ::/vmlinuz
mcopy -i "$esp" "$initrd" ::/initrd.img
printf 'default portcullis.conf\ntimeout 0\n' > "$work/loader.conf"
printf 'title Portcullis\nlinux /vmlinuz\ninitrd /initrd.img\noptions root=PARTLABEL=portcullis-root rw quiet console=tty0 console=ttyS0,115200\n' > "$work/entry.conf"
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/entry.conf" ::/loader/entries/portcullis.conf

echo "== root file system (ext4)"
root_img="$work/root.img"
root_mib=$(( $(du -sm "$rootfs" | cut -f1) * 14 / 10 + 512 ))
mkfs.ext4 -q -L portcullis-root -d "$rootfs" "$root_img" "${root_mib}M"

echo "== GPT disk image"
sectors_esp=$((esp_mib * 2048))
sectors_root=$((root_mib * 2048))
start_root=$((2048 + sectors_esp))
total=$((start_root + sectors_root + 2048))
rm -f "$out"
truncate -s $((total * 512)) "$out"
sfdisk --quiet "$out" <<PARTS
label: gpt
start=2048, size=$sectors_esp, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=ESP
start=$start_root, size=$sectors_root, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=portcullis-root
PARTS
dd if="$esp" of="$out" bs=512 seek=2048 conv=notrunc,sparse status=none
dd if="$root_img" of="$out" bs=512 seek="$start_root" conv=notrunc,sparse status=none
echo "== done: $out ($(du -h --apparent-size "$out" | cut -f1); write it to the disk and boot with UEFI)"
