#!/usr/bin/env bash
# Installs the Debian packages listed in debian-packages.txt (or the ones named as arguments) that are not
# installed yet. Needs root (apt-get); without root it names what is missing and fails, rather than letting
# tests or builds fail later for an obscure reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
missing=()
if (($#)); then wanted=("$@"); else mapfile -t wanted < <(grep -v '^\s*\(#\|$\)' "$here/debian-packages.txt"); fi
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if (( ${#missing[@]} == 0 )); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "missing Debian packages: ${missing[*]} (run as root, or: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Two of these may run at once (scripts/test.sh installs the suite's packages while the background image build
# checks its own): the second waits for dpkg's lock instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
