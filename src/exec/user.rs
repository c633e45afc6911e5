//! USER resolution against the image's own `/etc/passwd` and `/etc/group`.
//!
//! The files are read through `pathrs` (resolved inside the rootfs; a symlink can never
//! lead to a host file), must be regular files, and are read with a size cap (SECURITY D7:
//! a FIFO, `/dev/zero` or a huge file gives a clean error instead of a hang). Semantics
//! follow runc's `GetExecUser`: a name or uid matches a passwd entry; a bare user uses the
//! entry's primary gid and gets its `/etc/group` memberships as supplementary groups; an
//! explicit group replaces the gid and adds no supplementary groups; a numeric uid with no
//! passwd entry runs with gid 0. The primary gid is always in the supplementary list.

use std::io::Read;
use std::path::Path;

use pathrs::error::ErrorKind;
use pathrs::flags::OpenFlags;
use pathrs::Root;

use super::error::ExecError;

/// Larger passwd/group files are rejected (real ones are a few KiB).
const MAX_DB_FILE: u64 = 4 * 1024 * 1024;

/// Resolves a USER value (`name`, `uid`, `name:group`, `uid:gid`) inside `rootfs`.
/// Returns `(uid, gid, supplementary gids)`.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<(u32, u32, Vec<u32>), ExecError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(ExecError::InvalidSpec(format!("invalid USER {user:?}")));
    }
    let root = open_root(rootfs)?;
    let passwd = read_db(&root, rootfs, "/etc/passwd")?.unwrap_or_default();
    let uid_arg = parse_id(user_part);

    let entry = passwd
        .lines()
        .filter_map(PasswdEntry::parse)
        .find(|e| e.name == user_part || Some(e.uid) == uid_arg);
    let (uid, mut gid, name) = match (entry, uid_arg) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name.to_string())),
        (None, Some(uid)) => (uid, 0, None),
        (None, None) => {
            return Err(ExecError::UserNotFound {
                user: user_part.to_string(),
                rootfs: rootfs.to_path_buf(),
            })
        }
    };

    let mut supplementary = Vec::new();
    match group_part {
        Some(group) => gid = lookup_group(&root, rootfs, group)?,
        None => {
            if let Some(name) = name {
                let groups = read_db(&root, rootfs, "/etc/group")?.unwrap_or_default();
                for g in groups.lines().filter_map(GroupEntry::parse) {
                    if g.members.split(',').any(|m| m == name) && !supplementary.contains(&g.gid) {
                        supplementary.push(g.gid);
                    }
                }
            }
        }
    }
    // The primary gid is always one of the process's groups (containerd's fix for
    // CVE-2023-25173, which BuildKit follows): `id` shows it first in `groups=`.
    let mut groups = vec![gid];
    for g in supplementary {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok((uid, gid, groups))
}

/// Resolves a `COPY/ADD --chown=user[:group]` spec inside `rootfs` to `(uid, gid)`, with BuildKit's
/// rules (`solver/llbsolver/file/user.go`), which differ from USER's: a numeric user is taken as is
/// (no passwd lookup) and alone gives gid = uid; a named user alone gives its primary gid; a group is
/// a name from /etc/group or a number.
pub fn resolve_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), ExecError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user_part.is_empty() || group_part == Some("") {
        return Err(ExecError::InvalidSpec(format!("invalid --chown {spec:?}")));
    }
    let root = open_root(rootfs)?;
    let (uid, primary_gid) = match parse_id(user_part) {
        Some(uid) => (uid, uid),
        None => {
            let passwd = read_db(&root, rootfs, "/etc/passwd")?.unwrap_or_default();
            passwd
                .lines()
                .filter_map(PasswdEntry::parse)
                .find(|e| e.name == user_part)
                .map(|e| (e.uid, e.gid))
                .ok_or_else(|| ExecError::UserNotFound {
                    user: user_part.to_string(),
                    rootfs: rootfs.to_path_buf(),
                })?
        }
    };
    let gid = match group_part {
        None => primary_gid,
        Some(g) => lookup_group(&root, rootfs, g)?,
    };
    Ok((uid, gid))
}

/// Resolves a group name or numeric gid inside `rootfs` (for `COPY --chown=user:group`).
pub fn resolve_group(rootfs: &Path, group: &str) -> Result<u32, ExecError> {
    let root = open_root(rootfs)?;
    lookup_group(&root, rootfs, group)
}

