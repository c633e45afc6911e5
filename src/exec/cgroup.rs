//! One cgroup per RUN: created by rbuild before the helper starts, joined by the helper before it
//! forks the container, read for limit events when the command fails, and removed when the step
//! ends (also on cancel). Leaves are named `rbuild-<pid>-<n>` after rbuild's pid, so the first RUN
//! of a later rbuild removes those a killed (`kill -9`) rbuild left behind.
//!
//! Where the leaves go (README.md "Resource limits"):
//! - cgroup v1 and hybrid hosts: in each v1 hierarchy used (pids, devices, and memory, cpu, cpuset
//!   when their flags are given), below rbuild's own cgroup of that hierarchy, so any limit on
//!   rbuild itself still covers its RUNs. The devices hierarchy gets Docker's device allowlist:
//!   a second layer next to the nodev mounts (see `devices`). A leaf in the unified (v2)
//!   hierarchy takes the BPF device filter (`cgroup_bpf`) as a third.
//! - cgroup v2: one leaf, with the BPF device filter. Controllers can only be enabled for a cgroup without processes of its
//!   own ("no internal processes"), so when rbuild is alone in its cgroup it moves itself into a
//!   leaf `rbuild-<pid>-self` next to the RUN leaves; otherwise the leaves go under `/rbuild`
//!   from the hierarchy root, as Docker's cgroupfs driver puts containers under `/docker`. In a
//!   cgroup namespace whose root holds processes, those move into a leaf `rbuild-init` first.
//! - `--cgroup-parent P`: under `P` from each hierarchy's root.
//!
//! Hand-written rather than `cgroups-rs`: what RUN needs is a few file writes, and that crate's
//! hierarchy model has neither the v2 self-move nor the stale-leaf sweep.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::cgroup_bpf::attach_device_filter;
use super::cgroup_cleanup::{remove_leaf, sweep_once};
use super::cgroup_limits::{human, Resources};
use super::error::ExecError;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Docker's default device allowlist for the v1 devices controller: mknod of anything (the node
/// may go into the layer), read/write only of these (null, zero, full, random, urandom, tty,
/// console, ptmx, pts/*).
const DEVICE_ALLOW: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The cgroups of one RUN. Dropping removes them (best effort); `remove` reports errors.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    pub(super) leaves: Vec<Leaf>,
    pub(super) resources: Resources,
}

#[derive(Debug)]
pub(super) struct Leaf {
    dir: PathBuf,
    /// `None` for the v2 leaf, else the v1 controller.
    v1: Option<&'static str>,
}

fn cg_err(path: &Path, what: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::Cgroup(format!("{what} {}: {e}", path.display()))
}

fn write(path: &Path, value: &str) -> Result<(), ExecError> {
    std::fs::write(path, value).map_err(|e| cg_err(path, &format!("write {value:?} to"), e))
}

fn read(path: &Path) -> Result<String, ExecError> {
    std::fs::read_to_string(path).map_err(|e| cg_err(path, "read", e))
}

/// The count after `key` in a flat keyed file (`memory.events`, `pids.events`, `oom_control`).
fn keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

// `f_type`'s integer type differs between architectures.
#[allow(clippy::unnecessary_cast)]
pub(super) fn is_v2() -> bool {
    rustix::fs::statfs(CGROUP_ROOT).is_ok_and(|s| s.f_type as i64 == CGROUP2_SUPER_MAGIC)
}

/// Mount point and mount root of the v1 hierarchy holding `controller`, from mountinfo.
fn v1_mount(controller: &str) -> Option<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (root, mount) = (l.get(3)?, l.get(4)?);
        let (fstype, opts) = (r.first()?, r.get(2)?);
        (*fstype == "cgroup" && opts.split(',').any(|o| o == controller))
            .then(|| (PathBuf::from(unescape(mount)), unescape(root)))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = b
            .get(i + 1..i + 4)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| u8::from_str_radix(c, 8).ok());
        if b[i] == b'\\' {
            if let Some(v) = code {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// rbuild's own cgroup path (from its hierarchy's root) for a v1 `controller`, or for v2 (`None`).
fn own_path(controller: Option<&str>) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (id, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = match controller {
            None => id == "0" && ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        hit.then(|| path.to_string())
    })
}

/// On a hybrid host: rbuild's own cgroup in the unified (v2) hierarchy, where RUN leaves get the
/// BPF device filter. `None` on a pure v1 host.
fn unified_parent() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mount = left.split(' ').nth(4)?;
        (right.split(' ').next()? == "cgroup2").then(|| PathBuf::from(unescape(mount)))
    })?;
    Some(under(&mount, &own_path(None)?))
}

