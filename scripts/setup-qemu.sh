#!/usr/bin/env bash
# Installs the two real QEMU peers that qmigrate is tested against:
#   QEMU 7.2  - Debian bookworm's qemu-system-x86, installed system-wide through apt;
#   QEMU 10.0 - bookworm-backports' qemu-system-{x86,common,data}, fetched with
#               `apt-get download` and unpacked with `dpkg -x` into .qemu/10.0 so that
#               both versions live side by side;
#   and QEMU 10.0's scripts/analyze-migration.py, from that version's Debian source
#               tarball, into .qemu/10.0-src/scripts (the tests compare qmigrate analyze with it).
# The Debian mirror is read from this machine's own apt sources, so no host name is
# written here. Idempotent: a second run only checks and prints the paths.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/.qemu"
want10='1:10.0.'
sudo=''
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup-qemu: needs root (or sudo) for apt-get" >&2; exit 1; }
  sudo='sudo'
fi
export DEBIAN_FRONTEND=noninteractive

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$codename" ] || { echo "setup-qemu: cannot tell the Debian release from /etc/os-release" >&2; exit 1; }

# The first apt source, one-line or deb822, that serves "$codename" from Debian's main archive.
find_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$codename" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
      if ($(i+1)==s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$codename" 'BEGIN{RS=""; FS="\n"} {
      uris=""; suites=""; types="";
      for (i=1;i<=NF;i++) {
        if ($i ~ /^URIs:/) { uris=$i; sub(/^URIs:[ \t]*/,"",uris) }
        if ($i ~ /^Suites:/) { suites=" " $i " "; sub(/^ Suites:/,"",suites) }
        if ($i ~ /^Types:/) { types=$i }
      }
      if (types ~ /deb( |$)/ && suites ~ (" " s " ")) { split(uris,u," "); print u[1]; exit }
    }' "$f"
  done
}
mirror=$(find_mirror | head -n 1)
[ -n "$mirror" ] || { echo "setup-qemu: no apt source for '$codename' found in /etc/apt" >&2; exit 1; }

