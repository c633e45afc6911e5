//! SECURITY.md (a) group H: hostile Dockerfiles give an error naming the file and line — never a
//! panic, a hang or an unbounded allocation. Each test is named after its case id.

mod common;

use rbuild::dockerfile::{self, shell::Lexer, ParseError};
use rbuild::plan::{Plan, PlanError, PlanOptions};
use std::path::Path;

/// Parses, types, expands and plans `text`; returns the first error.
fn first_error(text: &str) -> Option<String> {
    let path = Path::new("Dockerfile");
    let df = match dockerfile::parse(text, path) {
        Ok(df) => df,
        Err(e) => return Some(checked(e)),
    };
    let instrs = match df.instructions() {
        Ok(i) => i,
        Err(e) => return Some(checked(e)),
    };
    let lexer = Lexer::new(df.escape);
    for i in &instrs {
        if let Err(e) = i.inner.expand(&lexer, &Vec::<(String, String)>::new()) {
            return Some(format!("Dockerfile:{}: {e}", i.start_line));
        }
    }
    match Plan::new(&df, &PlanOptions::default()) {
        Ok(_) => None,
        Err(PlanError::Dockerfile(e)) => Some(checked(e)),
        Err(e) => Some(e.to_string()),
    }
}

/// The error names the Dockerfile; a line-level error also names its line.
fn checked(e: ParseError) -> String {
    let s = e.to_string();
    assert!(s.starts_with("Dockerfile"), "{s}");
    if e.line > 0 {
        assert!(s.starts_with(&format!("Dockerfile:{}", e.line)), "{s}");
    }
    s
}

fn err_at(text: &str, line: usize) -> String {
    let e = first_error(text).unwrap_or_else(|| panic!("{text:?} must be rejected"));
    assert!(
        e.starts_with(&format!("Dockerfile:{line}")),
        "{text:?}: expected an error at line {line}, got {e}"
    );
    e
}

#[test]
fn h1_no_instructions_or_no_from() {
    let e = first_error("").expect("an empty Dockerfile is an error");
    assert!(e.contains("Dockerfile"), "{e}");
    let e = first_error("# only\n# comments\n").expect("comments only is an error");
    assert!(e.contains("Dockerfile"), "{e}");
    for text in ["ARG A=1\nARG B\n", "ARG A=1\nRUN true\n"] {
        let e = first_error(text).expect("a Dockerfile without FROM is an error");
        assert!(
            e.starts_with("Dockerfile") && (e.contains("FROM") || e.contains("stage")),
            "{e}"
        );
    }
}

#[test]
fn h2_directive_with_blank_value() {
    // kaniko #720: `#CheCk= ` then an instruction-less line.
    assert!(first_error("#CheCk= \n0").is_some());
    err_at("#CheCk= \nFROM scratch\n0\n", 3);
    err_at("# escape= \nFROM scratch\nCOPY a \\\n", 1);
}

#[test]
fn h3_copy_from_bad_stage_references() {
    // A stage index that does not exist yet, or its own stage: errors at that line.
    err_at("FROM scratch AS a\nCOPY --from=a x y\n", 2);
    err_at("FROM scratch\nFROM scratch AS b\nCOPY --from=1 x y\n", 3);
    err_at("FROM scratch\nCOPY --from=99 x y\n", 2);
    // `-1` is no stage, so it names an image: the build stops at that line.
    let t = tempfile::tempdir().unwrap();
    let ctx = common::context(
        &t.path().join("ctx"),
        "FROM scratch\nCOPY --from=-1 x y\n",
        &[],
    );
    let r = common::rbuild(&t.path().join("root"), &[ctx.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("Dockerfile:2"), "{}", r.stderr);
}

#[test]
fn h4_odd_expansions_and_characters() {
    err_at("FROM ${0:+0}\n", 1);
    err_at("FROM scratch\nCOPY \\", 2);
    err_at("FROM scratch\nCOPY \u{a0}\n", 2);
    err_at("FROM \u{85}\nRUN true\n", 1);
    // Invalid UTF-8 never reaches the parser: the build names the file instead.
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), b"FROM \x85\n").unwrap();
    let r = common::rbuild(&t.path().join("root"), &[ctx.to_str().unwrap()]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
}

#[test]
fn h5_destination_empty_after_expansion() {
    // buildkit #679, as BuildKit settled it (testEmptyDestDir): an empty destination is the
    // working directory, never a path outside it.
    let t = tempfile::tempdir().unwrap();
    let ctx = common::context(
        &t.path().join("ctx"),
        "FROM scratch\nENV foo=\"\"\nWORKDIR /w\nCOPY Dockerfile $foo\n",
        &[],
    );
    let root = t.path().join("root");
    let out = t.path().join("out");
    let o = format!("type=local,dest={}", out.display());
    let r = common::rbuild(&root, &["build", "-o", &o, ctx.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(out.join("w/Dockerfile").is_file());
    common::assert_nothing_mounted_under(&root);
}

#[test]
fn h6_overlong_line() {
    let long = format!("FROM scratch\nRUN echo {}\n", "a".repeat(70_000));
    let e = err_at(&long, 2);
    assert!(e.contains("65535"), "{e}");
    // As in BuildKit the limit is per physical line (its scanner's token size).
    let in_heredoc = format!("FROM scratch\nRUN <<EOF\n{}\nEOF\n", "d".repeat(70_000));
    err_at(&in_heredoc, 3);
    // Just under the limit is fine.
    let ok = format!("FROM scratch\nRUN {}\n", "c".repeat(65_000));
    assert_eq!(first_error(&ok), None);
}

#[test]
fn h7_malformed_instructions() {
    err_at("FROM scratch\nENV\n", 2);
    err_at("FROM scratch\nENV A\n", 2);
    err_at("FROM scratch\nRUN <<EOF\necho never closed\n", 2);
    // Valid JSON that is not a string array is an error (BuildKit's testfiles-negative);
    // unterminated JSON is the shell form, as in BuildKit.
    err_at("FROM scratch\nCMD [[\"a\"]]\n", 2);
    assert_eq!(first_error("FROM scratch\nCMD [\"a\"\n"), None);
    assert_eq!(
        first_error("FROM scratch\r\nRUN <<EOF\r\necho hi\r\nEOF\r\n"),
        None
    );
    assert_eq!(first_error("FROM scratch\nRUN << EOF\n"), None);
}

#[test]
fn h8_expansion_bombs_are_bounded() {
    // 2,000 nested defaults: an error, not a stack overflow.
    let nested = format!(
        "FROM scratch\nENV X={}x{}\n",
        "${a:-".repeat(2000),
        "}".repeat(2000)
    );
    err_at(&nested, 2);
    // "Billion laughs": each ARG doubles the previous one.
    let mut laughs = String::from("ARG A0=0123456789abcdef\n");
    for i in 1..40 {
        laughs.push_str(&format!("ARG A{i}=${{A{p}}}${{A{p}}}\n", p = i - 1));
    }
    laughs.push_str("FROM scratch\n");
    let e = first_error(&laughs).expect("doubling ARGs must be refused");
    assert!(e.contains("too long") || e.contains("exceeds"), "{e}");
    // A huge replacement: the lexer refuses instead of allocating gigabytes.
    let lexer = Lexer::new('\\');
    let big = vec![("x".to_string(), "a".repeat(1 << 20))];
    assert!(lexer
        .process_word(&format!("${{x//a/{}}}", "b".repeat(64)), &big)
        .is_err());
}
