//! `RUN --mount=...` values, checked as BuildKit's `instructions/commands_runmount.go`.

use super::shell::{Env, Lexer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// One parsed `--mount`. Defaults not spelled out by the user are left as `None`; BuildKit's
/// defaults are: cache `sharing=shared`, cache `id` = target, cache mode 0755 uid/gid 0,
/// secret target `/run/secrets/<id>` mode 0400, ssh target `/run/buildkit/ssh_agent.<N>` mode 0600.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub typ: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    /// Stage name/index or image the source is taken from (bind/cache).
    pub from: Option<String>,
    /// Resolved: bind/secret/ssh default read-only; cache/tmpfs default read-write.
    pub readonly: bool,
    pub id: Option<String>,
    /// `shared`, `private` or `locked` (cache only).
    pub sharing: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size limit in bytes.
    pub size: Option<i64>,
    pub required: bool,
    /// secret: expose as this environment variable.
    pub env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MountError(pub String);

/// Parses a `--mount` value literally (no variable expansion).
/// A value holding a variable is not checked here (only kept, for target/source/id): like
/// BuildKit, its meaning is decided once it is expanded (`parse_mount_expanded`).
pub fn parse_mount(s: &str) -> Result<RunMount, MountError> {
    parse_mount_with(s, &|v: &str| Ok(v.to_string()), true)
}

/// Parses a `--mount` value, expanding each `key=value` value as BuildKit does.
pub fn parse_mount_expanded(s: &str, lexer: &Lexer, env: &dyn Env) -> Result<RunMount, MountError> {
    parse_mount_with(
        s,
        &|v: &str| {
            lexer
                .process_word(v, env)
                .map_err(|e| MountError(e.to_string()))
        },
        false,
    )
}

type Expander<'a> = dyn Fn(&str) -> Result<String, MountError> + 'a;

fn err<T>(m: impl Into<String>) -> Result<T, MountError> {
    Err(MountError(m.into()))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, MountError> {
    // Go strconv.ParseBool
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => err(format!("invalid value for {key}: {v}")),
    }
}

fn parse_mount_with(s: &str, expand: &Expander<'_>, literal: bool) -> Result<RunMount, MountError> {
    let fields = csv_fields(s)?;
    let mut m = RunMount {
        typ: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let mut ro_auto = true;
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.typ, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => {
                    return err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.typ.as_str()
                    ))
                }
                _ => return err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        // As BuildKit: `from=` names a stage or image literally; a variable there is refused
        // (an alias stage does the job), so it can never expand to nothing.
        if key == "from" && value.find('$').is_some_and(|i| i + 1 != value.len()) {
            return err("'from' doesn't support variable expansion, define alias stage instead");
        }
        if literal && value.contains('$') {
            match key.as_str() {
                "target" | "dst" | "destination" => m.target = Some(value.to_string()),
                "source" | "src" => m.source = Some(value.to_string()),
                "id" => m.id = Some(value.to_string()),
                "env" => m.env = Some(value.to_string()),
                _ => {}
            }
            continue;
        }
        let value = expand(value)?;
        let unexpected = |m: &RunMount| {
            err::<()>(format!(
                "unexpected key '{key}' for mount type '{}'",
                m.typ.as_str()
            ))
        };
        match key.as_str() {
            "type" => {
                m.typ = match value.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return err(super::suggest::wrap(
                            format!("unsupported mount type \"{value}\""),
                            &value,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                            true,
                        ))
                    }
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.typ, MountType::Secret | MountType::Ssh) {
                    unexpected(&m)?;
                }
                m.required = parse_bool(&key, &value)?;
            }
            "size" => {
                if m.typ != MountType::Tmpfs {
                    unexpected(&m)?;
                }
                m.size = Some(ram_in_bytes(&value)?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                if m.typ != MountType::Cache {
                    unexpected(&m)?;
                }
                let v = value.to_lowercase();
                if !matches!(v.as_str(), "shared" | "private" | "locked") {
                    return err(format!("unsupported sharing value \"{value}\""));
                }
                m.sharing = Some(v);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| MountError(format!("invalid value {value} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(
                    value
                        .parse()
                        .map_err(|_| MountError(format!("invalid value {value} for uid")))?,
                )
            }
            "gid" => {
                m.gid = Some(
                    value
                        .parse()
                        .map_err(|_| MountError(format!("invalid value {value} for gid")))?,
                )
            }
            "env" => m.env = Some(value),
            _ => {
                return err(super::suggest::wrap(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    &[
                        "type",
                        "from",
                        "source",
                        "target",
                        "readonly",
                        "id",
                        "sharing",
                        "required",
                        "size",
                        "mode",
                        "uid",
                        "gid",
                        "src",
                        "dst",
                        "destination",
                        "ro",
                        "rw",
                        "readwrite",
                        "env",
                    ],
                    true,
                ))
            }
        }
    }
    let t = m.typ.as_str();
    if m.typ == MountType::Tmpfs {
        if m.mode.is_some() {
            return err(format!("mode not allowed for \"{t}\" type mounts"));
        }
        if m.uid.is_some() {
            return err(format!("uid not allowed for \"{t}\" type mounts"));
        }
        if m.gid.is_some() {
            return err(format!("gid not allowed for \"{t}\" type mounts"));
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.typ, MountType::Cache | MountType::Tmpfs);
    }
    match m.typ {
        MountType::Secret => {
            if m.from.is_some() {
                return err("secret mount should not have a from");
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
                return err("invalid secret mount. one of source, target required");
            }
            if m.source.is_some() && m.id.is_some() {
                return err("both source and id can't be set");
            }
        }
        MountType::Ssh => {}
        _ => {
            if m.target.as_deref().unwrap_or("").is_empty() {
                return err(format!("mount type {t} requires a target"));
            }
        }
    }
    Ok(m)
}