fn lookup_group(root: &Root, rootfs: &Path, group: &str) -> Result<u32, ExecError> {
    let gid_arg = parse_id(group);
    let groups = read_db(root, rootfs, "/etc/group")?.unwrap_or_default();
    let found = groups
        .lines()
        .filter_map(GroupEntry::parse)
        .find(|g| g.name == group || Some(g.gid) == gid_arg);
    match (found, gid_arg) {
        (Some(g), _) => Ok(g.gid),
        (None, Some(gid)) => Ok(gid),
        (None, None) => Err(ExecError::GroupNotFound {
            group: group.to_string(),
            rootfs: rootfs.to_path_buf(),
        }),
    }
}

fn parse_id(s: &str) -> Option<u32> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn open_root(rootfs: &Path) -> Result<Root, ExecError> {
    Root::open(rootfs).map_err(|e| ExecError::path(rootfs, e))
}

/// Reads a small regular file inside the root; `None` when it does not exist.
fn read_db(root: &Root, rootfs: &Path, path: &str) -> Result<Option<String>, ExecError> {
    let shown = rootfs.join(path.trim_start_matches('/'));
    // O_NONBLOCK: opening a FIFO planted at this path must not block (D7).
    let flags = OpenFlags::O_RDONLY | OpenFlags::O_NONBLOCK | OpenFlags::O_CLOEXEC;
    let file = match root.open_subpath(path, flags) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::OsError(Some(libc::ENOENT)) => return Ok(None),
        Err(e) => return Err(ExecError::path(shown, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| ExecError::io(format!("stat {}", shown.display()), e))?;
    if !meta.file_type().is_file() {
        return Err(ExecError::BadFile {
            path: shown,
            reason: "not a regular file".into(),
        });
    }
    let mut buf = Vec::new();
    file.take(MAX_DB_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ExecError::io(format!("read {}", shown.display()), e))?;
    if buf.len() as u64 > MAX_DB_FILE {
        return Err(ExecError::BadFile {
            path: shown,
            reason: format!("larger than {MAX_DB_FILE} bytes"),
        });
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

impl<'a> PasswdEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let uid = f.next()?.trim().parse().ok()?;
        let gid = f.next()?.trim().parse().ok()?;
        Some(PasswdEntry { name, uid, gid })
    }
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: &'a str,
}

impl<'a> GroupEntry<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let gid = f.next()?.trim().parse().ok()?;
        let members = f.next().unwrap_or("").trim();
        Some(GroupEntry { name, gid, members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app,other\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn chown_numeric_user_alone_gives_gid_uid_and_names_use_primary_gid() {
        let r = rootfs();
        assert_eq!(resolve_chown(r.path(), "app").unwrap(), (1000, 1000));
        assert_eq!(resolve_chown(r.path(), "app:staff").unwrap(), (1000, 50));
        assert_eq!(resolve_chown(r.path(), "1500").unwrap(), (1500, 1500));
        // A numeric user is not looked up (BuildKit ByID), unlike USER.
        assert_eq!(resolve_chown(r.path(), "65534").unwrap(), (65534, 65534));
        assert_eq!(resolve_chown(r.path(), "1500:7").unwrap(), (1500, 7));
        assert_eq!(resolve_chown(r.path(), "0:staff").unwrap(), (0, 50));
    }

    #[test]
    fn chown_unknown_names_and_empty_parts_are_errors() {
        let r = rootfs();
        let e = resolve_chown(r.path(), "ghost").unwrap_err().to_string();
        assert!(e.contains("ghost") && e.contains("/etc/passwd"), "{e}");
        let e = resolve_chown(r.path(), "app:ghosts")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ghosts"), "{e}");
        assert!(resolve_chown(r.path(), ":1").is_err());
        assert!(resolve_chown(r.path(), "1:").is_err());
    }

    #[test]
    fn chown_passwd_symlink_is_resolved_inside_root() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir_all(r.path().join("etc")).unwrap();
        fs::create_dir_all(r.path().join("data")).unwrap();
        fs::write(r.path().join("data/pw"), "u:x:42:43::/:/bin/sh\n").unwrap();
        // An absolute link means <root>/data/pw, never the host's file.
        std::os::unix::fs::symlink("/data/pw", r.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_chown(r.path(), "u").unwrap(), (42, 43));
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow-not-in-root", r.path().join("etc/passwd")).unwrap();
        assert!(resolve_chown(r.path(), "root").is_err());
    }

    #[test]
    fn name_uses_primary_gid_and_memberships() {
        let r = rootfs();
        assert_eq!(
            resolve_user(r.path(), "app").unwrap(),
            (1000, 1000, vec![1000, 50, 10])
        );
        assert_eq!(
            resolve_user(r.path(), "nobody").unwrap(),
            (65534, 65534, vec![65534])
        );
    }

    #[test]
    fn numeric_uid_matches_entry_or_defaults_gid_0() {
        let r = rootfs();
        assert_eq!(
            resolve_user(r.path(), "1000").unwrap(),
            (1000, 1000, vec![1000, 50, 10])
        );
        assert_eq!(resolve_user(r.path(), "4242").unwrap(), (4242, 0, vec![0]));
    }

    #[test]
    fn explicit_group_replaces_gid_and_is_the_only_group() {
        let r = rootfs();
        assert_eq!(
            resolve_user(r.path(), "app:staff").unwrap(),
            (1000, 50, vec![50])
        );
        assert_eq!(
            resolve_user(r.path(), "1000:50").unwrap(),
            (1000, 50, vec![50])
        );
        assert_eq!(
            resolve_user(r.path(), "4242:777").unwrap(),
            (4242, 777, vec![777])
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let r = rootfs();
        let e = resolve_user(r.path(), "ghost").unwrap_err();
        assert!(
            matches!(e, ExecError::UserNotFound { ref user, .. } if user == "ghost"),
            "{e}"
        );
        assert!(e.to_string().contains("ghost"));
        let e = resolve_user(r.path(), "app:ghosts").unwrap_err();
        assert!(e.to_string().contains("ghosts"), "{e}");
        assert!(resolve_user(r.path(), "").is_err());
        assert!(resolve_user(r.path(), "app:").is_err());
    }

    #[test]
    fn numeric_ids_work_without_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve_user(dir.path(), "1000:50").unwrap(),
            (1000, 50, vec![50])
        );
        assert_eq!(resolve_user(dir.path(), "0").unwrap(), (0, 0, vec![0]));
        assert!(resolve_user(dir.path(), "root").is_err());
        assert_eq!(resolve_group(dir.path(), "12").unwrap(), 12);
    }

    #[test]
    fn resolve_group_by_name() {
        let r = rootfs();
        assert_eq!(resolve_group(r.path(), "staff").unwrap(), 50);
        assert!(resolve_group(r.path(), "nope").is_err());
    }

    #[test]
    fn d7_passwd_symlink_to_host_file_stays_in_root() {
        let host = tempfile::tempdir().unwrap();
        let host_passwd = host.path().join("passwd");
        fs::write(&host_passwd, "evil:x:0:0::/:/bin/sh\n").unwrap();
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&host_passwd, r.path().join("etc/passwd")).unwrap();
        // The absolute symlink resolves inside the rootfs, where it does not exist.
        assert!(matches!(
            resolve_user(r.path(), "evil").unwrap_err(),
            ExecError::UserNotFound { .. }
        ));
    }

    #[test]
    fn d7_passwd_fifo_or_device_is_rejected_without_hanging() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &r.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = resolve_user(r.path(), "app").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");

        let r2 = tempfile::tempdir().unwrap();
        fs::create_dir_all(r2.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", r2.path().join("etc/group")).unwrap();
        fs::create_dir_all(r2.path().join("dev")).unwrap();
        // Inside the root /dev/zero does not exist: treated as a missing file.
        assert_eq!(resolve_group(r2.path(), "5").unwrap(), 5);
    }

    #[test]
    fn d7_huge_passwd_is_rejected() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        let f = fs::File::create(r.path().join("etc/passwd")).unwrap();
        f.set_len(MAX_DB_FILE + 10).unwrap();
        let e = resolve_user(r.path(), "app").unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn d7_symlink_loop_is_a_clean_error() {
        let r = tempfile::tempdir().unwrap();
        fs::create_dir(r.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/loop2", r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", r.path().join("etc/loop2")).unwrap();
        assert!(resolve_user(r.path(), "app").is_err());
    }
}
