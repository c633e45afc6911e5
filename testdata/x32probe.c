/* Calls syscalls that RUN's seccomp filter refuses, once by their x86_64 numbers and once with
 * __X32_SYSCALL_BIT set, and prints "<name> <rc> <errno>" per call (tests/seccomp_x32.rs). With
 * "host" as argument it only reports whether this kernel runs x32 calls at all. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define X32 0x40000000L

static void probe(const char *name, long nr, long a0, long a1, long a2) {
    errno = 0;
    long rc = syscall(nr, a0, a1, a2, 0L, 0L);
    printf("%s %ld %s\n", name, rc, rc == -1 ? strerrorname_np(errno) : "OK");
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "host") == 0) {
        probe("x32-getpid", X32 | SYS_getpid, 0, 0, 0);
        return 0;
    }
    /* CLONE_NEWUSER needs no capability, KEYCTL_GET_KEYRING_ID(session, create) neither. */
    probe("unshare", SYS_unshare, 0x10000000L, 0, 0);
    probe("x32-unshare", X32 | SYS_unshare, 0x10000000L, 0, 0);
    probe("keyctl", SYS_keyctl, 0, -3L, 1);
    probe("x32-keyctl", X32 | SYS_keyctl, 0, -3L, 1);
    probe("x32-mount", X32 | SYS_mount, (long)"none", (long)"/mnt", (long)"tmpfs");
    probe("x32-getpid", X32 | SYS_getpid, 0, 0, 0);
    return 0;
}
