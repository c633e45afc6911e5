//! The build plan: stage graph, --target pruning, ARG scoping, ONBUILD.

use std::collections::BTreeMap;
use std::path::Path;

use rbuild::dockerfile::{self, CommandLine, Instruction};
use rbuild::plan::{
    parse_onbuild_triggers, ArgScope, BaseRef, CopyFrom, Plan, PlanError, PlanOptions, Platform,
};

fn opts() -> PlanOptions {
    PlanOptions {
        build_args: BTreeMap::new(),
        target: None,
        platform: Platform::parse("linux/arm64/v8").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        named_contexts: Default::default(),
    }
}

fn plan(text: &str, o: &PlanOptions) -> Result<Plan, PlanError> {
    let df = dockerfile::parse(text, Path::new("Dockerfile")).unwrap();
    Plan::new(&df, o)
}

const MULTI: &str = "\
ARG BASE=alpine
ARG TAG=3.19
FROM ${BASE}:${TAG} AS base
RUN echo base

FROM busybox AS tools

FROM base AS build
COPY --from=0 /etc/os-release /x
RUN --mount=type=bind,from=tools,target=/t make

FROM ${BROKEN:?unused} AS broken
COPY --from=nowhere / /

FROM scratch AS final
COPY --from=build /out /out
COPY --from=docker.io/library/nginx:1 /etc/nginx /etc/nginx
";

#[test]
fn graph_order_and_pruning() {
    let p = plan(MULTI, &opts()).unwrap();
    assert_eq!(p.stages.len(), 5);
    assert_eq!(p.target, 4);
    assert_eq!(p.stages[0].base, BaseRef::Image("alpine:3.19".into()));
    // (`tools` comes before `build`: a mount, like COPY --from, names an earlier stage.)
    assert_eq!(p.stages[2].base, BaseRef::Stage(0));
    assert_eq!(p.stages[2].deps, vec![0, 1]);
    assert_eq!(p.stages[4].base, BaseRef::Scratch);
    assert_eq!(p.stages[4].deps, vec![2]);
    assert_eq!(
        p.stages[4]
            .from_refs
            .iter()
            .map(|r| r.resolved.clone())
            .collect::<Vec<_>>(),
        vec![
            CopyFrom::Stage(2),
            CopyFrom::Image("docker.io/library/nginx:1".into())
        ]
    );
    // Dependencies first, target last; the broken stage is never resolved.
    assert_eq!(p.order, vec![0, 1, 2, 4]);
    assert!(!p.stages[3].needed);
    assert_eq!(
        p.global_args,
        vec![
            ("BASE".into(), Some("alpine".into())),
            ("TAG".into(), Some("3.19".into()))
        ]
    );
}

#[test]
fn target_selects_and_prunes() {
    let mut o = opts();
    o.target = Some("BUILD".into());
    let p = plan(MULTI, &o).unwrap();
    assert_eq!(p.target, 2);
    assert_eq!(p.order, vec![0, 1, 2]);
    o.target = Some("broken".into());
    let e = plan(MULTI, &o).unwrap_err();
    assert!(e.to_string().starts_with("Dockerfile:12: "), "{e}");
    assert!(e.to_string().contains("BROKEN: unused"), "{e}");
    o.target = Some("nope".into());
    assert!(matches!(plan(MULTI, &o), Err(PlanError::TargetNotFound(_))));
}

#[test]
fn build_args_override_and_unused_warning() {
    let mut o = opts();
    o.build_args.insert("TAG".into(), "edge".into());
    o.build_args.insert("UNUSED".into(), "1".into());
    o.build_args.insert("HTTP_PROXY".into(), "http://p".into());
    o.build_args.insert("STAGEARG".into(), "s".into());
    let p = plan("ARG TAG=1\nFROM alpine:$TAG\nARG STAGEARG\nFROM --platform=$BUILDPLATFORM b:$TARGETARCH-$TAG AS x\nARG NOTUSED\n", &o).unwrap();
    // Stage 0 is not needed: left unresolved.
    assert_eq!(p.stages[0].base, BaseRef::Image("alpine:$TAG".into()));
    assert!(!p.stages[0].needed);
    // The unused stage 0 declares STAGEARG, so it is unconsumed too.
    assert_eq!(
        p.unused_build_args,
        vec!["STAGEARG".to_string(), "UNUSED".to_string()]
    );
    assert_eq!(p.stages[1].base, BaseRef::Image("b:arm64-edge".into()));
    assert_eq!(p.stages[1].platform.as_deref(), Some("linux/amd64"));
}

