//! Ports of BuildKit's `frontend/dockerfile/dockerfile_args_test.go` (Dockerfile data and assertions;
//! `FROM busybox`/`alpine` is the busybox-static image of tests/bk).

mod bk;
mod common;

use bk::*;

#[test]
fn global_arg() {
    let b = Bk::new();
    b.dockerfile("ARG tag=nosuchtag\nFROM busybox:${tag}\n");
    b.build(&["--build-arg", "tag=latest"]);
}

#[test]
fn global_arg_errors() {
    let b = Bk::new();
    b.dockerfile("ARG FOO=${FOO:?\"custom error\"}\nFROM busybox\n");
    let e = b.fail(&[]);
    assert!(e.contains("FOO: custom error"), "{e}");
    b.build(&["--build-arg", "FOO=bar"]);
}

#[test]
fn arg_default_expansion() {
    let b = Bk::new();
    b.dockerfile("FROM busybox\nARG FOO\nARG BAR=${FOO:?\"foo missing\"}\n");
    let e = b.fail(&[]);
    assert!(e.contains("FOO: foo missing"), "{e}");
    b.build(&["--build-arg", "FOO=123"]);
    b.build(&["--build-arg", "BAR=123"]);
}

#[test]
fn multi_args() {
    let b = Bk::new();
    b.dockerfile("ARG a1=\"foo bar\" a2=box\nARG a3=\"$a2-foo\"\nFROM busy$a2 AS build\nARG a3 a4=\"123 456\" a1\nRUN echo -n \"$a1:$a3:$a4\" > /out\nFROM scratch\nCOPY --from=build /out .\n");
    assert_eq!(text(&b.local(&[]), "out"), "foo bar:box-foo:123 456");
}

#[test]
fn quoted_meta_args() {
    let b = Bk::new();
    b.dockerfile("ARG a1=\"box\"\nARG a2=\"$a1-foo\"\nFROM busy$a1 AS build\nARG a2\nARG a3=\"bar-$a2\"\nRUN echo -n $a3 > /out\nFROM scratch\nCOPY --from=build /out .\n");
    assert_eq!(text(&b.local(&[]), "out"), "bar-box-foo");
}

#[test]
fn target_stage_name_arg() {
    let df = "FROM alpine AS base\nWORKDIR /out\nRUN echo -n \"value:$TARGETSTAGE\" > /out/first\nARG TARGETSTAGE\nRUN echo -n \"value:$TARGETSTAGE\" > /out/second\n\nFROM scratch AS foo\nCOPY --from=base /out/ /\n\nFROM scratch\nCOPY --from=base /out/ /\n";
    let b = Bk::new();
    b.dockerfile(df);
    let out = b.local(&["--target", "foo"]);
    assert_eq!(text(&out, "first"), "value:");
    assert_eq!(text(&out, "second"), "value:foo");
    let out = b.local(&[]);
    assert_eq!(text(&out, "first"), "value:");
    assert_eq!(text(&out, "second"), "value:default");
    // A last stage with a name: that name, though no --target was given.
    b.dockerfile(&format!(
        "{df}\n\tFROM busybox AS final\n\tCOPY --from=base /out/ /\n\t"
    ));
    let out = b.local(&[]);
    assert_eq!(text(&out, "first"), "value:");
    assert_eq!(text(&out, "second"), "value:final");
}

#[test]
fn builtin_args() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS build\nARG FOO\nARG BAR\nARG BAZ=bazcontent\nRUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out\nFROM scratch\nCOPY --from=build /out /\n");
    let out = b.local(&[
        "--build-arg",
        "FOO=foocontents",
        "--build-arg",
        "http_proxy=hpvalue",
        "--build-arg",
        "NO_PROXY=npvalue",
    ]);
    assert_eq!(
        text(&out, "out"),
        "hpvalue::npvalue::foocontents::::bazcontent"
    );
    // Proxy args are not part of the cache key: the RUN is cached.
    let out = b.local(&[
        "--build-arg",
        "FOO=foocontents",
        "--build-arg",
        "http_proxy=hpvalue2",
    ]);
    assert_eq!(
        text(&out, "out"),
        "hpvalue::npvalue::foocontents::::bazcontent"
    );
    let out = b.local(&[
        "--build-arg",
        "FOO=foocontents2",
        "--build-arg",
        "http_proxy=hpvalue2",
    ]);
    assert_eq!(text(&out, "out"), "hpvalue2::::foocontents2::::bazcontent");
}

#[test]
fn default_env_with_args() {
    let df = "ARG image=idlebox\nFROM busy${image#idle} AS build\nARG my_arg\nENV my_arg \"my_arg=${my_arg:-def_val}\"\nENV my_trimmed_arg \"${my_arg%%e*}\"\nCOPY myscript.sh myscript.sh\nRUN ./myscript.sh $my_arg $my_trimmed_arg\nFROM scratch\nCOPY --from=build /out /out\n";
    for (args, want) in [
        (vec![], "my_arg=def_val my_arg=def_val my_arg=d"),
        (vec!["my_arg="], "my_arg=def_val my_arg=def_val my_arg=d"),
        (
            vec!["my_arg=override"],
            "my_arg=override my_arg=override my_arg=ov",
        ),
    ] {
        let b = Bk::new();
        b.dockerfile(df).file(
            "myscript.sh",
            b"#!/usr/bin/env sh\necho -n $my_arg $* > /out\n",
            0o700,
        );
        let mut a = Vec::new();
        for x in &args {
            a.extend(["--build-arg", x]);
        }
        assert_eq!(text(&b.local(&a), "out"), want, "{args:?}");
    }
}

#[test]
fn empty_string_arg_in_env() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS build\nARG FOO\nARG BAR=\nRUN env > env.txt\n\nFROM scratch\nCOPY --from=build env.txt .\n");
    let env = text(&b.local(&[]), "env.txt");
    assert!(env.contains("BAR="), "{env}");
}

#[test]
fn env_empty_formatting() {
    let b = Bk::new();
    b.dockerfile("FROM busybox AS build\nENV myenv foo%sbar\nRUN [ \"$myenv\" = 'foo%sbar' ]\n");
    b.build(&[]);
}
