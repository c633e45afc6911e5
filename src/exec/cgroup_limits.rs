//! Resource limits of a RUN step, as `docker build` takes them (`--memory`, `--memory-swap`,
//! `--cpu-shares`, `--cpu-period`, `--cpu-quota`, `--cpuset-cpus`, `--cgroup-parent`, `--ulimit`,
//! `--shm-size`) plus rbuild's `--pids-limit`. Parsing and validation live here; `cgroup` writes
//! them into each RUN's cgroup, `container` applies the ulimits. README.md "Resource limits".

use serde::{Deserialize, Serialize};

use super::error::ExecError;

/// Processes (and threads) a RUN may have at once unless `--pids-limit` says otherwise:
/// podman's default. A fork bomb stops there instead of filling the host's pid table.
pub const DEFAULT_PIDS_LIMIT: i64 = 2048;

/// `/dev/shm` size without `--shm-size`: Docker's 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// `RUN --mount=type=tmpfs` without `size=`: 512 MiB (the kernel's default, half of RAM, lets one
/// RUN pin half the host's memory). README.md "Resource limits".
pub const DEFAULT_TMPFS_SIZE: u64 = 512 * 1024 * 1024;

/// Docker's smallest accepted `--memory` (6 MiB).
const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// The limits every RUN of a build gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `--memory`: bytes.
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap in bytes; `-1` is unlimited swap. Unset with `memory` set:
    /// twice `memory` (Docker's rule).
    pub memory_swap: Option<i64>,
    /// `--cpu-shares`: relative weight (Docker's 2..262144; 1024 is the default weight).
    pub cpu_shares: Option<u64>,
    /// `--cpu-period`: CFS period in microseconds.
    pub cpu_period: Option<u64>,
    /// `--cpu-quota`: CFS quota in microseconds per period; `-1` is unlimited.
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`: CPUs the RUN may use (`0-3`, `0,1`).
    pub cpuset_cpus: Option<String>,
    /// `--cgroup-parent`: cgroup path (from each hierarchy's root) the RUN cgroups are made under.
    pub cgroup_parent: Option<String>,
    /// `--ulimit`s, applied to the RUN's PID 1 before it drops privileges.
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size`: bytes of `/dev/shm`.
    pub shm_size: u64,
    /// `--pids-limit`: at most this many tasks; `None` is unlimited.
    pub pids_limit: Option<i64>,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            memory: None,
            memory_swap: None,
            cpu_shares: None,
            cpu_period: None,
            cpu_quota: None,
            cpuset_cpus: None,
            cgroup_parent: None,
            ulimits: Vec::new(),
            shm_size: DEFAULT_SHM_SIZE,
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

/// One `--ulimit name=soft[:hard]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    /// `u64::MAX` is unlimited (RLIM_INFINITY).
    pub soft: u64,
    pub hard: u64,
}

/// `--ulimit` names (Docker's, from `ulimit -a`) and their `RLIMIT_*` resource numbers.
const ULIMITS: [(&str, libc::__rlimit_resource_t); 16] = [
    ("as", libc::RLIMIT_AS),
    ("core", libc::RLIMIT_CORE),
    ("cpu", libc::RLIMIT_CPU),
    ("data", libc::RLIMIT_DATA),
    ("fsize", libc::RLIMIT_FSIZE),
    ("locks", libc::RLIMIT_LOCKS),
    ("memlock", libc::RLIMIT_MEMLOCK),
    ("msgqueue", libc::RLIMIT_MSGQUEUE),
    ("nice", libc::RLIMIT_NICE),
    ("nofile", libc::RLIMIT_NOFILE),
    ("nproc", libc::RLIMIT_NPROC),
    ("rss", libc::RLIMIT_RSS),
    ("rtprio", libc::RLIMIT_RTPRIO),
    ("rttime", libc::RLIMIT_RTTIME),
    ("sigpending", libc::RLIMIT_SIGPENDING),
    ("stack", libc::RLIMIT_STACK),
];

impl Ulimit {
    /// Parses `name=soft[:hard]` (`-1` or `unlimited` for no limit; hard defaults to soft).
    pub fn parse(text: &str) -> Result<Ulimit, ExecError> {
        let bad = |why: &str| ExecError::InvalidSpec(format!("--ulimit {text:?}: {why}"));
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| bad("expected name=soft[:hard]"))?;
        if Self::resource_of(name).is_none() {
            return Err(bad("unknown limit name"));
        }
        let value = |v: &str| match v {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v.parse::<u64>().map_err(|_| bad("not a number")),
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (value(s)?, value(h)?),
            None => (value(values)?, value(values)?),
        };
        if soft > hard {
            return Err(bad("soft limit is above the hard limit"));
        }
        Ok(Ulimit {
            name: name.to_string(),
            soft,
            hard,
        })
    }

    /// The `RLIMIT_*` number of `name`.
    pub(crate) fn resource_of(name: &str) -> Option<libc::__rlimit_resource_t> {
        ULIMITS.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
    }
}