/// The mount point of `ctrl`'s v1 hierarchy and the directory RUN leaves go in there.
fn v1_parent(ctrl: &str, r: &Resources) -> Option<(PathBuf, PathBuf)> {
    let (mount, mount_root) = v1_mount(ctrl)?;
    let parent = match &r.cgroup_parent {
        Some(p) => under(&mount, p),
        None => {
            let own = own_path(Some(ctrl)).unwrap_or_default();
            let rel = own.strip_prefix(mount_root.as_str()).unwrap_or(&own);
            under(&mount, rel)
        }
    };
    Some((mount, parent))
}

/// At the start of a build: removes the RUN cgroups that rbuild processes killed earlier
/// (`kill -9`) left where this build's RUNs would go. Best effort; creating a RUN's cgroup
/// sweeps its parent as well.
pub fn sweep_stale(r: &Resources) {
    if is_v2() {
        let mount = PathBuf::from(CGROUP_ROOT);
        let mut parents = vec![mount.join("rbuild")];
        match &r.cgroup_parent {
            Some(p) => parents = vec![under(&mount, p)],
            None => parents.push(under(&mount, &own_path(None).unwrap_or_default())),
        }
        parents.iter().for_each(|p| sweep_once(p));
    } else {
        for ctrl in ["pids", "devices", "memory", "cpu", "cpuset"] {
            if let Some((_, parent)) = v1_parent(ctrl, r) {
                sweep_once(&parent);
            }
        }
        if let Some(parent) = unified_parent() {
            sweep_once(&parent);
        }
    }
}

/// `base` joined with a cgroup path; `..` and `.` were refused by `Resources::validate`.
fn under(base: &Path, cgroup_path: &str) -> PathBuf {
    let mut p = base.to_path_buf();
    for c in cgroup_path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
    {
        p.push(c);
    }
    p
}

