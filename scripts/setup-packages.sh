#!/usr/bin/env bash
# Installs the Debian packages the tests need besides QEMU (scripts/setup-qemu.sh), from this
# machine's own apt sources, so no host name is written here:
#   nasm - assembles the boot-sector guest of test/fixtures/guest/bootblock.asm;
#   openssl - makes the TLS tests' CA and certificates at test time (test/helpers/tls-certs.ts);
#   iproute2 - `ip netns`/veth for the two-host tests (test/helpers/netns.ts);
#   chromium - opens the --report pages headless to check their charts render (test/helpers/chromium.ts).
# Idempotent: packages already installed are left alone, and apt's lists are only refreshed
# when a missing package is unknown to them.
set -euo pipefail

packages=(nasm openssl iproute2 chromium)

sudo=''
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-packages: needs root (or sudo) for apt-get" >&2; exit 1; }
  sudo='sudo'
fi
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q ' installed$'; }

missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then $sudo apt-get update -qq; break; fi
  done
  echo "setup-packages: installing ${missing[*]}"
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${packages[@]}"; do
  installed "$p" || { echo "setup-packages: $p is still not installed" >&2; exit 1; }
  echo "$p $(dpkg-query -W -f='${Version}' "$p")"
done
