//! The rbuild side of a RUN: prepares mount-point stubs, starts the helper (a re-exec of
//! the rbuild binary, so no Rust code runs in a fork of this multi-threaded process),
//! streams the command's output, and cleans the stubs up afterwards.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use super::cgroup::RunCgroup;
use super::error::ExecError;
use super::protocol::{parse_statuses, HelperRequest, Status, HELPER_ARG, STATUS_FD};
use super::sealed_exe::sealed_path;
use super::spec::{ExecConfig, MountKind, Network, RunOutcome, RunSpec, Stream};
use super::stubs::{MountStubs, StubKind};
use super::user::resolve_user;
use super::usernet::find_usernet;

/// How often the output loop looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Runs `spec` with the default helper (`/proc/self/exe`); output chunks go to `output`
/// as they arrive.
pub fn run(spec: &RunSpec, output: &mut dyn FnMut(Stream, &[u8])) -> Result<RunOutcome, ExecError> {
    run_with(spec, &ExecConfig::default(), output)
}

/// `run` with an explicit helper executable and cancel flag.
pub fn run_with(
    spec: &RunSpec,
    config: &ExecConfig,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunOutcome, ExecError> {
    validate(spec)?;
    config.resources.validate()?;
    let (uid, gid, groups) = resolve_user(&spec.rootfs, spec.user.as_deref().unwrap_or("0"))?;
    let cgroup = if crate::rootless::in_user_namespace() {
        super::cgroup_rootless::create(&config.resources)
    } else {
        RunCgroup::create(&config.resources)?
    };
    // Looked up per RUN so a missing stack fails this RUN with one line (never the host network).
    let usernet = match spec.network {
        Network::Default => Some(find_usernet()?),
        Network::Host | Network::None => None,
    };
    let request = HelperRequest {
        spec: spec.clone(),
        uid,
        gid,
        groups,
        resources: config.resources.clone(),
        cgroups: cgroup.procs_files(),
        usernet,
    };
    let mut stubs = MountStubs::new(&spec.rootfs)?;
    let result = mount_points(spec)
        .into_iter()
        .try_for_each(|(path, kind)| stubs.ensure(&path, kind))
        .and_then(|()| run_helper(&request, config, output));
    // A failed command may have been stopped by a limit: say which, rather than only its exit.
    let limit = match &result {
        Ok(outcome) if !outcome.success() => cgroup.exceeded(),
        _ => None,
    };
    // Always run: the mounts lived in the helper's namespace and are gone by now, and every
    // process of the RUN died with its PID 1.
    let cgroup_cleanup = cgroup.remove();
    let cleanup = stubs.remove();
    let outcome = result?;
    if let Some(msg) = limit {
        return Err(ExecError::LimitExceeded(msg));
    }
    cleanup?;
    cgroup_cleanup?;
    Ok(outcome)
}

fn validate(spec: &RunSpec) -> Result<(), ExecError> {
    if spec.argv.is_empty() {
        return Err(ExecError::InvalidSpec("empty argv".into()));
    }
    if !spec.workdir.starts_with('/') {
        return Err(ExecError::InvalidSpec(format!(
            "workdir {:?} is not absolute",
            spec.workdir
        )));
    }
    if let Some(m) = spec.mounts.iter().find(|m| !m.target.starts_with('/')) {
        return Err(ExecError::InvalidSpec(format!(
            "mount target {:?} is not absolute",
            m.target
        )));
    }
    if let Some(e) = spec.env.iter().find(|e| !e.contains('=')) {
        return Err(ExecError::InvalidSpec(format!(
            "env entry {e:?} has no '='"
        )));
    }
    let nul = |s: &String| s.contains('\0');
    if spec.argv.iter().any(nul) || spec.env.iter().any(nul) || spec.workdir.contains('\0') {
        return Err(ExecError::InvalidSpec(
            "NUL byte in argv, env or workdir".into(),
        ));
    }
    Ok(())
}

/// Every path the helper mounts over, with what must be there.
fn mount_points(spec: &RunSpec) -> Vec<(String, StubKind)> {
    let mut points: Vec<(String, StubKind)> = vec![
        ("/proc".into(), StubKind::Dir),
        ("/dev".into(), StubKind::Dir),
        ("/sys".into(), StubKind::Dir),
        ("/etc/hosts".into(), StubKind::File),
        ("/etc/resolv.conf".into(), StubKind::File),
        ("/etc/hostname".into(), StubKind::File),
    ];
    for m in &spec.mounts {
        let kind = match &m.kind {
            MountKind::Bind { source, .. } if !source.is_dir() => StubKind::File,
            MountKind::Bind { .. } | MountKind::Tmpfs { .. } => StubKind::Dir,
            MountKind::Secret { .. } => StubKind::File,
        };
        points.push((m.target.clone(), kind));
    }
    points
}

fn run_helper(
    request: &HelperRequest,
    config: &ExecConfig,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> Result<RunOutcome, ExecError> {
    let exe = sealed_path(&config.helper_exe)?;
    let (status_r, status_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ExecError::io("create status pipe", e))?;
    let status_w_raw = status_w.as_raw_fd();

    let mut cmd = Command::new(&exe);
    cmd.arg(HELPER_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: runs between fork and exec; it only calls dup2/fcntl, which are
    // async-signal-safe, to place the status pipe at fd 3 (without CLOEXEC).
    unsafe {
        cmd.pre_exec(move || {
            let ok = if status_w_raw == STATUS_FD {
                libc::fcntl(STATUS_FD, libc::F_SETFD, 0) >= 0
            } else {
                libc::dup2(status_w_raw, STATUS_FD) >= 0
            };
            if ok {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut child = cmd.spawn().map_err(|source| {
        // Name what was really executed: the sealed copy's fd and what it points to now.
        let target = std::fs::read_link(&exe)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|e| e.to_string());
        ExecError::Spawn {
            exe: std::path::PathBuf::from(format!(
                "{} (sealed copy {} -> {target})",
                config.helper_exe.display(),
                exe.display()
            )),
            source,
        }
    })?;
    drop(status_w);

    let sent = send_request(&mut child, request);
    let interrupted = pump_output(&mut child, config, output);
    let mut status_text = String::new();
    let read = std::fs::File::from(status_r).read_to_string(&mut status_text);
    let waited = child.wait();
    sent?;
    read.map_err(|e| ExecError::io("read RUN helper status", e))?;
    let exit = waited.map_err(|e| ExecError::io("wait for RUN helper", e))?;

    let statuses = parse_statuses(&status_text);
    if let Some(Status::SetupError(msg)) =
        statuses.iter().find(|s| matches!(s, Status::SetupError(_)))
    {
        return Err(ExecError::Setup(msg.clone()));
    }
    if interrupted || statuses.iter().any(|s| matches!(s, Status::Interrupted)) {
        return Err(ExecError::Interrupted);
    }
    for s in statuses {
        match s {
            Status::Exited(outcome) => return Ok(outcome),
            Status::HelperError(msg) => return Err(ExecError::Helper(msg)),
            _ => {}
        }
    }
    Err(ExecError::Helper(format!(
        "exited ({exit}) without a status"
    )))
}

fn send_request(child: &mut Child, request: &HelperRequest) -> Result<(), ExecError> {
    let json = serde_json::to_vec(request)
        .map_err(|e| ExecError::Helper(format!("encode request: {e}")))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| ExecError::Helper("no stdin pipe to the helper".into()))?;
    // Dropping stdin closes it: the helper reads the request up to EOF.
    stdin
        .write_all(&json)
        .map_err(|e| ExecError::io("send request to RUN helper", e))
}

/// Delivers stdout/stderr chunks until both are closed. Returns whether the run was
/// cancelled through `config.cancel`.
fn pump_output(
    child: &mut Child,
    config: &ExecConfig,
    output: &mut dyn FnMut(Stream, &[u8]),
) -> bool {
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let pipes = [
        child
            .stdout
            .take()
            .map(|p| (Stream::Stdout, Box::new(p) as Box<dyn Read + Send>)),
        child
            .stderr
            .take()
            .map(|p| (Stream::Stderr, Box::new(p) as Box<dyn Read + Send>)),
    ];
    let mut cancelled = false;
    std::thread::scope(|scope| {
        for (stream, mut pipe) in pipes.into_iter().flatten() {
            let tx = tx.clone();
            scope.spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if tx.send((stream, buf[..n].to_vec())).is_err() {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(CANCEL_POLL) {
                Ok((stream, chunk)) => output(stream, &chunk),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let wants_cancel = config
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::SeqCst));
            if wants_cancel && !cancelled {
                cancelled = true;
                // The helper kills the container (SIGKILL) and reports Interrupted.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    });
    cancelled
}
