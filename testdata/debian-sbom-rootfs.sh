#!/bin/sh
# Prints the path of a cached Debian bookworm rootfs DIRECTORY with a few packages installed by
# apt-get in a chroot (tests/sbom_debian.rs, scripts/sbom-compare). Built once from the minbase tar
# of testdata/debian-rootfs-tar.sh; needs root and Debian's mirror. The cache lives under
# /var/cache/rbuild-testdata so reruns are cheap; a failed run leaves no partial directory behind.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${RBUILD_TESTDATA_CACHE:-/var/cache/rbuild-testdata}
# Packages that exercise more than dpkg: python3-six brings dist-info/egg-info directories.
pkgs="hello jq python3-six"
dir=$cache/sbom-bookworm
if [ ! -s "$dir/.done" ]; then
  base=$("$here/debian-rootfs-tar.sh")
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/root"
  tar -C "$tmp/root" -xf "$base"
  cp /etc/resolv.conf "$tmp/root/etc/resolv.conf"
  # apt's sandbox user cannot be switched to without /proc in some setups; run the download as root.
  chroot "$tmp/root" sh -c "export DEBIAN_FRONTEND=noninteractive;
      apt-get -o APT::Sandbox::User=root update -q &&
      apt-get -o APT::Sandbox::User=root install -y -q --no-install-recommends $pkgs &&
      apt-get clean" >"$tmp/log" 2>&1 || { tail -20 "$tmp/log" >&2; exit 1; }
  rm -rf "$tmp/root/var/lib/apt/lists"/*
  echo "$pkgs" >"$tmp/root/.done"
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
fi
echo "$dir"
