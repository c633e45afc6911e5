//! Deterministic random-input smoke test: mutates the conformance Dockerfiles and a few
//! heredoc/expansion seeds with a small PRNG and checks nothing panics. Runs for
//! `RBUILD_FUZZ_SECS` seconds (default 3). The libFuzzer target lives in `fuzz/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbuild::dockerfile::{self, shell::Lexer};
use rbuild::plan::{Plan, PlanOptions};

/// xorshift64*: tiny and reproducible, enough to drive mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "\\",
    "`",
    "\n",
    "\r\n",
    "\t",
    " ",
    "\"",
    "'",
    "$",
    "${",
    "}",
    ":-",
    ":+",
    ":?",
    "#",
    "##",
    "%",
    "%%",
    "/",
    "//",
    "<<",
    "<<-",
    "EOF",
    "<<EOF\n",
    "\nEOF\n",
    "[",
    "]",
    "\",\"",
    "--",
    "--from=",
    "--mount=type=cache,target=/c",
    "ONBUILD ",
    "RUN ",
    "COPY ",
    "FROM ",
    "ARG ",
    "ENV ",
    "AS ",
    "=",
    "\u{feff}",
    "# escape=`\n",
    "# syntax=x\n",
    "HEALTHCHECK CMD ",
    "\u{0}",
    "한",
    "\u{a0}",
    "*",
    "?",
];

fn seeds() -> Vec<String> {
    let mut v = vec![
        "FROM a AS b\nRUN <<EOF cat\nhi $X\nEOF\nCOPY <<A <<B /d/\n1\nA\n2\nB\n".to_string(),
        "ARG V=1\nFROM x:${V:-2} AS s\nARG V\nENV A=$V B=${A}\nCOPY --from=s / /\n".to_string(),
        "# escape=`\nFROM w\nRUN dir `\n  c:\\\nONBUILD RUN x\n".to_string(),
        "FROM a\nRUN <<-\"E\" python3\n\tprint(1)\n\tE\nHEALTHCHECK --interval=1s CMD [\"a\"]\n"
            .to_string(),
    ];
    let base = std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"))
        .join("buildkit/testfiles");
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            if let Ok(t) = std::fs::read_to_string(e.path().join("Dockerfile")) {
                v.push(t);
            }
        }
    }
    v
}

fn mutate(rng: &mut Rng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..1 + rng.below(8) {
        let pos = rng.below(chars.len() + 1);
        match rng.below(4) {
            0 if !chars.is_empty() => {
                let end = (pos + rng.below(6)).min(chars.len());
                chars.drain(pos.min(end)..end);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                chars.splice(pos..pos, t.chars());
            }
            2 if !chars.is_empty() => {
                let i = rng.below(chars.len());
                chars[i] = char::from_u32(rng.below(0x80) as u32).unwrap_or('x');
            }
            _ => {
                // duplicate a slice
                let a = rng.below(chars.len() + 1);
                let b = (a + rng.below(40)).min(chars.len());
                let dup: Vec<char> = chars[a..b].to_vec();
                chars.splice(pos..pos, dup);
            }
        }
    }
    chars.into_iter().collect()
}

fn exercise(text: &str) {
    let env = vec![
        ("A".to_string(), "x y".to_string()),
        ("B".to_string(), String::new()),
    ];
    let _ = Lexer::new('\\').process_words(text, &env);
    let _ = Lexer::new('`').process_word(text, &env);
    if let Ok(df) = dockerfile::parse(text, Path::new("Dockerfile")) {
        let _ = df.dump();
        if let Ok(instrs) = df.instructions() {
            let lexer = Lexer::new(df.escape);
            for i in &instrs {
                let _ = i.inner.expand(&lexer, &env);
            }
        }
        let _ = Plan::new(&df, &PlanOptions::default());
    }
}

#[test]
fn random_inputs_never_panic() {
    let secs: u64 = std::env::var("RBUILD_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seeds = seeds();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let mut s = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(3) {
            s = mutate(&mut rng, &s);
        }
        let input = s.clone();
        if std::panic::catch_unwind(|| exercise(&input)).is_err() {
            panic!("panic on input {s:?}");
        }
        runs += 1;
    }
    eprintln!("random inputs: {runs} runs in {secs}s, no panic");
    assert!(runs > 0);
}