/// Go `encoding/csv` reading of one record: `,`-separated, `"`-quoted fields with `""` escapes.
fn csv_fields(s: &str) -> Result<Vec<String>, MountError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return err(
                            "failed to parse csv mounts: extraneous or missing \" in quoted-field",
                        )
                    }
                    Some('"') => match chars.peek() {
                        Some('"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some(',') | None => break,
                        Some(_) => return err(
                            "failed to parse csv mounts: extraneous or missing \" in quoted-field",
                        ),
                    },
                    Some(c) => field.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '"' {
                    return err("failed to parse csv mounts: bare \" in non-quoted-field");
                }
                field.push(c);
                chars.next();
            }
        }
        out.push(field);
        match chars.next() {
            Some(',') => continue,
            _ => return Ok(out),
        }
    }
}

/// docker/go-units `RAMInBytes`: `512m`, `1.5g`, `100kb`, binary multiples.
fn ram_in_bytes(s: &str) -> Result<i64, MountError> {
    let bad = || MountError(format!("invalid size: '{s}'"));
    let num_len = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(s.len(), |(i, _)| i);
    let (num, unit) = s.split_at(num_len);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((n * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,id=pip").unwrap();
        assert_eq!(m.typ, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing.as_deref(), Some("locked"));
        assert!(!m.readonly);
        let m = parse_mount("type=bind,from=build,source=/out,target=/in").unwrap();
        assert!(m.readonly);
        assert_eq!(m.from.as_deref(), Some("build"));
        let m = parse_mount("type=bind,target=/x,rw").unwrap();
        assert!(!m.readonly);
        let m = parse_mount("type=secret,id=tok,required,env=TOKEN").unwrap();
        assert!(m.required && m.readonly);
        let m = parse_mount("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = parse_mount("type=cache,target=/c,mode=0700,uid=1000").unwrap();
        assert_eq!((m.mode, m.uid), (Some(0o700), Some(1000)));
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("type=bind,target=/x,size=1m").is_err());
        assert!(parse_mount("type=bind,target=/x,bogus=1").is_err());
        assert!(parse_mount("type=bind").is_err());
        assert!(parse_mount("type=tmpfs,target=/t,mode=0700").is_err());
        assert!(parse_mount("type=secret,id=a,from=x").is_err());
        assert!(parse_mount("target=/x,sharing=private").is_err());
        assert_eq!(
            parse_mount("\"target=/a,b\",type=bind")
                .unwrap()
                .target
                .as_deref(),
            Some("/a,b")
        );
    }

    #[test]
    fn expanded() {
        let env = vec![("D".to_string(), "/cache".to_string())];
        let m = parse_mount_expanded("type=cache,target=$D", &Lexer::default(), &env).unwrap();
        assert_eq!(m.target.as_deref(), Some("/cache"));
    }
}
