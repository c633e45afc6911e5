//! `rbuild info`: how rbuild runs on this machine (docs/rootless.md).

use crate::rootless::Identity;
use crate::snapshot::Driver;
use std::path::Path;

pub fn print(root: &Path, who: Option<&Identity>, in_userns: bool, driver: Driver) {
    println!("Root: {}", root.display());
    match who {
        Some(me) => {
            println!(
                "Rootless: yes (user {} uid {} gid {})",
                me.user, me.uid, me.gid
            );
            println!(
                " Subordinate ids: uid {}:{} gid {}:{}",
                me.subuid.start, me.subuid.count, me.subgid.start, me.subgid.count
            );
        }
        None if in_userns => println!("Rootless: yes (started inside a user namespace)"),
        None => println!("Rootless: no"),
    }
    if in_userns {
        for (name, file) in [
            ("UID map", "/proc/self/uid_map"),
            ("GID map", "/proc/self/gid_map"),
        ] {
            let map = std::fs::read_to_string(file).unwrap_or_default();
            let rows: Vec<String> = map
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            println!(" {name}: {}", rows.join(", "));
        }
    }
    println!("Snapshotter: {}", driver.name());
    let cgroup = if in_userns {
        crate::exec::rootless_cgroup_note()
            .map(|n| n.trim_start_matches("rbuild: note: ").to_string())
            .unwrap_or_else(|| "delegated cgroup v2 subtree".into())
    } else {
        "cgroup (limits enforced)".into()
    };
    println!("Cgroups: {cgroup}");
}
