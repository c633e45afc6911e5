//! Instruction flags (`--name[=value]`), checked as BuildKit's `instructions/bflag.go`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Bool,
    String,
    /// Repeatable.
    Strings,
}

/// The flags an instruction accepts and the values found.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    kinds: BTreeMap<&'static str, FlagKind>,
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    pub fn new(spec: &[(&'static str, FlagKind)]) -> Self {
        Flags {
            kinds: spec.iter().copied().collect(),
            values: BTreeMap::new(),
        }
    }

    /// Reads the raw flag words; errors use BuildKit's wording.
    pub fn parse(mut self, args: &[String]) -> Result<Self, String> {
        for arg in args {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("Arg should start with -- : {arg}"));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&kind) = self.kinds.get(name) else {
                let known: Vec<&str> = self.kinds.keys().copied().collect();
                return Err(super::suggest::wrap(
                    format!("unknown flag: --{name}"),
                    name,
                    &known,
                    true,
                ));
            };
            if self.values.contains_key(name) && kind != FlagKind::Strings {
                return Err(format!("Duplicate flag specified: {name}"));
            }
            let v = match kind {
                FlagKind::Bool => match value {
                    None => "true".to_string(),
                    Some("") => return Err(format!("Missing a value on flag: {name}")),
                    Some(v) if v.eq_ignore_ascii_case("true") => "true".to_string(),
                    Some(v) if v.eq_ignore_ascii_case("false") => "false".to_string(),
                    Some(v) => {
                        return Err(format!("expecting boolean value for flag {name}, not: {v}"))
                    }
                },
                FlagKind::String | FlagKind::Strings => match value {
                    None => return Err(format!("Missing a value on flag: {name}")),
                    Some(v) => v.to_string(),
                },
            };
            self.values.entry(name.to_string()).or_default().push(v);
        }
        Ok(self)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// Some(true/false) when given, None when absent.
    pub fn bool_opt(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }

    pub fn bool(&self, name: &str) -> bool {
        self.bool_opt(name).unwrap_or(false)
    }
}
