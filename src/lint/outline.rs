//! `--call outline` (the build args and secrets a target uses) and `--call targets` (the stages
//! and their descriptions), read from the Dockerfile alone as BuildKit's outline does.

use super::split_stages;
use crate::dockerfile::{parse_mount, Dockerfile, Instruction, MountType, Node};

/// A stage and the `# name description` comment above its FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub description: String,
    /// The last stage: what a build without --target builds.
    pub default: bool,
}

/// A build arg a target reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineArg {
    pub name: String,
    pub default: Option<String>,
    pub description: String,
}

/// A secret a target's RUN mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlineSecret {
    pub id: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub target: String,
    pub description: String,
    pub args: Vec<OutlineArg>,
    pub secrets: Vec<OutlineSecret>,
}

/// A comment describes `name` when its first word is the name.
fn description_of(n: &Node, name: &str) -> String {
    let Some(c) = n.comments.last() else {
        return String::new();
    };
    match c.split_once(' ') {
        Some((first, rest)) if first == name => rest.trim().to_string(),
        _ => String::new(),
    }
}

/// Named stages, in file order.
pub fn targets(df: &Dockerfile) -> Vec<Target> {
    let (_, stages) = split_stages(&df.nodes);
    let count = stages.len();
    stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let name = s.name.clone()?;
            Some(Target {
                description: description_of(s.from, &name),
                name,
                default: i + 1 == count,
            })
        })
        .collect()
}

/// The args and secrets `target` (default: the last stage) and the stages it depends on use.
/// None when there is no such stage.
pub fn outline(df: &Dockerfile, target: Option<&str>) -> Option<Outline> {
    let (globals, stages) = split_stages(&df.nodes);
    let idx = match target {
        Some(t) => stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t.to_lowercase()))?,
        None => stages.len().checked_sub(1)?,
    };
    // The stages reached from the target through FROM, COPY --from and RUN --mount=from.
    let mut wanted = vec![idx];
    let mut i = 0;
    while i < wanted.len() {
        let st = &stages[wanted[i]];
        let mut refs: Vec<String> = st.from.arg_words().first().cloned().into_iter().collect();
        for n in st.body {
            match Instruction::from_node(n) {
                Ok(Instruction::Copy(c)) => refs.extend(c.from),
                Ok(Instruction::Run(r)) => refs.extend(
                    r.mounts
                        .iter()
                        .filter_map(|m| parse_mount(m).ok().and_then(|m| m.from)),
                ),
                _ => {}
            }
        }
        for r in refs {
            let r = r.to_lowercase();
            let found = stages
                .iter()
                .position(|s| s.name.as_deref() == Some(r.as_str()))
                .or_else(|| r.parse::<usize>().ok().filter(|n| *n < stages.len()));
            if let Some(f) = found {
                if !wanted.contains(&f) {
                    wanted.push(f);
                }
            }
        }
        i += 1;
    }
    wanted.sort_unstable();

    let mut out = Outline {
        target: stages[idx].name.clone().unwrap_or_default(),
        description: stages[idx]
            .name
            .as_deref()
            .map(|n| description_of(stages[idx].from, n))
            .unwrap_or_default(),
        args: Vec::new(),
        secrets: Vec::new(),
    };
    let mut add_args = |n: &Node, used: &dyn Fn(&str) -> bool| {
        if let Ok(Instruction::Arg(a)) = Instruction::from_node(n) {
            for (k, d) in a.args {
                if used(&k) && !out.args.iter().any(|x| x.name == k) {
                    out.args.push(OutlineArg {
                        description: description_of(n, &k),
                        name: k,
                        default: d,
                    });
                }
            }
        }
    };
    // Global ARGs count when a wanted FROM line mentions them.
    let from_text: String = wanted
        .iter()
        .map(|i| stages[*i].from.original.clone())
        .collect();
    for n in globals {
        add_args(n, &|k: &str| {
            from_text.contains(&format!("${k}")) || from_text.contains(&format!("${{{k}"))
        });
    }
    for i in &wanted {
        for n in stages[*i].body {
            add_args(n, &|_| true);
        }
    }
    for i in &wanted {
        for n in stages[*i].body {
            let Ok(Instruction::Run(r)) = Instruction::from_node(n) else {
                continue;
            };
            for m in r.mounts.iter().filter_map(|m| parse_mount(m).ok()) {
                if m.typ != MountType::Secret {
                    continue;
                }
                let id = m.id.clone().or_else(|| {
                    m.target
                        .as_deref()
                        .and_then(|t| t.rsplit('/').next())
                        .map(str::to_string)
                });
                if let Some(id) = id {
                    if let Some(s) = out.secrets.iter_mut().find(|s| s.id == id) {
                        s.required |= m.required;
                    } else {
                        out.secrets.push(OutlineSecret {
                            id,
                            required: m.required,
                        });
                    }
                }
            }
        }
    }
    Some(out)
}
