//! `execve` of the RUN command, searching `PATH` from the step's own environment (as
//! runc does; the host's PATH is irrelevant inside the container).

use std::convert::Infallible;
use std::ffi::CString;

use nix::errno::Errno;

use super::error::ExecError;

/// Docker's default PATH when the environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn exec(argv: &[String], env: &[String]) -> Result<Infallible, ExecError> {
    let cstr = |s: &String| {
        CString::new(s.as_bytes()).map_err(|_| ExecError::InvalidSpec(format!("NUL byte in {s:?}")))
    };
    let args = argv.iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
    let envs = env.iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
    let Some(argv0) = argv.first() else {
        return Err(ExecError::InvalidSpec("empty argv".into()));
    };
    if argv0.contains('/') {
        let Err(e) = nix::unistd::execve(&args[0], &args, &envs);
        return Err(ExecError::Setup(format!("exec {argv0:?}: {}", e.desc())));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = cstr(&format!("{dir}/{argv0}"))?;
        let Err(e) = nix::unistd::execve(&candidate, &args, &envs);
        match e {
            Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::ENAMETOOLONG => {}
            Errno::EACCES => denied = Some(e),
            other => {
                return Err(ExecError::Setup(format!(
                    "exec {argv0:?} in {dir}: {}",
                    other.desc()
                )))
            }
        }
    }
    Err(ExecError::Setup(match denied {
        Some(e) => format!("exec {argv0:?}: {}", e.desc()),
        None => format!("exec {argv0:?}: executable file not found in $PATH"),
    }))
}
