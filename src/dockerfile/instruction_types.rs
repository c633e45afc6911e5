//! The typed instructions the parser produces (`instruction.rs` builds them from nodes), holding
//! UNEXPANDED words, as BuildKit's `instructions/commands.go` types.

/// Exec form (JSON array) or shell form (the raw text, to be run by the stage's SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

/// A heredoc body of a RUN (or an inline COPY/ADD source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word (for COPY/ADD: the destination file name).
    pub name: String,
    /// The body; leading tabs already stripped when `chomp`.
    pub content: String,
    /// Variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// Written as `<<-`.
    pub chomp: bool,
    /// `3<<EOF`: the file descriptor the body is fed to (0 = stdin).
    pub fd: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInst {
    pub image: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    pub platform: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInst {
    pub cmd: CommandLine,
    pub heredocs: Vec<Heredoc>,
    /// Raw `--mount` values; see [`super::mount::parse_mount`].
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdInst {
    pub cmd: CommandLine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrypointInst {
    pub cmd: CommandLine,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellInst {
    pub shell: Vec<String>,
}

/// ENV pairs. Before [`Instruction::expand`] values still carry their quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvInst {
    pub pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelInst {
    pub pairs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintainerInst {
    pub maintainer: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposeInst {
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInst {
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInst {
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkdirInst {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopsignalInst {
    pub signal: String,
}

/// ARG declarations, `(name, default)` in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgInst {
    pub args: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnbuildInst {
    /// The trigger text as stored in the image config (`RUN make`).
    pub expression: String,
    /// The trigger, typed.
    pub trigger: Box<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthcheckInst {
    /// `HEALTHCHECK NONE`: disable an inherited check.
    None,
    Cmd {
        /// Exec form gives Docker's `["CMD", …]`, shell form `["CMD-SHELL", text]`.
        test: CommandLine,
        /// Durations in nanoseconds; None when not given.
        interval: Option<i64>,
        timeout: Option<i64>,
        start_period: Option<i64>,
        start_interval: Option<i64>,
        retries: Option<i64>,
    },
}

/// An inline COPY/ADD source written as a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocSource {
    /// File name created in the destination.
    pub path: String,
    /// Body, tabs stripped for `<<-`.
    pub content: String,
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInst {
    pub sources: Vec<String>,
    pub heredoc_sources: Vec<HeredocSource>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    /// rbuild extension: `--timestamp=<unix epoch>` for the copied files.
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddInst {
    pub sources: Vec<String>,
    pub heredoc_sources: Vec<HeredocSource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: Option<bool>,
    /// `--unpack`: Some(false) disables archive extraction, Some(true) forces it for URLs.
    pub unpack: Option<bool>,
    /// rbuild extension: `--timestamp=<unix epoch>`.
    pub timestamp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(FromInst),
    Run(RunInst),
    Cmd(CmdInst),
    Entrypoint(EntrypointInst),
    Label(LabelInst),
    Maintainer(MaintainerInst),
    Expose(ExposeInst),
    Env(EnvInst),
    Add(AddInst),
    Copy(CopyInst),
    Volume(VolumeInst),
    User(UserInst),
    Workdir(WorkdirInst),
    Arg(ArgInst),
    Onbuild(OnbuildInst),
    Stopsignal(StopsignalInst),
    Healthcheck(HealthcheckInst),
    Shell(ShellInst),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    /// The keyword (upper-cased) and the nearest known one, as BuildKit's `did you mean`.
    #[error("unknown instruction: {0}{hint}", hint = .1.as_ref().map(|m| format!(" (did you mean {m}?)")).unwrap_or_default())]
    UnknownInstruction(String, Option<String>),
    #[error("{0}")]
    Invalid(String),
}

pub(super) type IResult<T> = Result<T, InstructionError>;