fn leaf_name() -> String {
    format!(
        "rbuild-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl RunCgroup {
    /// Creates this RUN's cgroups with `resources` written into them.
    pub(crate) fn create(resources: &Resources) -> Result<RunCgroup, ExecError> {
        let mut cg = RunCgroup {
            leaves: Vec::new(),
            resources: resources.clone(),
        };
        if is_v2() {
            cg.create_v2()?;
        } else {
            cg.create_v1()?;
        }
        Ok(cg)
    }

    /// The `cgroup.procs` files the helper writes its pid into.
    pub(crate) fn procs_files(&self) -> Vec<PathBuf> {
        self.leaves
            .iter()
            .map(|l| l.dir.join("cgroup.procs"))
            .collect()
    }

    fn create_v1(&mut self) -> Result<(), ExecError> {
        let r = self.resources.clone();
        let mut wanted = vec!["pids", "devices"];
        if r.memory.is_some() {
            wanted.push("memory");
        }
        if r.wants_cpu() {
            wanted.push("cpu");
        }
        if r.cpuset_cpus.is_some() {
            wanted.push("cpuset");
        }
        let name = leaf_name();
        for ctrl in wanted {
            let (mount, parent) = v1_parent(ctrl, &r).ok_or_else(|| {
                ExecError::Cgroup(format!(
                    "no cgroup v1 hierarchy with the {ctrl} controller is mounted"
                ))
            })?;
            make_chain(&mount, &parent, ctrl == "cpuset")?;
            sweep_once(&parent);
            let dir = parent.join(&name);
            make_dir(&dir, ctrl == "cpuset")?;
            self.leaves.push(Leaf {
                dir: dir.clone(),
                v1: Some(ctrl),
            });
            self.write_v1(ctrl, &dir)?;
        }
        // Hybrid host: the unified hierarchy takes the BPF device filter as well.
        if let Some(parent) = unified_parent() {
            sweep_once(&parent);
            let dir = parent.join(&name);
            if make_dir(&dir, false).is_ok() {
                self.leaves.push(Leaf {
                    dir: dir.clone(),
                    v1: Some("unified"),
                });
                let _ = attach_device_filter(&dir);
            }
        }
        Ok(())
    }

    fn write_v1(&self, ctrl: &str, dir: &Path) -> Result<(), ExecError> {
        let r = &self.resources;
        match ctrl {
            "pids" => {
                if let Some(n) = r.pids_limit.filter(|n| *n > 0) {
                    // +1: the helper that supervises the RUN sits in the cgroup as well.
                    write(&dir.join("pids.max"), &(n + 1).to_string())?;
                }
            }
            "devices" => {
                write(&dir.join("devices.deny"), "a")?;
                for rule in DEVICE_ALLOW {
                    // A parent that allows less makes the write fail: the leaf is then
                    // stricter than Docker's list, which is fine.
                    let _ = std::fs::write(dir.join("devices.allow"), rule);
                }
            }
            "memory" => {
                if let (Some(m), Some(total)) = (r.memory, r.memory_and_swap()) {
                    write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    // Absent without swap accounting; there is then no swap to limit either way.
                    if memsw.exists() {
                        let v = total.map_or("-1".to_string(), |t| t.to_string());
                        write(&memsw, &v)?;
                    }
                }
            }
            "cpu" => {
                if let Some(s) = r.cpu_shares {
                    write(&dir.join("cpu.shares"), &s.to_string())?;
                }
                if let Some(p) = r.cpu_period {
                    write(&dir.join("cpu.cfs_period_us"), &p.to_string())?;
                }
                if let Some(q) = r.cpu_quota {
                    write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
            }
            "cpuset" => {
                if let Some(c) = &r.cpuset_cpus {
                    write(&dir.join("cpuset.cpus"), c)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn create_v2(&mut self) -> Result<(), ExecError> {
        let r = self.resources.clone();
        let mount = PathBuf::from(CGROUP_ROOT);
        let mut ctrls = Vec::new();
        if r.pids_limit.is_some_and(|n| n > 0) {
            ctrls.push("pids");
        }
        if r.memory.is_some() {
            ctrls.push("memory");
        }
        if r.wants_cpu() {
            ctrls.push("cpu");
        }
        if r.cpuset_cpus.is_some() {
            ctrls.push("cpuset");
        }
        let parent = match &r.cgroup_parent {
            Some(p) => under(&mount, p),
            None => v2_default_parent(&mount)?,
        };
        // Every level from the root down to the parent hands the controllers on.
        let mut level = mount.clone();
        let rel = parent
            .strip_prefix(&mount)
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let mut levels = vec![level.clone()];
        for c in rel.components() {
            level.push(c);
            levels.push(level.clone());
        }
        for l in &levels {
            make_dir(l, false)?;
            enable_controllers(l, &ctrls, l == &mount)?;
        }
        sweep_once(&parent);
        let dir = parent.join(leaf_name());
        make_dir(&dir, false)?;
        self.leaves.push(Leaf {
            dir: dir.clone(),
            v1: None,
        });
        // Best effort: a parent's own device program may forbid another below it, and the
        // nodev mounts hold without it.
        let _ = attach_device_filter(&dir);
        if let Some(n) = r.pids_limit.filter(|n| *n > 0) {
            write(&dir.join("pids.max"), &(n + 1).to_string())?;
        }
        if let (Some(m), Some(total)) = (r.memory, r.memory_and_swap()) {
            write(&dir.join("memory.max"), &m.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                let v = total.map_or("max".to_string(), |t| t.saturating_sub(m).to_string());
                write(&swap, &v)?;
            }
        }
        if let Some(s) = r.cpu_shares {
            // runc's mapping of shares (2..262144) onto weights (1..10000).
            let weight = 1 + ((s - 2) * 9999) / 262_142;
            write(&dir.join("cpu.weight"), &weight.to_string())?;
        }
        if r.cpu_period.is_some() || r.cpu_quota.is_some() {
            let quota = match r.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let period = r.cpu_period.unwrap_or(100_000);
            write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(c) = &r.cpuset_cpus {
            write(&dir.join("cpuset.cpus"), c)?;
        }
        Ok(())
    }

    /// Which limit stopped the RUN, read from the kernel's event counters, as a sentence.
    pub(crate) fn exceeded(&self) -> Option<String> {
        let r = &self.resources;
        for leaf in &self.leaves {
            let (oom_file, pids_file) = match leaf.v1 {
                None => ("memory.events", "pids.events"),
                Some("memory") => ("memory.oom_control", ""),
                Some("pids") => ("", "pids.events"),
                Some(_) => continue,
            };
            if let Some(m) = r.memory.filter(|_| !oom_file.is_empty()) {
                if let Some(n) = keyed(&leaf.dir.join(oom_file), "oom_kill").filter(|n| *n > 0) {
                    return Some(format!(
                        "RUN exceeded its memory limit (--memory {}): the kernel's OOM killer \
                         stopped {n} process(es)",
                        human(m)
                    ));
                }
            }
            if let Some(p) = r.pids_limit.filter(|_| !pids_file.is_empty()) {
                if let Some(n) = keyed(&leaf.dir.join(pids_file), "max").filter(|n| *n > 0) {
                    return Some(format!(
                        "RUN hit its process limit (--pids-limit {p}): {n} fork(s) were refused"
                    ));
                }
            }
        }
        None
    }

    /// Removes the leaves, killing whatever is left in them first.
    pub(crate) fn remove(mut self) -> Result<(), ExecError> {
        let leaves = std::mem::take(&mut self.leaves);
        let mut first_err = None;
        for leaf in leaves.iter().rev() {
            if let Err(e) = remove_leaf(&leaf.dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        for leaf in self.leaves.iter().rev() {
            let _ = remove_leaf(&leaf.dir);
        }
    }
}

/// Helper side: moves the calling process into the RUN's cgroups (before it forks the container).
pub(crate) fn join(procs_files: &[PathBuf]) -> Result<(), ExecError> {
    let pid = std::process::id().to_string();
    procs_files.iter().try_for_each(|p| write(p, &pid))
}

fn make_dir(dir: &Path, cpuset: bool) -> Result<(), ExecError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(cg_err(dir, "create cgroup", e)),
    }
    if cpuset {
        // A new v1 cpuset is empty and takes no tasks until it has CPUs and memory nodes.
        // Checked for existing ones too: a parallel RUN may have made it a moment ago.
        if let Some(parent) = dir.parent() {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if read(&dir.join(f))?.trim().is_empty() {
                    let v = read(&parent.join(f))?;
                    write(&dir.join(f), v.trim())?;
                }
            }
        }
    }
    Ok(())
}

fn make_chain(mount: &Path, parent: &Path, cpuset: bool) -> Result<(), ExecError> {
    let rel = parent.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut p = mount.to_path_buf();
    for c in rel.components() {
        p.push(c);
        make_dir(&p, cpuset)?;
    }
    Ok(())
}

/// Enables `ctrls` for the children of `level`. At the hierarchy's root (`at_root`) a busy
/// error means a cgroup namespace's root with processes in it (rbuild in a container): those
/// processes move into a leaf `rbuild-init` first, as docker-in-docker's entrypoint does.
fn enable_controllers(level: &Path, ctrls: &[&str], at_root: bool) -> Result<(), ExecError> {
    let available = read(&level.join("cgroup.controllers"))?;
    let enabled = read(&level.join("cgroup.subtree_control"))?;
    for c in ctrls {
        if !available.split_whitespace().any(|a| a == *c) {
            return Err(ExecError::Cgroup(format!(
                "the cgroup v2 controller {c} is not available in {} (not delegated to rbuild)",
                level.display()
            )));
        }
        if enabled.split_whitespace().any(|a| a == *c) {
            continue;
        }
        let file = level.join("cgroup.subtree_control");
        let mut result = std::fs::write(&file, format!("+{c}"));
        if at_root
            && result
                .as_ref()
                .is_err_and(|e| e.raw_os_error() == Some(libc::EBUSY))
        {
            evacuate(level)?;
            result = std::fs::write(&file, format!("+{c}"));
        }
        result.map_err(|e| {
            ExecError::Cgroup(format!(
                "enable the {c} controller in {}: {e} (a cgroup with processes of its own \
                 cannot hand controllers on; run rbuild in a cgroup of its own or pass \
                 --cgroup-parent)",
                file.display()
            ))
        })?;
    }
    Ok(())
}

/// Moves every process of `level` into `level/rbuild-init`.
fn evacuate(level: &Path) -> Result<(), ExecError> {
    let leaf = level.join("rbuild-init");
    make_dir(&leaf, false)?;
    let procs = read(&level.join("cgroup.procs"))?;
    for pid in procs.split_whitespace() {
        // A process that exited meanwhile is fine; anything left makes the retry fail clearly.
        let _ = std::fs::write(leaf.join("cgroup.procs"), pid);
    }
    Ok(())
}

/// v2 without `--cgroup-parent`: rbuild's own cgroup when rbuild is alone in it (rbuild moves
/// into a leaf there first), else `/rbuild`. Decided once per process.
fn v2_default_parent(mount: &Path) -> Result<PathBuf, ExecError> {
    static PARENT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let own = under(mount, &own_path(None).unwrap_or_default());
            if own == mount {
                return Ok(mount.join("rbuild"));
            }
            let me = std::process::id().to_string();
            let procs = std::fs::read_to_string(own.join("cgroup.procs")).unwrap_or_default();
            if procs.split_whitespace().eq([me.as_str()]) {
                let leaf = own.join(format!("rbuild-{me}-self"));
                make_dir(&leaf, false).map_err(|e| e.to_string())?;
                write(&leaf.join("cgroup.procs"), &me).map_err(|e| e.to_string())?;
                return Ok(own);
            }
            Ok(mount.join("rbuild"))
        })
        .clone()
        .map_err(ExecError::Cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_names_carry_the_pid() {
        assert_eq!(
            super::super::cgroup_cleanup::stale_pid(&leaf_name()),
            Some(std::process::id())
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn cgroup_paths_stay_under_the_base() {
        assert_eq!(
            under(Path::new("/sys/fs/cgroup"), "/a/./b/"),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
    }
}
