#!/usr/bin/env bash
# Builds the Portcullis appliance root file system with Debian's own tools (mmdebstrap): Debian 13 (trixie) with
# Debian's nodejs, the gateway as release /opt/portcullis/releases/<version> (current → it), Node-RED for the
# policy flows, the hardened units enabled, no SSH, no password on any account, the release key pinned, and a
# CycloneDX SBOM of the Debian and npm packages. Reproducible: SOURCE_DATE_EPOCH is the last commit's time and
# the package set is fixed; pin --mirror to snapshot.debian.org for byte-identical rebuilds.
#
#   image-build/build-rootfs.sh --release-key KEY.pub.pem [--arch amd64|arm64] [--suite trixie]
#                               [--mirror URL] [--components main,...] [--extra-packages a,b]
#                               [--keystore tpm2|software] OUT_DIR
#
# --keystore: where the gateway keeps its keys (default tpm2; a Raspberry Pi has no TPM, see README).
#
# Needs root; installs what it needs from Debian's packages if missing: mmdebstrap, and for arm64 on an amd64
# host qemu-user-static + arch-test (Debian's maintainer scripts run under emulation; binfmt is registered) and
# g++-aarch64-linux-gnu (the release's native modules, native-modules.sh). The result is a directory;
# image-build/build-image.sh turns it into a disk image.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
arch=amd64
suite=trixie
mirror=http://deb.debian.org/debian
key=
extra=
components=main
keystore=tpm2
out=
while (($#)); do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --suite) suite="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --release-key) key="$2"; shift 2 ;;
    --extra-packages) extra="$2"; shift 2 ;;
    --components) components="$2"; shift 2 ;;
    --keystore) keystore="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
[[ -n "$out" ]] || { echo "usage: $0 --release-key KEY.pub.pem [--arch amd64|arm64] OUT_DIR" >&2; exit 2; }
[[ -f "$key" ]] || { echo "--release-key: the release public key (PEM) to pin is required" >&2; exit 2; }
grep -q 'PUBLIC KEY' "$key" || { echo "--release-key must be a public key, never the private one" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "needs root (mmdebstrap --mode=root)" >&2; exit 1; }
[[ "$arch" == amd64 || "$arch" == arm64 ]] || { echo "--arch amd64 or arm64" >&2; exit 2; }
[[ "$keystore" == tpm2 || "$keystore" == software ]] || { echo "--keystore tpm2 or software" >&2; exit 2; }
[[ -e "$out" && -n "$(ls -A "$out" 2>/dev/null)" ]] && { echo "$out exists and is not empty" >&2; exit 1; }

# What the build needs on the host, installed if missing (Debian's packages), and arm64 emulation registered.
needs=(mmdebstrap)
[[ "$arch" != "$(dpkg --print-architecture)" ]] && needs+=(qemu-user-static arch-test g++-aarch64-linux-gnu)
bash "$repo/scripts/ensure-debian-packages.sh" "${needs[@]}"
if [[ "$arch" == arm64 && "$(dpkg --print-architecture)" != arm64 && ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  [[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  /usr/lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-aarch64.conf
fi

version="$(node -p "require('$repo/package.json').version")"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== staging release $version"
release="$work/release"
mkdir -p "$release"
# The tracked files, then the production modules from the lock file for the target's CPU (npm picks the
# platform packages: esbuild, Node-RED's bcrypt), so the SBOM below lists exactly what ships.
git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | tar -C "$release" -xf -
# The compiled JavaScript the units run (dist/), built here from the checkout's sources: the appliance has no
# TypeScript compiler or loader. Built into the release, not the checkout's dist/, which tests running beside
# an image build (the whole run's background build) read.
(cd "$repo" && node scripts/build.mjs --out "$release/dist" >/dev/null)
npm_cpu=$([[ "$arch" == amd64 ]] && echo x64 || echo arm64)
(cd "$release" && npm ci --omit=dev --ignore-scripts --os=linux --cpu="$npm_cpu" --libc=glibc \
  --prefer-offline --no-audit --no-fund --loglevel=error)
bash "$here/native-modules.sh" "$repo" "$release" "$arch"
# The release ships without its development tools; npm sbom checks the tree against package.json.
node -e 'const f=process.argv[1],fs=require("fs"),p=JSON.parse(fs.readFileSync(f));delete p.devDependencies;
  fs.writeFileSync(f,JSON.stringify(p,null,2)+"\n")' "$release/package.json"
(cd "$release" && npm sbom --sbom-format cyclonedx --omit dev > "$work/npm-sbom.json")

cat > "$work/config.yaml" <<EOF
# Portcullis appliance configuration (the image's defaults; see README "Configuration").
dataDir: /var/lib/portcullis
# This file is root's and read-only to the gateway; the console's changes (uplink, segments) go to its own file
# in the state folder, merged over this one (docs/appliance.md, "Configuration the console changes").
consoleConfigFile: /var/lib/portcullis/config/console.yaml
keystore: {backend: $keystore}
control: {socketPath: /run/portcullis/control.sock}
# Every address: the management port's DHCP or link-local one, and the management segment's once segments
# exist; the appliance's firewall decides which interfaces reach it. The setup code also goes to the console.
ui: {host: 0.0.0.0, setupCodeFile: /run/portcullis-console/setup-code}
updates:
  publicKeyFile: /etc/portcullis/release-key.pub.pem
  releasesDir: /opt/portcullis/releases
  currentLink: /opt/portcullis/current
  healthCommand: [/opt/portcullis/current/systemd/portcullis-update-health]
  healthDeadlineSeconds: 180
EOF

# initramfs-tools compresses with zstd, which it only recommends (mmdebstrap installs no recommends): without it
# every initramfs fell back to gzip, slower to make (emulated, for arm64) and to unpack at every boot.
[[ ",$extra," == *,initramfs-tools,* ]] && extra+=,zstd
packages=nodejs,systemd,systemd-sysv,systemd-timesyncd,systemd-resolved,ca-certificates,openssl,iproute2,iptables,ipset,conntrack,curl,tpm2-tools,tpm2-abrmd,libtss2-tcti-tabrmd0,tpm2-openssl,dbus,polkitd,iputils-ping,tzdata${extra:+,$extra}
echo "== mmdebstrap $suite/$arch → $out"
mkdir -p "$out"
mmdebstrap --mode=root --variant=apt --architectures="$arch" --components="$components" --include="$packages" \
  --aptopt='Acquire::Retries "3"' \
  --essential-hook="bash '$here/initramfs-once.sh' defer \"\$1\"" \
  --customize-hook="bash '$here/customize.sh' \"\$1\" '$release' '$version' '$key' '$work/config.yaml' '$work/npm-sbom.json' '$arch'" \
  --customize-hook="bash '$here/initramfs-once.sh' make \"\$1\"" \
  "$suite" "$out" "$mirror"
echo "== done: $out (release $version, $(du -sh "$out" | cut -f1))"
