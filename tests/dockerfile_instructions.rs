//! Typed instructions, flags, expansion rules and error locations.

use std::path::Path;

use rbuild::dockerfile::{self, shell::Lexer, CommandLine, HealthcheckInst, Instruction};

fn parse(text: &str) -> Vec<Instruction> {
    dockerfile::parse(text, Path::new("Dockerfile"))
        .unwrap()
        .instructions()
        .unwrap()
        .into_iter()
        .map(|l| l.inner)
        .collect()
}

fn err(text: &str) -> dockerfile::ParseError {
    match dockerfile::parse(text, Path::new("Dockerfile")) {
        Ok(df) => df.instructions().unwrap_err(),
        Err(e) => e,
    }
}

#[test]
fn crlf_bom_lowercase_and_directives() {
    let text = "\u{feff}# syntax=docker/dockerfile:1\r\n# escape=`\r\nfrom alpine AS Build\r\nrun echo a `\r\n  b\r\n";
    let df = dockerfile::parse(text, Path::new("Dockerfile")).unwrap();
    assert_eq!(df.escape, '`');
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    let ins = df.instructions().unwrap();
    match &ins[0].inner {
        Instruction::From(f) => assert_eq!(f.name.as_deref(), Some("build")),
        o => panic!("{o:?}"),
    }
    assert_eq!(ins[1].inner, {
        let mut r = match parse("FROM x\nRUN x").remove(1) {
            Instruction::Run(r) => r,
            _ => unreachable!(),
        };
        r.cmd = CommandLine::Shell("echo a   b".into());
        Instruction::Run(r)
    });
    assert_eq!((ins[1].start_line, ins[1].end_line), (4, 5));
}

