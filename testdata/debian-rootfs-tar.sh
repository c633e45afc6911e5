#!/bin/sh
# Prints the path of a cached `debootstrap --variant=minbase bookworm` rootfs tar, making it once
# (tests/build_network.rs; needs root, debootstrap and Debian's mirror). The cache lives under
# /var/tmp so repeated test runs are cheap; a failed run leaves no partial tar behind.
set -eu
cache=${RBUILD_DEBIAN_CACHE:-/var/tmp/rbuild-test-debian}
tar=$cache/bookworm-minbase.tar
if [ ! -s "$tar" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (scripts/setup)" >&2; exit 1; }
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  mkdir -p "$cache"
  tmp=$(mktemp -d "$cache/tmp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$tmp/log" 2>&1 ||
    { tail -5 "$tmp/log" >&2; exit 1; }
  tar --numeric-owner --sort=name -C "$tmp/root" -cf "$tmp/rootfs.tar" .
  mv "$tmp/rootfs.tar" "$tar"
fi
echo "$tar"
