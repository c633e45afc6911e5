//! RUN cgroups in a user namespace (rootless, docs/rootless.md "RUN in rootless mode"): a
//! delegated cgroup v2 subtree when there is one, else no cgroup and one note.

use super::cgroup::{is_v2, RunCgroup};
use super::cgroup_limits::Resources;
use super::error::ExecError;

/// In a user namespace only a cgroup v2 subtree delegated to the user (systemd's
/// `user@UID.service`, files owned by the user) is writable. Without one, RUN goes without
/// limits and rbuild says so once (docs/rootless.md "Limits"); root keeps failing hard.
pub(crate) fn create(resources: &Resources) -> RunCgroup {
    let mut cg = RunCgroup {
        leaves: Vec::new(),
        resources: resources.clone(),
    };
    let res = if is_v2() {
        cg.create_v2()
    } else {
        Err(ExecError::Cgroup("cgroup v1 cannot be delegated".into()))
    };
    match res {
        Ok(()) => cg,
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("{}", rootless_note(&e)));
            let resources = cg.resources.clone();
            drop(cg);
            RunCgroup {
                leaves: Vec::new(),
                resources,
            }
        }
    }
}

fn rootless_note(e: &ExecError) -> String {
    format!("rbuild: note: no delegated cgroup v2 subtree ({e}): RUN resource limits are not enforced (docs/rootless.md)")
}

/// In a user namespace: `None` when RUNs get a delegated cgroup (limits enforced), else the
/// one-line note a build prints. Tries one leaf and removes it again.
pub fn rootless_note_if_unlimited() -> Option<String> {
    let mut cg = RunCgroup {
        leaves: Vec::new(),
        resources: Resources::default(),
    };
    let res = if is_v2() {
        cg.create_v2()
    } else {
        Err(ExecError::Cgroup("cgroup v1 cannot be delegated".into()))
    };
    match res {
        Ok(()) => cg.remove().err().map(|e| rootless_note(&e)),
        Err(e) => Some(rootless_note(&e)),
    }
}
