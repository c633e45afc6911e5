//! `created_by` texts of history entries, BuildKit style (default) or classic-builder style.
//!
//! Exact formats from ANCHORS §6.1 (moby `daemon/builder/dockerfile`) and §6.2 (BuildKit
//! `dockerfile2llb`). Independent of the parser's types: every function takes plain strings so the
//! orchestration can call it with already-expanded values.
//!
//! Classic style prefixes metadata steps with the *current* shell and `#(nop)`; BuildKit writes the
//! instruction text and marks filesystem steps (RUN/COPY/ADD) with ` # buildkit`.

use crate::image::config::Healthcheck;
pub use crate::image::source_hash::{
    source_hash_dir, source_hash_file, source_hash_multi, tarsum_file, TarsumHeader,
};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// History comment BuildKit writes on every entry of a Dockerfile build.
pub const BUILDKIT_COMMENT: &str = "buildkit.dockerfile.v0";

/// Which builder's history format to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryFormat {
    /// BuildKit (`docker build` since Engine 23).
    #[default]
    Buildkit,
    /// The classic builder (`DOCKER_BUILDKIT=0`).
    Classic,
}

impl HistoryFormat {
    /// The `comment` of new history entries in this format.
    pub fn comment(self) -> &'static str {
        match self {
            HistoryFormat::Buildkit => BUILDKIT_COMMENT,
            HistoryFormat::Classic => "",
        }
    }
}

/// How a RUN/CMD/ENTRYPOINT command was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    /// Shell form (or heredoc): the text run by the shell.
    Shell(String),
    /// Exec (JSON) form.
    Exec(Vec<String>),
}

/// A metadata-only instruction's entry: classic prefixes `<shell> #(nop)  ` (two spaces).
pub fn metadata(format: HistoryFormat, shell: &[String], text: &str) -> String {
    match format {
        HistoryFormat::Buildkit => text.to_string(),
        HistoryFormat::Classic => {
            // moby: strings.Join(append(shell, "#(nop) ", text), " ")
            let mut parts: Vec<&str> = shell.iter().map(String::as_str).collect();
            parts.push("#(nop) ");
            parts.push(text);
            parts.join(" ")
        }
    }
}

/// Classic WORKDIR/COPY/ADD use a single `"#(nop) <text>"` argument: one space.
fn classic_single(shell: &[String], text: &str) -> String {
    let mut parts: Vec<String> = shell.to_vec();
    parts.push(format!("#(nop) {text}"));
    parts.join(" ")
}

/// `RUN`. `build_args` are the ARGs in scope with their values: BuildKit keeps declaration order
/// (caller's order); classic sorts them (caller passes only args that have a value and are not
/// shadowed by ENV).
pub fn run(
    format: HistoryFormat,
    shell: &[String],
    build_args: &[(String, String)],
    cmd: &CommandForm,
) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !build_args.is_empty() {
        let mut args: Vec<&(String, String)> = build_args.iter().collect();
        if format == HistoryFormat::Classic {
            args.sort();
        }
        parts.push(format!("|{}", args.len()));
        parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    match cmd {
        CommandForm::Shell(text) => {
            parts.extend(shell.iter().cloned());
            parts.push(text.clone());
        }
        CommandForm::Exec(argv) => parts.extend(argv.iter().cloned()),
    }
    let line = parts.join(" ");
    match format {
        HistoryFormat::Buildkit => format!("RUN {line} # buildkit"),
        HistoryFormat::Classic => line,
    }
}

/// The parts of a COPY/ADD that history records.
#[derive(Debug, Clone, Default)]
pub struct CopyHistory<'a> {
    /// `"COPY"` or `"ADD"`.
    pub instruction: &'a str,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    pub parents: bool,
    /// Sources as written (heredoc sources as `<<EOF`). Used by the BuildKit format.
    pub sources: &'a [String],
    /// Destination as written (after variable expansion).
    pub dest: &'a str,
    /// Classic only: `file:<hex>` / `dir:<hex>` / `multi:<hex>` (see [`tarsum_file`]).
    pub source_hash: &'a str,
}