/// Parses a byte size as Docker does: a number with an optional `b`, `k`, `m`, `g`, `t` suffix
/// (binary units, case-insensitive, an extra `b` allowed: `64m`, `1GB`, `512k`, `100`).
pub fn parse_size(text: &str) -> Result<u64, ExecError> {
    let bad = || ExecError::InvalidSpec(format!("{text:?} is not a size (like 64m or 1g)"));
    let lower = text.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let unit = unit.trim();
    let unit = unit
        .strip_suffix('b')
        .filter(|u| !u.is_empty())
        .unwrap_or(unit);
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Human form of a byte count for error messages (`64 MiB`).
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{} {name}", bytes / unit);
        }
    }
    format!("{bytes} bytes")
}

impl Resources {
    /// Checks the values against each other and Docker's ranges.
    pub fn validate(&self) -> Result<(), ExecError> {
        let bad = |m: String| Err(ExecError::InvalidSpec(m));
        if let Some(m) = self.memory {
            if m < MIN_MEMORY {
                return bad(format!(
                    "--memory {} is below the minimum of 6 MiB",
                    human(m)
                ));
            }
        }
        match (self.memory, self.memory_swap) {
            (None, Some(_)) => return bad("--memory-swap needs --memory as well".into()),
            (Some(m), Some(s)) if s != -1 && (s < 0 || (s as u64) < m) => {
                return bad("--memory-swap must be -1 or at least --memory".into())
            }
            _ => {}
        }
        if let Some(s) = self.cpu_shares {
            if !(2..=262_144).contains(&s) {
                return bad(format!("--cpu-shares {s} is outside 2..262144"));
            }
        }
        if let Some(p) = self.cpu_period {
            if !(1000..=1_000_000).contains(&p) {
                return bad(format!(
                    "--cpu-period {p} is outside 1000..1000000 microseconds"
                ));
            }
        }
        if let Some(q) = self.cpu_quota {
            if q != -1 && q < 1000 {
                return bad(format!(
                    "--cpu-quota {q} must be -1 or at least 1000 microseconds"
                ));
            }
        }
        if let Some(c) = &self.cpuset_cpus {
            if c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ch == ',' || ch == '-')
            {
                return bad(format!("--cpuset-cpus {c:?} is not a CPU list like 0-3,5"));
            }
        }
        if let Some(p) = &self.cgroup_parent {
            if p.split('/').any(|c| c == ".." || c == ".") || p.contains('\0') {
                return bad(format!("--cgroup-parent {p:?} must not contain . or .."));
            }
        }
        if self.shm_size == 0 {
            return bad("--shm-size must be above 0".into());
        }
        Ok(())
    }

    /// `memory.memsw` / swap total to set, or `None` when no memory limit is set.
    /// `Some(None)` is unlimited swap.
    pub(crate) fn memory_and_swap(&self) -> Option<Option<u64>> {
        let m = self.memory?;
        Some(match self.memory_swap {
            Some(-1) => None,
            Some(s) => Some(s as u64),
            None => Some(m.saturating_mul(2)),
        })
    }

    pub(crate) fn wants_cpu(&self) -> bool {
        self.cpu_shares.is_some() || self.cpu_period.is_some() || self.cpu_quota.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("100b").unwrap(), 100);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-5m").is_err());
    }

    #[test]
    fn ulimits_parse_with_and_without_hard_limit() {
        let u = Ulimit::parse("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        let u = Ulimit::parse("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (u64::MAX, u64::MAX));
        assert!(Ulimit::parse("nofile=10:5").is_err());
        assert!(Ulimit::parse("bogus=1").is_err());
        assert!(Ulimit::parse("nofile").is_err());
    }

    #[test]
    fn validation_follows_dockers_rules() {
        let ok = Resources::default();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.pids_limit, Some(DEFAULT_PIDS_LIMIT));
        let r = Resources {
            memory_swap: Some(-1),
            ..Resources::default()
        };
        assert!(r.validate().is_err(), "swap without memory");
        let r = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(32 << 20),
            ..Resources::default()
        };
        assert!(r.validate().is_err(), "swap below memory");
        let r = Resources {
            memory: Some(1 << 20),
            ..Resources::default()
        };
        assert!(r.validate().is_err(), "below 6 MiB");
        let r = Resources {
            cgroup_parent: Some("a/../b".into()),
            ..Resources::default()
        };
        assert!(r.validate().is_err());
        let r = Resources {
            memory: Some(64 << 20),
            ..Resources::default()
        };
        assert_eq!(r.memory_and_swap(), Some(Some(128 << 20)));
    }
}
