//! `--chown=user[:group]` resolved against the destination image's `/etc/passwd` and `/etc/group`
//! (read inside the rootfs, symlinks followed in-root), with BuildKit's rules: a numeric user
//! alone gives gid = uid; a named user alone gives the user's primary gid.
//!
//! Temporary: the exec module will provide `exec::user::resolve_user`/`resolve_group`; the
//! integrator swaps the body of [`resolve_chown`] for them.

use super::error::ContextError;
use pathrs::flags::OpenFlags;
use pathrs::Root;
use std::io::Read;
use std::path::Path;

/// Cap on /etc/passwd and /etc/group reads: they are tiny, an image could make them huge.
const MAX_DB: u64 = 16 << 20;

/// Resolves a `--chown` spec to (uid, gid) using the rootfs at `rootfs`.
pub fn resolve_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), ContextError> {
    let bad = |reason: String| ContextError::Chown {
        spec: spec.to_string(),
        reason,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(bad("empty user".into()));
    }
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let passwd = read_db(rootfs, "/etc/passwd").map_err(bad)?;
            lookup(&passwd, user, 2)
                .map(|fields| (fields.0, fields.1))
                .ok_or_else(|| bad(format!("no user {user:?} in /etc/passwd")))?
        }
    };
    let gid = match group {
        None => primary_gid,
        Some("") => return Err(bad("empty group".into())),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read_db(rootfs, "/etc/group").map_err(bad)?;
                lookup(&groups, g, 2)
                    .map(|fields| fields.0)
                    .ok_or_else(|| bad(format!("no group {g:?} in /etc/group")))?
            }
        },
    };
    Ok((uid, gid))
}

fn read_db(rootfs: &Path, path: &str) -> Result<String, String> {
    let root = Root::open(rootfs).map_err(|e| format!("{}: {e}", rootfs.display()))?;
    let file = root
        .open_subpath(path, OpenFlags::O_RDONLY)
        .map_err(|e| format!("{path}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_DB)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(text)
}

/// Finds `name` in a colon-separated database and returns the numeric fields at `id_field` and
/// `id_field + 1` (uid/gid in passwd; gid in group, the second then unused).
fn lookup(db: &str, name: &str, id_field: usize) -> Option<(u32, u32)> {
    db.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| {
            let a = f.get(id_field)?.parse().ok()?;
            let b = f
                .get(id_field + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(a);
            Some((a, b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        t
    }

    #[test]
    fn resolves_names_and_ids() {
        let r = rootfs();
        assert_eq!(resolve_chown(r.path(), "app").unwrap(), (1001, 1002));
        assert_eq!(resolve_chown(r.path(), "app:staff").unwrap(), (1001, 50));
        assert_eq!(resolve_chown(r.path(), "1500").unwrap(), (1500, 1500));
        assert_eq!(resolve_chown(r.path(), "1500:7").unwrap(), (1500, 7));
        assert_eq!(resolve_chown(r.path(), "0:staff").unwrap(), (0, 50));
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = rootfs();
        let e = resolve_chown(r.path(), "nobody").unwrap_err().to_string();
        assert!(e.contains("nobody") && e.contains("/etc/passwd"), "{e}");
        let e = resolve_chown(r.path(), "app:wheel")
            .unwrap_err()
            .to_string();
        assert!(e.contains("wheel"), "{e}");
        assert!(resolve_chown(r.path(), ":1").is_err());
    }

    #[test]
    fn passwd_symlink_is_resolved_inside_root() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(r.path().join("etc")).unwrap();
        std::fs::create_dir_all(r.path().join("data")).unwrap();
        std::fs::write(r.path().join("data/pw"), "u:x:42:43::/:/bin/sh\n").unwrap();
        // An absolute link means <root>/data/pw, never the host's file.
        std::os::unix::fs::symlink("/data/pw", r.path().join("etc/passwd")).unwrap();
        assert_eq!(resolve_chown(r.path(), "u").unwrap(), (42, 43));
        std::fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/shadow-not-in-root", r.path().join("etc/passwd")).unwrap();
        assert!(resolve_chown(r.path(), "root").is_err());
    }
}