/// `COPY`/`ADD`.
///
/// Classic: `<shell> #(nop) COPY [--chown=X]<hash> in <dest> ` — moby formats
/// `"%s %s%s in %s "` so there is **no** space between the chown flag and the hash, and a trailing
/// space (moby `performCopy`); BuildKit: flags `--parents`, `--chown`, `--chmod`, sources, dest.
pub fn copy(format: HistoryFormat, shell: &[String], c: &CopyHistory<'_>) -> String {
    match format {
        HistoryFormat::Buildkit => {
            let mut s = c.instruction.to_string();
            if c.parents {
                s.push_str(" --parents");
            }
            if let Some(chown) = c.chown.filter(|v| !v.is_empty()) {
                let _ = write!(s, " --chown={chown}");
            }
            if let Some(chmod) = c.chmod.filter(|v| !v.is_empty()) {
                let _ = write!(s, " --chmod={chmod}");
            }
            for src in c.sources {
                let _ = write!(s, " {src}");
            }
            let _ = write!(s, " {} # buildkit", c.dest);
            s
        }
        HistoryFormat::Classic => {
            let chown = c
                .chown
                .filter(|v| !v.is_empty())
                .map(|v| format!("--chown={v}"))
                .unwrap_or_default();
            classic_single(
                shell,
                &format!(
                    "{} {}{} in {} ",
                    c.instruction, chown, c.source_hash, c.dest
                ),
            )
        }
    }
}

/// `WORKDIR` (`abs_dir` already made absolute and cleaned).
pub fn workdir(format: HistoryFormat, shell: &[String], abs_dir: &str) -> String {
    match format {
        HistoryFormat::Buildkit => format!("WORKDIR {abs_dir}"),
        HistoryFormat::Classic => classic_single(shell, &format!("WORKDIR {abs_dir}")),
    }
}

