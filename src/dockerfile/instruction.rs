//! Typed instructions, holding UNEXPANDED words: a port of BuildKit's `instructions/parse.go`.
//! [`Instruction::expand`] applies variables on the instructions BuildKit expands.

use super::flags::FlagKind;
use super::heredoc::chomp_heredoc_content;
use super::node::{Node, NodeArg};
use super::shell::{Env, ExpandError, LexOptions, Lexer};

use super::instruction_args::{
    at_least_one, command_line, exactly_one, flags, invalid, kv_triples, parse_duration_flag,
    sources_and_dest,
};
pub use super::instruction_types::*;

const KEYWORDS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// BuildKit's suggestion for an unknown keyword: the closest one within edit distance 2, in
/// the case the user wrote (upper for an upper-case word).
fn nearest_instruction(word: &str) -> Option<String> {
    super::suggest::search(word, &KEYWORDS, false)
}

impl Instruction {
    /// Types one parser node.
    pub fn from_node(node: &Node) -> IResult<Instruction> {
        let args = node.arg_words();
        let kw = node.keyword();
        let no_flags = |n: &Node| flags(n, &[]);
        Ok(match kw.as_str() {
            "from" => {
                let f = flags(node, &[("platform", FlagKind::String)])?;
                let name = match args.len() {
                    1 => None,
                    3 if args[1].eq_ignore_ascii_case("as") => {
                        let n = args[2].to_lowercase();
                        let ok = n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                            && n.chars().all(|c| {
                                c.is_ascii_lowercase()
                                    || c.is_ascii_digit()
                                    || matches!(c, '-' | '_' | '.')
                            });
                        if !ok {
                            return invalid(format!(
                                "invalid name for build stage: \"{}\", name can't start with a number or contain symbols",
                                args[2]
                            ));
                        }
                        Some(n)
                    }
                    _ => return invalid("FROM requires either one or three arguments"),
                };
                Instruction::From(FromInst {
                    image: args[0].clone(),
                    name,
                    platform: f.string("platform"),
                })
            }
            "run" => {
                let f = flags(
                    node,
                    &[
                        ("mount", FlagKind::Strings),
                        ("network", FlagKind::String),
                        ("security", FlagKind::String),
                    ],
                )?;
                if let Some(n) = f.string("network") {
                    if !matches!(n.as_str(), "default" | "none" | "host") {
                        return invalid(format!("unsupported network mode \"{n}\""));
                    }
                }
                if let Some(s) = f.string("security") {
                    if !matches!(s.as_str(), "sandbox" | "insecure") {
                        return invalid(format!("unsupported security mode \"{s}\""));
                    }
                }
                for m in f.strings("mount") {
                    // Values may hold variables, so only the shape is checked here.
                    super::mount::parse_mount(&m).map_err(|e| InstructionError::Invalid(e.0))?;
                }
                let heredocs = node
                    .heredocs
                    .iter()
                    .map(|h| Heredoc {
                        name: h.name.clone(),
                        content: if h.chomp {
                            chomp_heredoc_content(&h.content)
                        } else {
                            h.content.clone()
                        },
                        expand: h.expand,
                        chomp: h.chomp,
                        fd: h.file_descriptor,
                    })
                    .collect();
                Instruction::Run(RunInst {
                    cmd: command_line(node, &args),
                    heredocs,
                    mounts: f.strings("mount"),
                    network: f.string("network"),
                    security: f.string("security"),
                })
            }
            "cmd" => {
                no_flags(node)?;
                Instruction::Cmd(CmdInst {
                    cmd: command_line(node, &args),
                })
            }
            "entrypoint" => {
                no_flags(node)?;
                Instruction::Entrypoint(EntrypointInst {
                    cmd: command_line(node, &args),
                })
            }
            "shell" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(at_least_one("SHELL"));
                }
                if !node.json {
                    return invalid("SHELL requires the arguments to be in JSON form");
                }
                Instruction::Shell(ShellInst { shell: args })
            }
            "env" => {
                no_flags(node)?;
                Instruction::Env(EnvInst {
                    pairs: kv_triples(&args, "ENV")?,
                })
            }
            "label" => {
                no_flags(node)?;
                Instruction::Label(LabelInst {
                    pairs: kv_triples(&args, "LABEL")?,
                })
            }
            "maintainer" => {
                no_flags(node)?;
                if args.len() != 1 {
                    return Err(exactly_one("MAINTAINER"));
                }
                Instruction::Maintainer(MaintainerInst {
                    maintainer: args[0].clone(),
                })
            }
            "expose" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(at_least_one("EXPOSE"));
                }
                let mut ports = args;
                ports.sort();
                Instruction::Expose(ExposeInst { ports })
            }
            "volume" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(at_least_one("VOLUME"));
                }
                let mut volumes = Vec::new();
                for v in args {
                    let v = v.trim().to_string();
                    if v.is_empty() {
                        return invalid("VOLUME specified can not be an empty string");
                    }
                    volumes.push(v);
                }
                Instruction::Volume(VolumeInst { volumes })
            }
            "user" => {
                no_flags(node)?;
                if args.len() != 1 {
                    return Err(exactly_one("USER"));
                }
                Instruction::User(UserInst {
                    user: args[0].clone(),
                })
            }
            "workdir" => {
                no_flags(node)?;
                if args.len() != 1 {
                    return Err(exactly_one("WORKDIR"));
                }
                Instruction::Workdir(WorkdirInst {
                    path: args[0].clone(),
                })
            }
            "stopsignal" => {
                no_flags(node)?;
                if args.len() != 1 {
                    return Err(exactly_one("STOPSIGNAL"));
                }
                Instruction::Stopsignal(StopsignalInst {
                    signal: args[0].clone(),
                })
            }
            "arg" => {
                no_flags(node)?;
                if args.is_empty() {
                    return Err(at_least_one("ARG"));
                }
                let mut out = Vec::new();
                for a in args {
                    match a.split_once('=') {
                        Some(("", _)) => return invalid("ARG names can not be blank"),
                        Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                        None => out.push((a, None)),
                    }
                }
                Instruction::Arg(ArgInst { args: out })
            }
            "onbuild" => {
                no_flags(node)?;
                let Some(NodeArg::Sub(child)) = node.args.first() else {
                    return Err(at_least_one("ONBUILD"));
                };
                let trig = child.value.trim().to_uppercase();
                match trig.as_str() {
                    "ONBUILD" => {
                        return invalid("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
                    }
                    "MAINTAINER" | "FROM" => {
                        return invalid(format!("{trig} isn't allowed as an ONBUILD trigger"))
                    }
                    _ => {}
                }
                let trigger = Instruction::from_node(child)?;
                // As BuildKit: the stored trigger carries its heredoc bodies, so the image that
                // inherits it can parse it again.
                let mut expression = strip_onbuild_prefix(&node.original);
                let docs = if node.heredocs.is_empty() {
                    &child.heredocs
                } else {
                    &node.heredocs
                };
                for h in docs {
                    expression.push('\n');
                    expression.push_str(&h.content);
                    expression.push_str(&h.name);
                }
                Instruction::Onbuild(OnbuildInst {
                    expression,
                    trigger: Box::new(trigger),
                })
            }
            "healthcheck" => {
                if args.is_empty() {
                    return Err(at_least_one("HEALTHCHECK"));
                }
                let typ = args[0].to_uppercase();
                let rest = &args[1..];
                if typ == "NONE" {
                    if !rest.is_empty() {
                        return invalid("HEALTHCHECK NONE takes no arguments");
                    }
                    Instruction::Healthcheck(HealthcheckInst::None)
                } else {
                    let f = flags(
                        node,
                        &[
                            ("interval", FlagKind::String),
                            ("timeout", FlagKind::String),
                            ("start-period", FlagKind::String),
                            ("start-interval", FlagKind::String),
                            ("retries", FlagKind::String),
                        ],
                    )?;
                    if typ != "CMD" {
                        return invalid(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
                    }
                    if rest.is_empty() {
                        return invalid("Missing command after HEALTHCHECK CMD");
                    }
                    let retries = match f.string("retries").filter(|v| !v.is_empty()) {
                        None => None,
                        Some(v) => {
                            let r: i64 = v
                                .parse()
                                .ok()
                                .filter(|r| i32::try_from(*r).is_ok())
                                .ok_or_else(|| {
                                    InstructionError::Invalid(format!(
                                        "strconv.ParseInt: parsing \"{v}\": invalid syntax"
                                    ))
                                })?;
                            if r < 0 {
                                return invalid(format!("--retries cannot be negative ({r})"));
                            }
                            Some(r)
                        }
                    };
                    Instruction::Healthcheck(HealthcheckInst::Cmd {
                        test: command_line(node, rest),
                        interval: parse_duration_flag(&f, "interval")?,
                        timeout: parse_duration_flag(&f, "timeout")?,
                        start_period: parse_duration_flag(&f, "start-period")?,
                        start_interval: parse_duration_flag(&f, "start-interval")?,
                        retries,
                    })
                }
            }
            "copy" => {
                let f = flags(
                    node,
                    &[
                        ("chown", FlagKind::String),
                        ("from", FlagKind::String),
                        ("chmod", FlagKind::String),
                        ("link", FlagKind::Bool),
                        ("exclude", FlagKind::Strings),
                        ("parents", FlagKind::Bool),
                        ("timestamp", FlagKind::String),
                    ],
                )?;
                let (sources, heredoc_sources, dest) = sources_and_dest(node, &args, "COPY")?;
                Instruction::Copy(CopyInst {
                    sources,
                    heredoc_sources,
                    dest,
                    from: f.string("from"),
                    chown: f.string("chown"),
                    chmod: f.string("chmod"),
                    link: f.bool("link"),
                    exclude: f.strings("exclude"),
                    parents: f.bool("parents"),
                    timestamp: f.string("timestamp"),
                })
            }
            "add" => {
                let f = flags(
                    node,
                    &[
                        ("chown", FlagKind::String),
                        ("chmod", FlagKind::String),
                        ("link", FlagKind::Bool),
                        ("exclude", FlagKind::Strings),
                        ("keep-git-dir", FlagKind::Bool),
                        ("checksum", FlagKind::String),
                        ("unpack", FlagKind::Bool),
                        ("timestamp", FlagKind::String),
                    ],
                )?;
                let (sources, heredoc_sources, dest) = sources_and_dest(node, &args, "ADD")?;
                Instruction::Add(AddInst {
                    sources,
                    heredoc_sources,
                    dest,
                    chown: f.string("chown"),
                    chmod: f.string("chmod"),
                    link: f.bool("link"),
                    exclude: f.strings("exclude"),
                    checksum: f.string("checksum"),
                    keep_git_dir: f.bool_opt("keep-git-dir"),
                    unpack: f.bool_opt("unpack"),
                    timestamp: f.string("timestamp"),
                })
            }
            _ => {
                return Err(InstructionError::UnknownInstruction(
                    node.value.to_uppercase(),
                    nearest_instruction(&node.value),
                ))
            }
        })
    }

    /// Upper-case keyword (`RUN`, `COPY`, …).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Env(_) => "ENV",
            Instruction::Add(_) => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Arg(_) => "ARG",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Stopsignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Shell(_) => "SHELL",
        }
    }

    /// Expands variables exactly as BuildKit does for the instructions that expand (ADD ARG
    /// COPY ENV EXPOSE FROM LABEL STOPSIGNAL USER VOLUME WORKDIR); the others (RUN CMD
    /// ENTRYPOINT SHELL HEALTHCHECK MAINTAINER ONBUILD) are returned as they are.
    /// Every word is expanded against `env` as it was before the instruction, so
    /// `ENV a=1 b=$a` sees the old `a`. Quotes are removed by the expansion.
    pub fn expand(&self, lexer: &Lexer, env: &dyn Env) -> Result<Instruction, ExpandError> {
        let w = |s: &str| lexer.process_word(s, env);
        let ow = |s: &Option<String>| s.as_deref().map(w).transpose();
        let all = |v: &[String]| v.iter().map(|s| w(s)).collect::<Result<Vec<_>, _>>();
        let pairs = |v: &[(String, String)]| {
            v.iter()
                .map(|(k, val)| Ok((w(k)?, w(val)?)))
                .collect::<Result<Vec<_>, ExpandError>>()
        };
        // `COPY x $EMPTY`: a destination that expands to nothing means the working directory,
        // as in BuildKit (its testEmptyDestDir; docs/compat.md).
        let dest = |d: &str| -> Result<String, ExpandError> {
            let out = w(d)?;
            Ok(if out.is_empty() { ".".to_string() } else { out })
        };
        // An unquoted-delimiter COPY/ADD heredoc expands like BuildKit's ExpandRaw: always with
        // `\` as escape, quotes kept as written (docs/compat.md).
        let bodies = |v: &[HeredocSource]| -> Result<Vec<HeredocSource>, ExpandError> {
            let raw = LexOptions {
                skip_process_quotes: true,
                ..LexOptions::new('\\')
            };
            v.iter()
                .map(|h| {
                    Ok(HeredocSource {
                        content: if h.expand {
                            raw.process(&h.content, env)?.0
                        } else {
                            h.content.clone()
                        },
                        ..h.clone()
                    })
                })
                .collect()
        };
        Ok(match self {
            Instruction::From(f) => Instruction::From(FromInst {
                image: w(&f.image)?,
                name: f.name.clone(),
                platform: ow(&f.platform)?,
            }),
            Instruction::Env(e) => Instruction::Env(EnvInst {
                pairs: pairs(&e.pairs)?,
            }),
            Instruction::Label(l) => Instruction::Label(LabelInst {
                pairs: pairs(&l.pairs)?,
            }),
            Instruction::Arg(a) => Instruction::Arg(ArgInst {
                args: a
                    .args
                    .iter()
                    .map(|(k, v)| Ok((w(k)?, ow(v)?)))
                    .collect::<Result<_, ExpandError>>()?,
            }),
            Instruction::Expose(e) => {
                let mut ports = Vec::new();
                for p in &e.ports {
                    ports.extend(lexer.process_words(p, env)?);
                }
                Instruction::Expose(ExposeInst { ports })
            }
            Instruction::Volume(v) => Instruction::Volume(VolumeInst {
                volumes: all(&v.volumes)?,
            }),
            Instruction::User(u) => Instruction::User(UserInst { user: w(&u.user)? }),
            Instruction::Workdir(d) => Instruction::Workdir(WorkdirInst { path: w(&d.path)? }),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(StopsignalInst {
                signal: w(&s.signal)?,
            }),
            Instruction::Copy(c) => Instruction::Copy(CopyInst {
                sources: all(&c.sources)?,
                heredoc_sources: bodies(&c.heredoc_sources)?,
                dest: dest(&c.dest)?,
                from: match &c.from {
                    // BuildKit never expands `--from`: a value the shell would change is refused.
                    Some(f) if lexer.process_word(f, &Vec::<(String, String)>::new())? != *f => {
                        return Err(ExpandError {
                            source_text: f.clone(),
                            message: "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround".into(),
                        });
                    }
                    other => other.clone(),
                },
                chown: ow(&c.chown)?,
                chmod: ow(&c.chmod)?,
                link: c.link,
                exclude: all(&c.exclude)?,
                parents: c.parents,
                timestamp: ow(&c.timestamp)?,
            }),
            Instruction::Add(a) => Instruction::Add(AddInst {
                sources: all(&a.sources)?,
                heredoc_sources: bodies(&a.heredoc_sources)?,
                dest: dest(&a.dest)?,
                chown: ow(&a.chown)?,
                chmod: ow(&a.chmod)?,
                link: a.link,
                exclude: all(&a.exclude)?,
                checksum: ow(&a.checksum)?,
                keep_git_dir: a.keep_git_dir,
                unpack: a.unpack,
                timestamp: ow(&a.timestamp)?,
            }),
            other => other.clone(),
        })
    }
}

/// The ONBUILD trigger text: the original line without its `ONBUILD` keyword.
fn strip_onbuild_prefix(original: &str) -> String {
    let t = original.trim_start();
    match t.get(..7) {
        Some(k) if k.eq_ignore_ascii_case("onbuild") => t[7..].trim_start().to_string(),
        _ => t.to_string(),
    }
}
