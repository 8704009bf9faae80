#!/usr/bin/env bash
# mmdebstrap customize hook (runs on the build host): puts Portcullis into the root file system at $1.
# Arguments: ROOTFS RELEASE_DIR VERSION RELEASE_KEY CONFIG NPM_SBOM ARCH
set -euo pipefail
root="$1" release="$2" version="$3" key="$4" config="$5" npmsbom="$6" arch="$7"
here="$(cd "$(dirname "$0")" && pwd)"
in_root() { chroot "$root" "$@"; }

# Service users: the gateway (reaches the TPM through tss) and the flows (reaches only the control socket,
# through the gateway's group; the gateway's state directory is 0700).
in_root useradd --system --user-group --home-dir /var/lib/portcullis --no-create-home --shell /usr/sbin/nologin portcullis
in_root useradd --system --user-group --home-dir /var/lib/portcullis-flows --no-create-home --shell /usr/sbin/nologin portcullis-flows
in_root usermod -a -G tss portcullis

# The release, side by side with future ones; `current` is what the units run.
install -d -m 0755 "$root/opt/portcullis/releases"
cp -a "$release" "$root/opt/portcullis/releases/$version"
ln -sfn "/opt/portcullis/releases/$version" "$root/opt/portcullis/current"
# The native modules were built for the target (native-modules.sh): prove they load on its Debian nodejs
# (under qemu-user for arm64) before anything else is put in.
in_root node -e "
  const db = require('/opt/portcullis/current/node_modules/better-sqlite3')(':memory:');
  if (db.prepare('select 1 as x').get().x !== 1) process.exit(1);
" || { echo "better-sqlite3 does not load in the $arch root file system" >&2; exit 1; }
# The DTLS crypto addon falls back to node:crypto at run time if it cannot load; an image must not ship that way.
in_root sh -c 'cd /opt/portcullis/current && node --input-type=module -e "
  const { dtlsCryptoStatus } = await import(\"./dist/gateway/src/dtls/crypto.js\");
  const s = dtlsCryptoStatus();
  if (s.implementation !== \"native\") { console.error(s.fallbackReason); process.exit(1); }
"' || { echo "the DTLS crypto addon does not load (or fails its self-test) in the $arch root file system" >&2; exit 1; }
cat > "$root/usr/local/bin/portcullis" <<'EOF'
#!/bin/sh
exec /usr/bin/node /opt/portcullis/current/bin/portcullis.js "$@"
EOF
chmod 0755 "$root/usr/local/bin/portcullis"

# Node-RED for the policy flows, with the Portcullis nodes, from the release's modules.
install -d -m 0755 "$root/opt/portcullis/flows/node_modules"
ln -sfn /opt/portcullis/current/node_modules/node-red "$root/opt/portcullis/flows/node_modules/node-red"
install -d -m 0755 "$root/etc/portcullis-flows"
install -m 0644 "$release/systemd/node-red-settings.cjs" "$root/etc/portcullis-flows/settings.js"
# Its secrets are made at first boot on the device (portcullis-flows-setup.service), never in the image.
install -d -m 0700 "$root/etc/credstore.encrypted"

# Configuration and the pinned release key: the appliance can verify releases, never sign them.
install -d -m 0755 "$root/etc/portcullis"
install -m 0644 "$config" "$root/etc/portcullis/config.yaml"
install -m 0644 "$key" "$root/etc/portcullis/release-key.pub.pem"

# The units, enabled; SSH is not installed, and masked should a later package bring it.
units=(portcullis-gateway.service portcullis-flows.service portcullis-flows-setup.service
  portcullis-console.service portcullis-console.path portcullis-firewall.service)
for u in "${units[@]}"; do install -m 0644 "$release/systemd/$u" "$root/etc/systemd/system/"; done
install -m 0644 "$release/systemd/portcullis-tmpfiles.conf" "$root/etc/tmpfiles.d/portcullis.conf"
systemctl --root="$root" enable "${units[@]}"
systemctl --root="$root" mask ssh.service ssh.socket sshd.service 2>/dev/null || true

# Network on first boot (docs/appliance.md): systemd-networkd with DHCP and a link-local fallback on the
# Ethernet ports, systemd-resolved for the names DHCP hands out, the baseline firewall above before either.
install -m 0644 "$release/systemd/network/90-portcullis-management.network" "$root/etc/systemd/network/"
systemctl --root="$root" enable systemd-networkd.service systemd-resolved.service
# Nothing waits for a network that may never come (no DHCP server on the bench): the units order after
# network.target only.
systemctl --root="$root" disable systemd-networkd-wait-online.service 2>/dev/null || true

# Time: systemd-timesyncd with the site's servers (or DHCP's, or Debian's pool); its clock file is the floor.
install -d -m 0755 "$root/etc/systemd/timesyncd.conf.d"
install -m 0644 "$release/systemd/timesyncd.conf.d/50-portcullis.conf" "$root/etc/systemd/timesyncd.conf.d/"
systemctl --root="$root" enable systemd-timesyncd.service
# The console's NTP servers: root's link to the file the gateway may write (portcullis-tmpfiles.conf makes it).
ln -sfn /var/lib/portcullis-time/60-portcullis-ui.conf "$root/etc/systemd/timesyncd.conf.d/60-portcullis-ui.conf"

# What the console may ask systemd for as the gateway's user (restart its units, reboot, time zone, NTP) and
# nothing else: polkitd's JavaScript rule (systemd/polkit/50-portcullis.rules).
install -D -m 0644 "$release/systemd/polkit/50-portcullis.rules" "$root/etc/polkit-1/rules.d/50-portcullis.rules"

# The TPM: every Portcullis unit uses the kernel's resource manager (/dev/tpmrm0, group tss), so the
# user-space broker is not needed; masked, because it waits 90 s for /dev/tpm0 on a machine without a TPM.
systemctl --root="$root" mask tpm2-abrmd.service

# Kernel updates reach the ESP on the PC image (the hook does nothing where there is no /boot/efi/loader).
for d in kernel/postinst.d kernel/postrm.d initramfs/post-update.d; do
  install -d -m 0755 "$root/etc/$d"
  install -m 0755 "$release/systemd/kernel/zz-portcullis-esp" "$root/etc/$d/zz-portcullis-esp"
done

# No password on any account (ETSI EN 303 645 5.1): root is locked; the UI's first account needs the one-time
# setup code the gateway prints on the console at first boot (or the pairing button).
in_root passwd --lock root >/dev/null
# The console's text is made at run time (/run/issue, by portcullis-console): the UI's address and the setup
# code, or why the gateway is not running. agetty reads /run/issue only when there is no /etc/issue.
rm -f "$root/etc/issue"
echo portcullis > "$root/etc/hostname"

# SBOM: the Debian packages of this root file system and the npm packages of the release, CycloneDX 1.5.
install -d -m 0755 "$root/usr/share/doc/portcullis"
in_root dpkg-query -W -f '${Package}\t${Version}\t${Architecture}\n' > "$root/tmp/dpkg.tsv"
node "$here/sbom.mjs" "$root/tmp/dpkg.tsv" "$npmsbom" "$version" > "$root/usr/share/doc/portcullis/sbom.cdx.json"
rm -f "$root/tmp/dpkg.tsv"
# Reproducibility: no machine identity or caches baked in.
: > "$root/etc/machine-id"
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*
