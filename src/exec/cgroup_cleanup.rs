//! Removing RUN cgroups: after each step, on cancel (both through `RunCgroup`), and the leaves
//! of rbuild processes that are gone (`kill -9`), swept once per parent by the next rbuild.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::error::ExecError;

/// How often (at most) removal retries a leaf that still has dying tasks, 10 ms apart.
const REMOVE_TRIES: u32 = 500;

/// Kills what is left in a leaf and removes it; gone already is fine.
pub(crate) fn remove_leaf(dir: &Path) -> Result<(), ExecError> {
    for _ in 0..REMOVE_TRIES {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                kill_all(dir);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(ExecError::Cgroup(format!(
                    "remove cgroup {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Err(ExecError::Cgroup(format!(
        "remove cgroup {}: its processes did not exit",
        dir.display()
    )))
}

fn kill_all(dir: &Path) {
    let kill_file = dir.join("cgroup.kill");
    if kill_file.exists() && std::fs::write(&kill_file, "1").is_ok() {
        return;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if pid as u32 != std::process::id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Removes, once per process and parent, the leaves of rbuild processes that are gone.
pub(crate) fn sweep_once(parent: &Path) {
    static SWEPT: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let set = SWEPT.get_or_init(|| Mutex::new(HashSet::new()));
    let first = set
        .lock()
        .map(|mut s| s.insert(parent.to_path_buf()))
        .unwrap_or(false);
    if first {
        sweep(parent);
    }
}

/// Removes the `rbuild-<pid>-*` leaves under `parent` whose pid is no longer running.
pub(crate) fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = stale_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = remove_leaf(&e.path());
        }
    }
}

/// The pid in a leaf name `rbuild-<pid>-<rest>`.
pub(crate) fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("rbuild-")?;
    let (pid, tail) = rest.split_once('-')?;
    (!tail.is_empty()).then(|| pid.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_carry_the_pid() {
        assert_eq!(stale_pid("rbuild-123-4"), Some(123));
        assert_eq!(stale_pid("rbuild-123-self"), Some(123));
        assert_eq!(stale_pid("rbuild-x-1"), None);
        assert_eq!(stale_pid("rbuild"), None);
        assert_eq!(stale_pid("rbuild-init"), None);
        assert_eq!(stale_pid("other-1-2"), None);
    }
}