#[test]
fn flags_are_typed_and_unknown_flags_rejected() {
    let ins = parse(
        "FROM --platform=$BUILDPLATFORM a\n\
         COPY --from=build --chown=1:1 --chmod=755 --link --exclude=*.md --exclude=x --parents --timestamp=0 a b /d/\n\
         ADD --checksum=sha256:00 --keep-git-dir=true --unpack=false --link=false http://x/y.tar /y\n\
         RUN --mount=type=cache,target=/c --mount=type=secret,id=s --network=none --security=insecure make\n\
         HEALTHCHECK --interval=5s --timeout=3s --start-period=1m --start-interval=2s --retries=3 CMD curl -f x\n",
    );
    match &ins[1] {
        Instruction::Copy(c) => {
            assert_eq!(c.from.as_deref(), Some("build"));
            assert_eq!(c.chown.as_deref(), Some("1:1"));
            assert!(c.link && c.parents);
            assert_eq!(c.exclude, vec!["*.md", "x"]);
            assert_eq!(c.timestamp.as_deref(), Some("0"));
            assert_eq!(c.sources, vec!["a", "b"]);
        }
        o => panic!("{o:?}"),
    }
    match &ins[2] {
        Instruction::Add(a) => {
            assert_eq!(a.checksum.as_deref(), Some("sha256:00"));
            assert_eq!(a.keep_git_dir, Some(true));
            assert_eq!(a.unpack, Some(false));
            assert!(!a.link);
        }
        o => panic!("{o:?}"),
    }
    match &ins[3] {
        Instruction::Run(r) => {
            assert_eq!(r.mounts.len(), 2);
            assert_eq!(r.network.as_deref(), Some("none"));
            assert_eq!(r.security.as_deref(), Some("insecure"));
            assert_eq!(r.cmd, CommandLine::Shell("make".into()));
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(
        ins[4],
        Instruction::Healthcheck(HealthcheckInst::Cmd {
            test: CommandLine::Shell("curl -f x".into()),
            interval: Some(5_000_000_000),
            timeout: Some(3_000_000_000),
            start_period: Some(60_000_000_000),
            start_interval: Some(2_000_000_000),
            retries: Some(3),
        })
    );
    let e = err("FROM a\n\nCOPY --bogus=1 a b\n");
    assert_eq!(e.to_string(), "Dockerfile:3: unknown flag: --bogus");
    assert_eq!(e.line_text, "COPY --bogus=1 a b");
    assert!(err("FROM a\nADD --from=x a b\n")
        .to_string()
        .contains("unknown flag: --from"));
    assert!(err("FROM a\nRUN --network=bogus x\n")
        .to_string()
        .starts_with("Dockerfile:2"));
    assert_eq!(
        err("FROM a\nRUN x\nFOO bar\n").to_string(),
        "Dockerfile:3:1: unknown instruction: FOO (did you mean FROM?)"
    );
    // As BuildKit's suggest.Search: nothing within edit distance 2, no suggestion.
    assert_eq!(
        err("FROM a\nRUN x\nBOGUS bar\n").to_string(),
        "Dockerfile:3:1: unknown instruction: BOGUS"
    );
    assert_eq!(
        err("FROM a\nworkdri /x\n").to_string(),
        "Dockerfile:2:1: unknown instruction: WORKDRI (did you mean workdir?)"
    );
    assert!(err("FROM a\nHEALTHCHECK --interval=1x CMD a\n")
        .to_string()
        .contains("Dockerfile:2"));
}

#[test]
fn json_versus_shell_form() {
    let ins = parse(
        "FROM a\nCMD [\"a\", \"b\"]\nCMD ['a']\nENTRYPOINT [\"x\"\nSHELL [\"/bin/bash\", \"-c\"]\n",
    );
    assert_eq!(
        ins[1],
        Instruction::Cmd(dockerfile::CmdInst {
            cmd: CommandLine::Exec(vec!["a".into(), "b".into()])
        })
    );
    assert_eq!(
        ins[2],
        Instruction::Cmd(dockerfile::CmdInst {
            cmd: CommandLine::Shell("['a']".into())
        })
    );
    assert_eq!(
        ins[3],
        Instruction::Entrypoint(dockerfile::EntrypointInst {
            cmd: CommandLine::Shell("[\"x\"".into())
        })
    );
    assert!(err("FROM a\nSHELL /bin/sh\n")
        .to_string()
        .contains("JSON form"));
    assert!(err("FROM a\nCMD [1]\n")
        .to_string()
        .contains("strings only"));
}

#[test]
fn expansion_rules() {
    let env: Vec<(String, String)> = vec![
        ("a".into(), "old".into()),
        ("V".into(), "1.2".into()),
        ("D".into(), "/srv".into()),
    ];
    let lx = Lexer::default();
    let ins = parse(
        "FROM img:$V\nENV a=new b=$a c=\"x  y\" d='$a'\nLABEL \"k $V\"=v\nRUN echo $a\nCOPY --from=v1 --chown=$V ${D}/a $D/\nEXPOSE $V 80/tcp\nWORKDIR ${D:-/x}/w\nONBUILD RUN $a\nUSER u$V\nARG X=${V}\n",
    );
    let ex: Vec<Instruction> = ins.iter().map(|i| i.expand(&lx, &env).unwrap()).collect();
    match &ex[1] {
        Instruction::Env(e) => assert_eq!(
            e.pairs,
            vec![
                ("a".into(), "new".into()),
                ("b".into(), "old".into()),
                ("c".into(), "x  y".into()),
                ("d".into(), "$a".into())
            ]
        ),
        o => panic!("{o:?}"),
    }
    match &ex[2] {
        Instruction::Label(l) => assert_eq!(l.pairs, vec![("k 1.2".into(), "v".into())]),
        o => panic!("{o:?}"),
    }
    assert_eq!(ex[3], ins[3], "RUN is not expanded");
    match &ex[4] {
        Instruction::Copy(c) => {
            assert_eq!(c.sources, vec!["/srv/a"]);
            assert_eq!(c.dest, "/srv/");
            assert_eq!(c.from.as_deref(), Some("v1"));
        }
        o => panic!("{o:?}"),
    }
    match &ex[5] {
        Instruction::Expose(e) => assert_eq!(e.ports, vec!["1.2", "80/tcp"]),
        o => panic!("{o:?}"),
    }
    match &ex[6] {
        Instruction::Workdir(w) => assert_eq!(w.path, "/srv/w"),
        o => panic!("{o:?}"),
    }
    assert_eq!(ex[7], ins[7], "ONBUILD is not expanded");
    match &ex[9] {
        Instruction::Arg(a) => assert_eq!(a.args, vec![("X".into(), Some("1.2".into()))]),
        o => panic!("{o:?}"),
    }
    let e = ins[4].expand(&lx, &vec![("D".to_string(), "x".to_string())]);
    assert!(e.is_ok());
    // BuildKit never expands `--from`: a variable there is an error, set or not.
    let e = parse("FROM a\nCOPY --from=$V a b\n")[1]
        .expand(&lx, &env)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("variable expansion is not supported for --from"),
        "{e}"
    );
    assert!(parse("FROM a\nUSER ${U:?must be set}\n")[1]
        .expand(&lx, &env)
        .is_err());
}

#[test]
fn onbuild_and_others() {
    let ins = parse("FROM a\nONBUILD copy . /app\nSTOPSIGNAL SIGTERM\nVOLUME [\"/a\", \"/b\"]\nVOLUME /c /d\nMAINTAINER me\nHEALTHCHECK NONE\nARG A B=2\n");
    match &ins[1] {
        Instruction::Onbuild(o) => {
            assert_eq!(o.expression, "copy . /app");
            assert!(matches!(*o.trigger, Instruction::Copy(_)));
        }
        o => panic!("{o:?}"),
    }
    match &ins[4] {
        Instruction::Volume(v) => assert_eq!(v.volumes, vec!["/c", "/d"]),
        o => panic!("{o:?}"),
    }
    assert_eq!(ins[6], Instruction::Healthcheck(HealthcheckInst::None));
    match &ins[7] {
        Instruction::Arg(a) => assert_eq!(
            a.args,
            vec![("A".into(), None), ("B".into(), Some("2".into()))]
        ),
        o => panic!("{o:?}"),
    }
    assert!(err("FROM a\nONBUILD ONBUILD RUN x\n")
        .to_string()
        .contains("Chaining ONBUILD"));
    assert!(err("FROM a\nONBUILD FROM x\n")
        .to_string()
        .contains("isn't allowed"));
    assert!(err("FROM a b\n").to_string().contains("one or three"));
    assert!(err("FROM a AS 1x\n").to_string().contains("invalid name"));
    assert!(err("FROM a\nCOPY onlyone\n")
        .to_string()
        .contains("at least two"));
    assert!(err("FROM a\nENV\n").to_string().contains("at least one"));
    assert!(err("FROM a\nWORKDIR\n").to_string().contains("exactly one"));
    assert_eq!(
        parse("FROM a\nWORKDIR a b\n")[1],
        Instruction::Workdir(dockerfile::WorkdirInst { path: "a b".into() })
    );
}

#[test]
fn directive_errors() {
    let e = err("# escape=x\nFROM a\n");
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("invalid escape token"));
    assert!(err("# syntax=a\n# syntax=b\nFROM a\n")
        .to_string()
        .contains("only one syntax"));
    assert!(err("").to_string().contains("no instructions"));
}
