#!/bin/sh
# Builds a minimal rootfs from Debian's busybox-static package: the test rootfs for RUN and COPY tests.
# Usage: make-busybox-rootfs.sh DEST_DIR   (DEST_DIR must not exist or be empty)
# Foreign rootfs (tests/platforms.rs): BUSYBOX=<extracted arm64 busybox> BUSYBOX_LIST=/bin/busybox.
# Needs /bin/busybox from busybox-static (apt-get install busybox-static); a dynamically linked busybox
# would not run inside the rootfs.
set -eu
dest=${1:?usage: make-busybox-rootfs.sh DEST_DIR}
bb=${BUSYBOX:-/bin/busybox}
# The applet list comes from a busybox this host runs (a foreign BUSYBOX, e.g. arm64, may not
# run here): BUSYBOX_LIST, else BUSYBOX itself.
list_bb=${BUSYBOX_LIST:-$bb}
if ! file_out=$(od -An -c -N4 "$bb" 2>/dev/null) ; then echo "no $bb: apt-get install busybox-static" >&2; exit 1; fi
if "$bb" 2>&1 | head -1 | grep -q 'multi-call' && ldd "$bb" >/dev/null 2>&1; then
  echo "$bb is dynamically linked: install busybox-static" >&2; exit 1
fi
mkdir -p "$dest"
cd "$dest"
mkdir -p bin sbin usr/bin usr/sbin etc root tmp proc sys dev var/tmp home
chmod 1777 tmp var/tmp
chmod 0700 root
cp "$bb" bin/busybox
chmod 0755 bin/busybox
for applet in $("$list_bb" --list-full); do
  case "$applet" in bin/busybox) continue ;; esac
  [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
done
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app user:/home/app:/bin/sh
P
cat > etc/group <<'G'
root:x:0:
daemon:x:1:
bin:x:2:
staff:x:50:app
nogroup:x:65534:
app:x:1000:
G
mkdir -p home/app && chown 1000:1000 home/app
echo "busybox-static test rootfs" > etc/motd
# Fixed mtimes so tars of this tree are reproducible.
find . -exec touch -h -d @1700000000 {} +