installed_version() { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3=="installed"{print $4}'; }

# --- QEMU 7.2, the distribution's own -------------------------------------------------
v72=$(installed_version qemu-system-x86 || true)
if [[ "$v72" != 1:7.2* ]]; then
  echo "setup-qemu: installing qemu-system-x86 from $codename"
  if ! apt-cache show qemu-system-x86 >/dev/null 2>&1; then $sudo apt-get update -qq; fi
  $sudo apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
fi

# --- QEMU 10.0 from backports, unpacked privately --------------------------------------
bin10="$dest/10.0/usr/bin/qemu-system-x86_64"
if [ ! -x "$bin10" ]; then
  apt="$dest/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dest/debs"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  echo "deb [signed-by=$keyring] $mirror $codename-backports main" > "$apt/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/none"
           -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  echo "setup-qemu: fetching QEMU 10.0 from $codename-backports"
  apt-get "${aptopts[@]}" update -qq
  ver=$(apt-cache "${aptopts[@]}" show qemu-system-x86 | awk '/^Version:/{print $2}' | grep -F "$want10" | head -n 1)
  [ -n "$ver" ] || { echo "setup-qemu: $codename-backports has no qemu-system-x86 $want10*" >&2; exit 1; }
  (cd "$dest/debs" && rm -f ./*.deb && apt-get "${aptopts[@]}" download -qq \
      "qemu-system-x86=$ver" "qemu-system-common=$ver" "qemu-system-data=$ver")
  # Shared libraries it links against come from the release itself.
  deps=$(dpkg-deb -f "$dest"/debs/qemu-system-x86_*.deb Depends "$dest"/debs/qemu-system-common_*.deb Depends \
    | tr ',' '\n' | sed -e 's/^Depends: //' -e 's/^ *//' -e 's/ *(.*//' -e 's/ *|.*//' \
    | grep -Ev '^(qemu-|seabios|ipxe-qemu|$)' | sort -u)
  missing=()
  for d in $deps; do [ -n "$(installed_version "$d")" ] || missing+=("$d"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-qemu: installing libraries for QEMU 10.0: ${missing[*]}"
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  rm -rf "$dest/10.0.tmp" && mkdir -p "$dest/10.0.tmp"
  for deb in "$dest"/debs/*.deb; do dpkg -x "$deb" "$dest/10.0.tmp"; done
  rm -rf "$dest/10.0" && mv "$dest/10.0.tmp" "$dest/10.0"
fi

# --- QEMU 10.0's scripts/analyze-migration.py, from the same version's Debian source -----
# No binary package ships it; `qmigrate analyze` is compared with it (test/migration/
# analyze-script-qemu.test.ts). Only that one file is kept, in .qemu/10.0-src/scripts/.
script10="$dest/10.0-src/scripts/analyze-migration.py"
if [ ! -f "$script10" ]; then
  apt="$dest/apt"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dest/src"
  line="deb-src [signed-by=$keyring] $mirror $codename-backports main"
  grep -qxF "$line" "$apt/sources.list" 2>/dev/null || echo "$line" >> "$apt/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/none"
           -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  echo "setup-qemu: fetching QEMU 10.0's source for scripts/analyze-migration.py"
  apt-get "${aptopts[@]}" update -qq
  srcver=$(apt-cache "${aptopts[@]}" showsrc qemu | awk '/^Version:/{print $2}' | grep -F "$want10" | head -n 1)
  [ -n "$srcver" ] || { echo "setup-qemu: $codename-backports has no qemu source $want10*" >&2; exit 1; }
  # The stanza of that version (showsrc lists every version apt knows, blank-line separated).
  stanza=$(apt-cache "${aptopts[@]}" showsrc qemu | awk -v v="$srcver" 'BEGIN{RS=""} index($0, "\nVersion: " v "\n") {print; exit}')
  # The orig tarball and its sha256, from the Sources index apt has verified.
  read -r sum orig < <(echo "$stanza" \
    | awk '/^Checksums-Sha256:/{f=1; next} f && /^ / && $3 ~ /\.orig\.tar\./ {print $1, $3; exit} f && !/^ /{f=0}') || true
  [ -n "${orig:-}" ] || { echo "setup-qemu: no orig tarball listed for qemu $srcver" >&2; exit 1; }
  # apt-get source fetches it and checks its sha256; on this mirror the .dsc and the
  # .debian.tar.xz may be missing (404), which fails the command but not the tarball.
  (cd "$dest/src" && apt-get "${aptopts[@]}" source --download-only -qq "qemu=$srcver" >/dev/null 2>&1 || true)
  if [ ! -f "$dest/src/$orig" ]; then
    dir=$(echo "$stanza" | awk '/^Directory:/{print $2; exit}')
    curl -fsSL -o "$dest/src/$orig" "$mirror/$dir/$orig"
  fi
  echo "$sum  $dest/src/$orig" | sha256sum -c --quiet - \
    || { rm -f "$dest/src/$orig"; echo "setup-qemu: $orig does not match its sha256" >&2; exit 1; }
  rm -rf "$dest/10.0-src.tmp" && mkdir -p "$dest/10.0-src.tmp"
  tar --no-same-owner -xJf "$dest/src/$orig" -C "$dest/10.0-src.tmp" --strip-components=1 --wildcards '*/scripts/analyze-migration.py'
  rm -rf "$dest/10.0-src" && mv "$dest/10.0-src.tmp" "$dest/10.0-src"
  rm -rf "$dest/src"
fi

# --- check and report ----------------------------------------------------------------
bin72=/usr/bin/qemu-system-x86_64
moddir10="$dest/10.0/usr/lib/x86_64-linux-gnu/qemu"
if ldd "$bin10" | grep -q 'not found'; then
  echo "setup-qemu: QEMU 10.0 misses libraries:" >&2; ldd "$bin10" | grep 'not found' >&2; exit 1
fi
v7=$("$bin72" --version | head -n 1)
v10=$(QEMU_MODULE_DIR="$moddir10" "$bin10" -L "$dest/10.0/usr/share/qemu" --version | head -n 1)
echo "QEMU_7=$bin72    # $v7"
echo "QEMU_10=$bin10    # $v10"
echo "ANALYZE_MIGRATION_10=$script10"
