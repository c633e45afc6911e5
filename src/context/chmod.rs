//! `--chmod`: octal (≤ 07777) or symbolic (`+x`, `u=rwX,go=rX`, `g=u`), as BuildKit accepts.
//!
//! BuildKit parses symbolic modes with `tonistiigi/dchapes-mode` (BSD `chmod(1)` grammar, no umask
//! applied). No maintained Rust crate implements that grammar, so it is written out here.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replaces the permission bits of every copied file and directory.
    Octal(u32),
    /// Applied to each copied entry's own mode.
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of the classes named (`u`/`g`/`o`/`a`; empty means all).
    who: u32,
    actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Action {
    op: char,
    perms: Vec<char>,
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o0007;
const ALL: u32 = 0o7777;

impl Chmod {
    /// Parses a `--chmod` value. Errors use BuildKit's wording for numeric-looking input.
    pub fn parse(spec: &str) -> Result<Chmod, String> {
        let non_octal = || {
            format!("invalid chmod parameter: '{spec}'. it should be octal string and between 0 and 07777")
        };
        // Like BuildKit's mode parser: anything that starts with a digit is read as octal.
        if spec.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return match u32::from_str_radix(spec, 8) {
                Ok(m) if m <= 0o7777 => Ok(Chmod::Octal(m)),
                _ => Err(non_octal()),
            };
        }
        let mut clauses = Vec::new();
        for part in spec.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => ALL,
                    _ => break,
                };
                chars.next();
            }
            let mut actions = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(format!("unexpected {op:?} in mode {spec:?}"));
                }
                let mut perms = Vec::new();
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' | 'w' | 'x' | 'X' | 's' | 't' | 'u' | 'g' | 'o' => perms.push(c),
                        '+' | '-' | '=' => break,
                        other => return Err(format!("unexpected {other:?} in mode {spec:?}")),
                    }
                    chars.next();
                }
                actions.push(Action { op, perms });
            }
            if actions.is_empty() {
                return Err(format!("missing operator (+, - or =) in mode {spec:?}"));
            }
            clauses.push(Clause { who, actions });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode an entry whose current mode is `mode` gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut cur = mode & 0o7777;
                for clause in clauses {
                    let who = if clause.who == 0 { ALL } else { clause.who };
                    for action in &clause.actions {
                        let mut bits = 0;
                        for &p in &action.perms {
                            bits |= match p {
                                'r' => 0o444 & who,
                                'w' => 0o222 & who,
                                'x' => 0o111 & who,
                                'X' if is_dir || cur & 0o111 != 0 => 0o111 & who,
                                'X' => 0,
                                's' => 0o6000 & who,
                                't' => 0o1000 & who,
                                'u' => copy_class((cur >> 6) & 7) & who,
                                'g' => copy_class((cur >> 3) & 7) & who,
                                'o' => copy_class(cur & 7) & who,
                                _ => 0,
                            };
                        }
                        match action.op {
                            '+' => cur |= bits,
                            '-' => cur &= !bits,
                            _ => cur = (cur & !who) | bits,
                        }
                    }
                }
                cur
            }
        }
    }
}

/// Spreads one rwx triple over all three classes (for `g=u` and friends).
fn copy_class(rwx: u32) -> u32 {
    rwx | (rwx << 3) | (rwx << 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(spec: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(spec).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0644").unwrap(), Chmod::Octal(0o644));
        assert_eq!(Chmod::parse("4755").unwrap().apply(0o600, false), 0o4755);
        let err = Chmod::parse("17777").unwrap_err();
        assert!(err.contains("between 0 and 07777"), "{err}");
        assert!(Chmod::parse("789").unwrap_err().contains("octal"));
    }

    #[test]
    fn symbolic() {
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("a=r", 0o777, false), 0o444);
        assert_eq!(sym("u=rwX,go=rX", 0o600, false), 0o644);
        assert_eq!(sym("u=rwX,go=rX", 0o700, false), 0o755);
        assert_eq!(sym("u=rwX,go=rX", 0o600, true), 0o755);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("o=", 0o777, false), 0o770);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("+t", 0o777, true), 0o1777);
        assert_eq!(sym("u+r-w", 0o200, false), 0o400);
    }

    #[test]
    fn symbolic_errors() {
        assert!(Chmod::parse("u").is_err());
        assert!(Chmod::parse("z+x").is_err());
        assert!(Chmod::parse("u+q").is_err());
        assert!(Chmod::parse("").is_err());
    }
}
