//! BuildKit's Dockerfile-frontend conformance data (see /work/shared/conformance/README.md).
//! The data is located via `RBUILD_CONFORMANCE_DIR`, else `../shared/conformance` next to the
//! checkout, else the copy kept in `testdata/conformance` (Apache-2.0 data, LICENSE and NOTICE
//! alongside); a missing directory FAILS these tests.

use std::path::{Path, PathBuf};

use rbuild::dockerfile::{self, shell::Lexer};

fn buildkit_dir() -> PathBuf {
    let base = std::env::var_os("RBUILD_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let shared = manifest.join("../shared/conformance");
            if shared.join("buildkit").is_dir() {
                shared
            } else {
                manifest.join("testdata/conformance")
            }
        });
    let dir = base.join("buildkit");
    assert!(
        dir.is_dir(),
        "conformance data not found at {} (set RBUILD_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn testfiles_dump_exactly_their_result() {
    let cases = subdirs(&buildkit_dir().join("testfiles"));
    assert!(
        cases.len() >= 33,
        "expected >= 33 cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let df_path = case.join("Dockerfile");
        let text = std::fs::read_to_string(&df_path).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        match dockerfile::parse(&text, &df_path) {
            Ok(df) => {
                let got = df.dump();
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    eprintln!(
        "buildkit testfiles: {}/{} match",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_testfiles_are_rejected() {
    let cases = subdirs(&buildkit_dir().join("testfiles-negative"));
    assert!(cases.len() >= 4);
    for case in &cases {
        let df_path = case.join("Dockerfile");
        let text = std::fs::read_to_string(&df_path).unwrap();
        let result = dockerfile::parse(&text, &df_path).and_then(|df| df.instructions());
        let err = result
            .err()
            .unwrap_or_else(|| panic!("{} was accepted", case.display()));
        // Errors name the file.
        assert!(
            err.to_string().starts_with(&df_path.display().to_string()),
            "{err}"
        );
    }
    eprintln!("buildkit testfiles-negative: {} rejected", cases.len());
}

#[test]
fn testfile_line_spans() {
    let p = buildkit_dir().join("testfile-line/Dockerfile");
    let df = dockerfile::parse(&std::fs::read_to_string(&p).unwrap(), &p).unwrap();
    let spans: Vec<(usize, usize)> = df
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(spans, vec![(5, 5), (11, 12), (17, 31)]);
    let located = df.instructions().unwrap();
    assert_eq!(located[2].start_line, 17);
    assert_eq!(located[2].end_line, 31);
}

#[test]
fn shell_env_var_test() {
    let text = std::fs::read_to_string(buildkit_dir().join("shell-envVarTest")).unwrap();
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lex = Lexer::new('\\');
    let (mut passed, mut failures) = (0, Vec::new());
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, '|').collect();
        assert_eq!(parts.len(), 3, "bad line {line:?}");
        let (platform, input, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform != "A" && platform != "U" {
            continue;
        }
        let got = lex.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(v), e) => v == e,
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    eprintln!(
        "shell-envVarTest: {passed}/{} A/U rows pass",
        passed + failures.len()
    );
    assert!(passed > 200);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn shell_words_test() {
    let text = std::fs::read_to_string(buildkit_dir().join("shell-wordsTest")).unwrap();
    let lex = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut passed, mut failures) = (0, Vec::new());
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        // Trailing spaces of the expected words are significant (BuildKit trims the left only).
        let (input, expected) = (input.trim(), expected.trim_start());
        let got = lex.process_words(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(words), e) => words.join(",") == e,
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    eprintln!(
        "shell-wordsTest: {passed}/{} rows pass",
        passed + failures.len()
    );
    assert!(passed >= 20);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