fn key_values(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ENV k=v …` (values unquoted).
pub fn env(format: HistoryFormat, shell: &[String], pairs: &[(String, String)]) -> String {
    metadata(format, shell, &format!("ENV {}", key_values(pairs)))
}

/// `LABEL k=v …`.
pub fn label(format: HistoryFormat, shell: &[String], pairs: &[(String, String)]) -> String {
    metadata(format, shell, &format!("LABEL {}", key_values(pairs)))
}

/// `ARG k[=v] …`. BuildKit records the resolved value (build-arg included); classic the
/// Dockerfile default: the caller passes the value to record.
pub fn arg(format: HistoryFormat, shell: &[String], args: &[(String, Option<String>)]) -> String {
    let text = args
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    metadata(format, shell, &format!("ARG {text}"))
}

/// `USER`, `STOPSIGNAL`, `MAINTAINER`: `<INSTRUCTION> <value>`.
pub fn simple(format: HistoryFormat, shell: &[String], instruction: &str, value: &str) -> String {
    metadata(format, shell, &format!("{instruction} {value}"))
}

/// `EXPOSE`. BuildKit (dockerfile ≥1.19): normalized (`/tcp` added, ranges expanded, protocol
/// lowercased), deduplicated, sorted, Go `%v` of a slice. Classic: as written.
pub fn expose(format: HistoryFormat, shell: &[String], ports: &[String]) -> String {
    match format {
        HistoryFormat::Buildkit => {
            let set = normalize_ports(ports);
            let list: Vec<String> = set.into_iter().collect();
            format!("EXPOSE [{}]", list.join(" "))
        }
        HistoryFormat::Classic => metadata(format, shell, &format!("EXPOSE {}", ports.join(" "))),
    }
}

/// Normalizes EXPOSE specs into `port/proto` keys as `ExposedPorts` stores them.
pub fn normalize_ports(ports: &[String]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for p in ports {
        let (port, proto) = match p.split_once('/') {
            Some((port, proto)) => (port, proto.to_ascii_lowercase()),
            None => (p.as_str(), "tcp".to_string()),
        };
        let range = port
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
        match range {
            Some((a, b)) if a <= b => {
                for n in a..=b {
                    set.insert(format!("{n}/{proto}"));
                }
            }
            _ => {
                set.insert(format!("{port}/{proto}"));
            }
        }
    }
    set
}

/// `VOLUME [a b]` (Go `%v` of a slice).
pub fn volume(format: HistoryFormat, shell: &[String], paths: &[String]) -> String {
    metadata(format, shell, &format!("VOLUME [{}]", paths.join(" ")))
}

/// `SHELL [/bin/bash -c]`. Classic uses the *new* shell as prefix: pass it as `new_shell`.
pub fn shell(format: HistoryFormat, new_shell: &[String]) -> String {
    metadata(
        format,
        new_shell,
        &format!("SHELL [{}]", new_shell.join(" ")),
    )
}

/// `CMD ["a" "b"]` (Go `%q` of the final argv; shell form already wrapped in the shell).
pub fn cmd(format: HistoryFormat, shell: &[String], argv: &[String]) -> String {
    metadata(format, shell, &format!("CMD {}", go_quote_slice(argv)))
}

/// `ENTRYPOINT ["a" "b"]`.
pub fn entrypoint(format: HistoryFormat, shell: &[String], argv: &[String]) -> String {
    metadata(
        format,
        shell,
        &format!("ENTRYPOINT {}", go_quote_slice(argv)),
    )
}

/// `ONBUILD <expression>`: classic records it; BuildKit writes no history entry (`None`).
pub fn onbuild(format: HistoryFormat, shell: &[String], expression: &str) -> Option<String> {
    match format {
        HistoryFormat::Buildkit => None,
        HistoryFormat::Classic => Some(metadata(format, shell, &format!("ONBUILD {expression}"))),
    }
}

/// `HEALTHCHECK`: Go `%+v` of the config — BuildKit (dockerfile ≥1.24) prints the value
/// `{Test:[…] Interval:5m0s …}`, classic (Engine ≥29.5) the pointer `&{…}`.
pub fn healthcheck(format: HistoryFormat, shell: &[String], hc: &Healthcheck) -> String {
    let body = format!(
        "{{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        hc.test.join(" "),
        go_duration(hc.interval),
        go_duration(hc.timeout),
        go_duration(hc.start_period),
        go_duration(hc.start_interval),
        hc.retries
    );
    match format {
        HistoryFormat::Buildkit => format!("HEALTHCHECK {body}"),
        HistoryFormat::Classic => metadata(format, shell, &format!("HEALTHCHECK &{body}")),
    }
}

/// Go `fmt.Sprintf("%q", []string{…})`: `["a" "b"]`.
pub fn go_quote_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go `strconv.Quote`: the parser's implementation, so history and AST dumps quote alike.
pub use crate::dockerfile::go_quote;

/// Go `time.Duration.String()` of nanoseconds: `5m0s`, `1h0m0s`, `1.5s`, `100ms`, `0s`.
pub fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        // Sub-second durations use the largest unit that keeps an integer part.
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&fraction(u / div, u % div, div));
        out.push_str(unit);
        return out;
    }
    let secs_total = u / 1_000_000_000;
    let frac_ns = u % 1_000_000_000;
    let h = secs_total / 3600;
    let m = (secs_total / 60) % 60;
    let s = secs_total % 60;
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    out.push_str(&fraction(s, frac_ns, 1_000_000_000));
    out.push('s');
    out
}

/// `int.frac` with trailing zeros of the fraction removed (`frac` is in units of `1/div`).
fn fraction(int: u64, frac: u64, div: u64) -> String {
    if frac == 0 || div == 1 {
        return int.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use HistoryFormat::{Buildkit as B, Classic as C};

    fn sh() -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into()]
    }
    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }
    fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn run_both_formats() {
        let s = sh();
        let apt = CommandForm::Shell("apt-get update".into());
        assert_eq!(
            run(B, &s, &[], &apt),
            "RUN /bin/sh -c apt-get update # buildkit"
        );
        assert_eq!(run(C, &s, &[], &apt), "/bin/sh -c apt-get update");
        let exec = CommandForm::Exec(v(&["make", "all"]));
        assert_eq!(run(B, &s, &[], &exec), "RUN make all # buildkit");
        assert_eq!(run(C, &s, &[], &exec), "make all");
        let args = kv(&[("foo", "bar2"), ("bar", "123")]);
        let ls = CommandForm::Shell("ls /etc/".into());
        assert_eq!(
            run(B, &s, &args, &ls),
            "RUN |2 foo=bar2 bar=123 /bin/sh -c ls /etc/ # buildkit"
        );
        let args = kv(&[("B", "2"), ("A", "1")]);
        let mk = CommandForm::Shell("make".into());
        assert_eq!(run(C, &s, &args, &mk), "|2 A=1 B=2 /bin/sh -c make");
        let heredoc = CommandForm::Shell("echo a\necho b\n".into());
        assert_eq!(
            run(B, &s, &[], &heredoc),
            "RUN /bin/sh -c echo a\necho b\n # buildkit"
        );
    }

    #[test]
    fn copy_add_both_formats() {
        let s = sh();
        let srcs = v(&["src1", "src2"]);
        let c = CopyHistory {
            instruction: "COPY",
            chown: Some("a:b"),
            chmod: Some("755"),
            sources: &srcs,
            dest: "/d/",
            ..Default::default()
        };
        assert_eq!(
            copy(B, &s, &c),
            "COPY --chown=a:b --chmod=755 src1 src2 /d/ # buildkit"
        );
        let srcs = v(&["foo2", "foo3"]);
        let c = CopyHistory {
            instruction: "COPY",
            parents: true,
            sources: &srcs,
            dest: "/x",
            ..Default::default()
        };
        assert_eq!(copy(B, &s, &c), "COPY --parents foo2 foo3 /x # buildkit");
        let srcs = v(&["<<EOF"]);
        let c = CopyHistory {
            instruction: "COPY",
            sources: &srcs,
            dest: "greeting.txt",
            ..Default::default()
        };
        assert_eq!(copy(B, &s, &c), "COPY <<EOF greeting.txt # buildkit");
        let srcs = v(&["https://x/a.tgz"]);
        let c = CopyHistory {
            instruction: "ADD",
            sources: &srcs,
            dest: "/dl/",
            ..Default::default()
        };
        assert_eq!(copy(B, &s, &c), "ADD https://x/a.tgz /dl/ # buildkit");

        let hx = "ab".repeat(32);
        let file = source_hash_file(&hx);
        let c = CopyHistory {
            instruction: "COPY",
            dest: "/a.txt",
            source_hash: &file,
            ..Default::default()
        };
        assert_eq!(
            copy(C, &s, &c),
            format!("/bin/sh -c #(nop) COPY file:{hx} in /a.txt ")
        );
        let c = CopyHistory {
            instruction: "ADD",
            dest: "/",
            source_hash: &file,
            ..Default::default()
        };
        assert_eq!(
            copy(C, &s, &c),
            format!("/bin/sh -c #(nop) ADD file:{hx} in / ")
        );
        let c = CopyHistory {
            instruction: "COPY",
            chown: Some("1:2"),
            dest: "/d/",
            source_hash: "dir:00",
            ..Default::default()
        };
        // moby's "%s %s%s in %s ": no space between --chown and the hash.
        assert_eq!(
            copy(C, &s, &c),
            "/bin/sh -c #(nop) COPY --chown=1:2dir:00 in /d/ "
        );
    }

    #[test]
    fn metadata_instructions() {
        let s = sh();
        assert_eq!(workdir(B, &s, "/abs/app"), "WORKDIR /abs/app");
        assert_eq!(workdir(C, &s, "/abs/w"), "/bin/sh -c #(nop) WORKDIR /abs/w");
        let e = kv(&[("A", "1"), ("B", "two words")]);
        assert_eq!(env(B, &s, &e), "ENV A=1 B=two words");
        assert_eq!(env(C, &s, &e), "/bin/sh -c #(nop)  ENV A=1 B=two words");
        let l = kv(&[("a", "b")]);
        assert_eq!(label(B, &s, &l), "LABEL a=b");
        assert_eq!(label(C, &s, &l), "/bin/sh -c #(nop)  LABEL a=b");
        assert_eq!(
            arg(B, &s, &[("A".into(), Some("1".into())), ("B".into(), None)]),
            "ARG A=1 B"
        );
        assert_eq!(
            arg(C, &s, &[("FOO".into(), Some("bar".into()))]),
            "/bin/sh -c #(nop)  ARG FOO=bar"
        );
        assert_eq!(simple(B, &s, "USER", "u"), "USER u");
        assert_eq!(
            simple(C, &s, "USER", "1000:1000"),
            "/bin/sh -c #(nop)  USER 1000:1000"
        );
        assert_eq!(simple(B, &s, "STOPSIGNAL", "s"), "STOPSIGNAL s");
        assert_eq!(
            simple(C, &s, "STOPSIGNAL", "SIGTERM"),
            "/bin/sh -c #(nop)  STOPSIGNAL SIGTERM"
        );
        assert_eq!(simple(B, &s, "MAINTAINER", "x"), "MAINTAINER x");
        assert_eq!(
            simple(C, &s, "MAINTAINER", "x"),
            "/bin/sh -c #(nop)  MAINTAINER x"
        );
        assert_eq!(
            expose(B, &s, &v(&["2375", "5000", "1234/udp"])),
            "EXPOSE [1234/udp 2375/tcp 5000/tcp]"
        );
        assert_eq!(
            expose(C, &s, &v(&["80", "443/udp"])),
            "/bin/sh -c #(nop)  EXPOSE 80 443/udp"
        );
        assert_eq!(volume(B, &s, &v(&["/data"])), "VOLUME [/data]");
        assert_eq!(
            volume(C, &s, &v(&["/data", "/log"])),
            "/bin/sh -c #(nop)  VOLUME [/data /log]"
        );
        let bash = v(&["/bin/bash", "-c"]);
        assert_eq!(shell(B, &bash), "SHELL [/bin/bash -c]");
        assert_eq!(shell(C, &bash), "/bin/bash -c #(nop)  SHELL [/bin/bash -c]");
        assert_eq!(cmd(B, &s, &v(&["bash"])), r#"CMD ["bash"]"#);
        assert_eq!(
            cmd(B, &s, &v(&["/bin/sh", "-c", "echo hi"])),
            r#"CMD ["/bin/sh" "-c" "echo hi"]"#
        );
        assert_eq!(
            cmd(C, &s, &v(&["bash"])),
            r#"/bin/sh -c #(nop)  CMD ["bash"]"#
        );
        assert_eq!(
            entrypoint(C, &s, &v(&["/bin/app", "--flag"])),
            r#"/bin/sh -c #(nop)  ENTRYPOINT ["/bin/app" "--flag"]"#
        );
        assert_eq!(
            entrypoint(B, &s, &v(&["/bin/app", "--flag"])),
            r#"ENTRYPOINT ["/bin/app" "--flag"]"#
        );
        assert_eq!(onbuild(B, &s, "RUN make"), None);
        assert_eq!(
            onbuild(C, &s, "RUN make").as_deref(),
            Some("/bin/sh -c #(nop)  ONBUILD RUN make")
        );
        // After SHELL, classic uses the current shell as prefix.
        assert_eq!(simple(C, &bash, "USER", "u"), "/bin/bash -c #(nop)  USER u");
    }

    #[test]
    fn healthcheck_both_formats() {
        let s = sh();
        let hc = Healthcheck {
            test: v(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"]),
            interval: 300_000_000_000,
            timeout: 3_000_000_000,
            ..Default::default()
        };
        assert_eq!(
            healthcheck(B, &s, &hc),
            "HEALTHCHECK {Test:[CMD-SHELL curl -f http://localhost/ || exit 1] Interval:5m0s Timeout:3s StartPeriod:0s StartInterval:0s Retries:0}"
        );
        assert_eq!(
            healthcheck(C, &s, &hc),
            "/bin/sh -c #(nop)  HEALTHCHECK &{Test:[CMD-SHELL curl -f http://localhost/ || exit 1] Interval:5m0s Timeout:3s StartPeriod:0s StartInterval:0s Retries:0}"
        );
    }

    #[test]
    fn go_formatting_helpers() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(100_000_000), "100ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(7), "7ns");
        assert_eq!(go_duration(-2_000_000_000), "-2s");
        assert_eq!(go_duration(90_061_000_000_000), "25h1m1s");
        assert_eq!(go_quote("a\"b\\c\n\u{1}é"), r#""a\"b\\c\n\x01é""#);
    }
}