#[test]
fn arg_scope_rules() {
    let mut o = opts();
    o.build_args.insert("B".into(), "from-cli".into());
    o.build_args
        .insert("http_proxy".into(), "http://proxy".into());
    let p = plan("ARG G=global\nARG H\nFROM a\nRUN x\n", &o).unwrap();
    let mut s = ArgScope::new(&p, &o, 0);
    // Global ARGs are not visible until re-declared.
    assert!(s.expansion_env(&[]).is_empty());
    assert_eq!(s.declare("G", None), Some("global".into()));
    assert_eq!(s.declare("A", Some("1".into())), Some("1".into()));
    assert_eq!(
        s.declare("B", Some("default".into())),
        Some("from-cli".into())
    );
    assert_eq!(s.declare("TARGETARCH", None), Some("arm64".into()));
    assert_eq!(s.declare("H", None), None);
    assert_eq!(s.declare("A", Some("2".into())), Some("2".into()));
    let names: Vec<_> = s.values().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["G", "A", "B", "TARGETARCH", "H"]);
    let hist = s.history_args();
    assert_eq!(hist[1], ("A".into(), "2".into()));
    assert!(hist.iter().all(|(k, _)| k != "http_proxy" && k != "H"));
    // Undeclared proxy args reach RUN in both cases, apart from the declared ARGs.
    assert!(s.run_env().iter().all(|(k, _)| k != "http_proxy"));
    let proxy = s.proxy_env();
    assert!(proxy.contains(&("http_proxy".into(), "http://proxy".into())));
    assert!(proxy.contains(&("HTTP_PROXY".into(), "http://proxy".into())));
    // ENV wins over a same-named ARG when expanding.
    let env = s.expansion_env(&[("A".into(), "env".into())]);
    assert_eq!(
        rbuild::dockerfile::shell::Env::get(&env, "A"),
        Some("env".into())
    );
    let child = ArgScope::inherit(&s);
    assert!(child.is_declared("G"));
}

#[test]
fn copy_from_uses_stage_args_and_detects_cycles() {
    let p = plan(
        "FROM a AS one\nFROM b AS two\nARG SRC=one\nCOPY --from=$SRC / /\n",
        &opts(),
    )
    .unwrap();
    assert_eq!(p.stages[1].deps, vec![0]);
    let e = plan(
        "FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nCOPY --from=one / /\n",
        &opts(),
    )
    .unwrap_err();
    // As BuildKit: a later stage is refused before any cycle forms.
    assert!(
        e.to_string()
            .contains("it needs to be defined before current stage"),
        "{e}"
    );
    let e = plan("FROM a AS one\nCOPY --from=one / /\n", &opts()).unwrap_err();
    assert!(e.to_string().starts_with("Dockerfile:2"), "{e}");
    // A stage name used before its definition as FROM is an image.
    let p = plan("FROM later\nFROM x AS later\n", &opts()).unwrap();
    assert_eq!(p.stages[0].base, BaseRef::Image("later".into()));
    assert!(plan("RUN x\nFROM a\n", &opts())
        .unwrap_err()
        .to_string()
        .contains("no build stage"));
    assert!(plan("FROM a AS x\nFROM b AS x\n", &opts())
        .unwrap_err()
        .to_string()
        .contains("duplicate stage name"));
}

#[test]
fn onbuild_triggers_of_a_base_stage_run_first() {
    let p = plan(
        "FROM alpine AS base\nONBUILD RUN echo trig\nONBUILD COPY --from=tools /t /t\nFROM busybox AS tools\nFROM base\nRUN echo mine\n",
        &opts(),
    )
    .unwrap();
    let st = &p.stages[2];
    assert_eq!(st.onbuild_triggers, 2);
    assert_eq!(st.instructions.len(), 3);
    assert_eq!(st.instructions[0].start_line, 2);
    match &st.instructions[0].inner {
        Instruction::Run(r) => assert_eq!(r.cmd, CommandLine::Shell("echo trig".into())),
        o => panic!("{o:?}"),
    }
    // The trigger's COPY --from makes `tools` a dependency.
    assert_eq!(st.deps, vec![0, 1]);
    assert_eq!(p.order, vec![0, 1, 2]);
}

#[test]
fn onbuild_trigger_strings_from_an_image() {
    let t = parse_onbuild_triggers(
        &["RUN make".to_string(), "COPY . /src".to_string()],
        Path::new("alpine:ONBUILD"),
    )
    .unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[1].start_line, 2);
    assert!(matches!(t[1].inner, Instruction::Copy(_)));
    let e = parse_onbuild_triggers(
        &["RUN a".into(), "BOGUS x".into()],
        Path::new("img:ONBUILD"),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "img:ONBUILD:2: unknown instruction: BOGUS");
    assert!(parse_onbuild_triggers(&["FROM x".into()], Path::new("i")).is_err());
}
