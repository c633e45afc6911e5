//! Lowering, instruction by instruction: pure, so these run without root or a store.

use super::*;
use crate::dockerfile::MountType;
use crate::image::Healthcheck;
use crate::platform::Platform;
use std::path::Path;

fn base() -> ContainerConfig {
    ContainerConfig {
        env: vec!["PATH=/usr/bin:/bin".into(), "FROM_BASE=base-value".into()],
        cmd: Some(vec!["base-cmd".into()]),
        working_dir: "/".into(),
        ..ContainerConfig::default()
    }
}

struct Case {
    text: String,
    base: ContainerConfig,
    build_args: BTreeMap<String, String>,
    format: HistoryFormat,
}

fn case(text: &str) -> Case {
    Case {
        text: text.to_string(),
        base: base(),
        build_args: BTreeMap::new(),
        format: HistoryFormat::Buildkit,
    }
}

impl Case {
    fn lower(&self) -> Result<LoweredStage, LowerError> {
        let df = crate::dockerfile::parse(&self.text, Path::new("Dockerfile")).unwrap();
        let opts = PlanOptions {
            build_args: self.build_args.clone(),
            target: None,
            platform: Platform::parse("linux/amd64").unwrap(),
            build_platform: Platform::parse("linux/amd64").unwrap(),
            named_contexts: Default::default(),
        };
        let plan = Plan::new(&df, &opts).unwrap();
        lower_stage(&LowerInput {
            df: &df,
            plan: &plan,
            opts: &opts,
            stage: plan.target,
            base: &self.base,
            base_author: None,
            parent_args: None,
            history_format: self.format,
        })
    }

    fn steps(&self) -> Vec<Step> {
        self.lower().unwrap().steps
    }
}

fn config(step: &Step) -> &ConfigEdit {
    match &step.op {
        Op::Config(c) => c,
        other => panic!("expected a config edit, got {other:?}"),
    }
}

fn exec(step: &Step) -> &ExecOp {
    match &step.op {
        Op::Exec(e) => e,
        other => panic!("expected an exec op, got {other:?}"),
    }
}

fn file(step: &Step) -> &FileOp {
    match &step.op {
        Op::File(f) => f,
        other => panic!("expected a file op, got {other:?}"),
    }
}

fn history(step: &Step) -> &str {
    config(step).history.as_deref().unwrap()
}

#[test]
fn env_sees_the_base_env_and_the_values_before_the_instruction() {
    let s = case("FROM img\nENV A=$FROM_BASE B=$A\nENV A=2 C=${A}x\n").steps();
    let last = config(&s[1]);
    assert_eq!(
        last.config.env,
        [
            "PATH=/usr/bin:/bin",
            "FROM_BASE=base-value",
            "A=2",
            "B=",
            "C=base-valuex"
        ]
    );
    assert_eq!(history(&s[0]), "ENV A=base-value B=");
    assert_eq!(last.key["instruction"], "ENV A=2 C=base-valuex");
}

#[test]
fn arg_precedence_build_arg_then_default_then_global() {
    let mut c = case("ARG G=global\nFROM img\nARG G\nARG D=default\nARG B=ignored\nRUN true\n");
    c.build_args.insert("B".into(), "from-cli".into());
    let s = c.steps();
    assert_eq!(history(&s[0]), "ARG G=global");
    assert_eq!(history(&s[1]), "ARG D=default");
    assert_eq!(history(&s[2]), "ARG B=from-cli");
    let run = exec(&s[3]);
    assert_eq!(
        run.created_by,
        "RUN |3 G=global D=default B=from-cli /bin/sh -c true # buildkit"
    );
    // ARGs reach RUN's environment, never the config.
    assert!(run.env.contains(&"B=from-cli".to_string()));
    assert!(!config(&s[2]).config.env.iter().any(|e| e.starts_with("B=")));
}

#[test]
fn env_wins_over_an_arg_of_the_same_name() {
    let s = case("FROM img\nARG FROM_BASE=arg\nRUN echo $FROM_BASE\nENV X=$FROM_BASE\n").steps();
    let run = exec(&s[1]);
    assert!(run.env.contains(&"FROM_BASE=base-value".to_string()));
    assert!(!run.env.contains(&"FROM_BASE=arg".to_string()));
    // Shadowed by Env, the ARG is left out of RUN's history too.
    assert_eq!(run.created_by, "RUN /bin/sh -c echo $FROM_BASE # buildkit");
    assert_eq!(history(&s[2]), "ENV X=base-value");
}

#[test]
fn classic_arg_history_records_the_dockerfile_default() {
    let mut c = case("FROM img\nARG A=dflt\n");
    c.build_args.insert("A".into(), "cli".into());
    c.format = HistoryFormat::Classic;
    assert_eq!(history(&c.steps()[0]), "/bin/sh -c #(nop)  ARG A=dflt");
}

#[test]
fn label_and_maintainer() {
    let s = case("FROM img\nLABEL a=1 \"b c\"=\"d e\"\nMAINTAINER Jane <j@x>\n").steps();
    let l = config(&s[0]);
    assert_eq!(l.config.labels["a"], "1");
    assert_eq!(l.config.labels["b c"], "d e");
    assert_eq!(l.history.as_deref(), Some("LABEL a=1 b c=d e"));
    let m = config(&s[1]);
    assert_eq!(m.author.as_deref(), Some("Jane <j@x>"));
    assert_eq!(m.history.as_deref(), Some("MAINTAINER Jane <j@x>"));
}

#[test]
fn cmd_shell_and_exec_forms() {
    let s = case("FROM img\nCMD echo hi\nCMD [\"a\", \"b\"]\n").steps();
    let shell_form = config(&s[0]);
    assert_eq!(
        shell_form.config.cmd.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into(), "echo hi".into()][..])
    );
    assert!(shell_form.config.args_escaped);
    assert_eq!(history(&s[0]), "CMD [\"/bin/sh\" \"-c\" \"echo hi\"]");
    assert_eq!(
        config(&s[1]).config.cmd.as_deref(),
        Some(&["a".to_string(), "b".into()][..])
    );
}

#[test]
fn entrypoint_resets_the_inherited_cmd_but_not_one_set_in_the_stage() {
    let s = case("FROM img\nENTRYPOINT [\"/e\"]\n").steps();
    let e = config(&s[0]);
    assert_eq!(
        e.config.entrypoint.as_deref(),
        Some(&["/e".to_string()][..])
    );
    assert_eq!(e.config.cmd, None, "the base's CMD is reset");
    assert_eq!(history(&s[0]), "ENTRYPOINT [\"/e\"]");

    let s = case("FROM img\nCMD [\"mine\"]\nENTRYPOINT [\"/e\"]\n").steps();
    assert_eq!(
        config(&s[1]).config.cmd.as_deref(),
        Some(&["mine".to_string()][..])
    );
}

#[test]
fn shell_changes_later_shell_forms_and_classic_history() {
    let mut c =
        case("FROM img\nSHELL [\"/bin/bash\", \"-eu\", \"-c\"]\nRUN echo 1\nENTRYPOINT run me\n");
    let s = c.steps();
    assert_eq!(
        config(&s[0]).config.shell,
        ["/bin/bash", "-eu", "-c"].map(String::from)
    );
    assert_eq!(history(&s[0]), "SHELL [/bin/bash -eu -c]");
    assert_eq!(exec(&s[1]).argv, ["/bin/bash", "-eu", "-c", "echo 1"]);
    assert_eq!(
        config(&s[2]).config.entrypoint.as_deref(),
        Some(
            &[
                "/bin/bash".to_string(),
                "-eu".into(),
                "-c".into(),
                "run me".into()
            ][..]
        )
    );
    c.format = HistoryFormat::Classic;
    let s = c.steps();
    assert_eq!(
        history(&s[0]),
        "/bin/bash -eu -c #(nop)  SHELL [/bin/bash -eu -c]"
    );
}

#[test]
fn user_and_stopsignal_expand() {
    let s = case("FROM img\nARG U=app\nUSER $U:grp\nSTOPSIGNAL SIG${U}\nRUN id\n").steps();
    assert_eq!(config(&s[1]).config.user, "app:grp");
    assert_eq!(history(&s[1]), "USER app:grp");
    assert_eq!(config(&s[2]).config.stop_signal, "SIGapp");
    assert_eq!(history(&s[2]), "STOPSIGNAL SIGapp");
    let run = exec(&s[3]);
    assert_eq!(run.user, "app:grp");
    assert_eq!(run.key["user"], "app:grp");
}

#[test]
fn workdir_joins_relative_paths_and_copy_and_run_use_it() {
    let s = case("FROM img\nWORKDIR /a\nWORKDIR b/../c\nRUN pwd\nCOPY x y\n").steps();
    assert_eq!(config(&s[0]).config.working_dir, "/a");
    assert_eq!(config(&s[1]).config.working_dir, "/a/c");
    assert_eq!(history(&s[1]), "WORKDIR /a/c");
    assert_eq!(exec(&s[2]).workdir, "/a/c");
    assert_eq!(file(&s[3]).workdir, "/a/c");
    assert_eq!(file(&s[3]).key["workdir"], "/a/c");
}

#[test]
fn workdir_joins_and_cleans() {
    assert_eq!(join_workdir("/", "app"), "/app");
    assert_eq!(join_workdir("/a", "b/../c"), "/a/c");
    assert_eq!(join_workdir("/a", "/x"), "/x");
    assert_eq!(join_workdir("/a/b", ".."), "/a");
}

#[test]
fn expose_normalizes_ports() {
    let s = case("FROM img\nEXPOSE 80 53/UDP 8000-8001\n").steps();
    let keys: Vec<&String> = config(&s[0]).config.exposed_ports.keys().collect();
    assert_eq!(keys, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    assert_eq!(history(&s[0]), "EXPOSE [53/udp 80/tcp 8000/tcp 8001/tcp]");
}

#[test]
fn volume_records_paths() {
    let s = case("FROM img\nVOLUME [\"/data\", \"/logs\"]\nVOLUME /more\n").steps();
    let v = config(&s[1]);
    let keys: Vec<&String> = v.config.volumes.keys().collect();
    assert_eq!(keys, ["/data", "/logs", "/more"]);
    assert_eq!(history(&s[0]), "VOLUME [/data /logs]");
}

#[test]
fn healthcheck_cmd_and_none() {
    let s =
        case("FROM img\nHEALTHCHECK --interval=5m --retries=3 CMD curl -f x\nHEALTHCHECK NONE\n")
            .steps();
    let h = config(&s[0]).config.healthcheck.clone().unwrap();
    assert_eq!(h.test, ["CMD-SHELL", "curl -f x"]);
    assert_eq!(h.interval, 300_000_000_000);
    assert_eq!(h.retries, 3);
    assert_eq!(
        history(&s[0]),
        "HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:5m0s Timeout:0s StartPeriod:0s \
         StartInterval:0s Retries:3}"
    );
    assert_eq!(
        config(&s[1]).config.healthcheck,
        Some(Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        })
    );
}

#[test]
fn onbuild_is_recorded_in_the_config_without_buildkit_history() {
    let s = case("FROM img\nONBUILD RUN make\n").steps();
    let o = config(&s[0]);
    assert_eq!(o.config.on_build, ["RUN make"]);
    assert_eq!(o.history, None);
    assert_eq!(o.key["instruction"], "ONBUILD RUN make");
    let mut c = case("FROM img\nONBUILD RUN make\n");
    c.format = HistoryFormat::Classic;
    assert_eq!(
        history(&c.steps()[0]),
        "/bin/sh -c #(nop)  ONBUILD RUN make"
    );
}

#[test]
fn onbuild_triggers_of_an_image_base_run_first_and_are_consumed() {
    let mut c = case("FROM img\nRUN after\n");
    c.base.on_build = vec!["ENV T=1".into(), "RUN trigger".into()];
    let lowered = c.lower().unwrap();
    assert!(lowered.start.on_build.is_empty());
    assert_eq!(lowered.steps.len(), 3);
    assert_eq!(history(&lowered.steps[0]), "ENV T=1");
    assert_eq!(exec(&lowered.steps[1]).argv.last().unwrap(), "trigger");
    assert_eq!(exec(&lowered.steps[2]).argv.last().unwrap(), "after");
}

#[test]
fn an_onbuild_trigger_that_is_not_allowed_is_an_error() {
    let mut c = case("FROM img\n");
    c.base.on_build = vec!["FROM other".into()];
    assert!(matches!(c.lower(), Err(LowerError::Parse(_))));
}

#[test]
fn run_network_and_typed_mounts_with_expanded_values() {
    let s = case(
        "FROM a AS src\nFROM img\nARG T=/cache\nRUN --network=none --mount=type=cache,target=$T,id=c1 \
         --mount=type=bind,from=src,source=/x,target=/y true\n",
    )
    .steps();
    let run = exec(&s[1]);
    assert_eq!(run.network, NetworkMode::None);
    assert_eq!(run.mounts.len(), 2);
    assert_eq!(run.mounts[0].mount.typ, MountType::Cache);
    assert_eq!(run.mounts[0].mount.target.as_deref(), Some("/cache"));
    assert_eq!(run.mounts[1].index, 1);
    assert_eq!(run.mounts[1].from, Some(CopyFrom::Stage(0)));
}

#[test]
fn run_network_as_written_or_the_builds_default() {
    let s = case("FROM img\nRUN --network=host a\nRUN --network=default b\nRUN c\n").steps();
    assert_eq!(exec(&s[0]).network, NetworkMode::Host);
    assert_eq!(exec(&s[1]).network, NetworkMode::Default);
    assert_eq!(exec(&s[2]).network, NetworkMode::Default);
}

#[test]
fn an_empty_exec_form_run_is_an_error_at_its_line() {
    let e = case("FROM img\n\nRUN []\n").lower().unwrap_err();
    assert!(
        matches!(&e, LowerError::At { line: 3, message } if message.contains("no command")),
        "{e}"
    );
}

#[test]
fn copy_from_resolves_stage_names_and_images_in_one_place() {
    let s = case(
        "FROM a AS build\nFROM img\nARG WHERE=build\nCOPY --from=BUILD /a /b\nCOPY --from=0 /a /c\n\
         COPY --from=busybox:1 /bin/sh /sh\nCOPY --chmod=644 --link <<EOF /h\nhi\nEOF\n",
    )
    .steps();
    // As BuildKit, `--from` is never expanded: a variable there is an error.
    let e = case("FROM a AS build\nFROM img\nARG WHERE=build\nCOPY --from=$WHERE /a /b\n")
        .lower()
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("variable expansion is not supported for --from"),
        "{e}"
    );
    assert_eq!(
        file(&s[1]).from,
        Some(("BUILD".to_string(), CopyFrom::Stage(0)))
    );
    assert_eq!(
        file(&s[2]).from,
        Some(("0".to_string(), CopyFrom::Stage(0)))
    );
    assert_eq!(
        file(&s[3]).from,
        Some(("busybox:1".to_string(), CopyFrom::Image("busybox:1".into())))
    );
    let h = file(&s[4]);
    assert_eq!(h.heredocs, [("EOF".to_string(), "hi\n".to_string())]);
    assert_eq!(h.chmod.as_deref(), Some("644"));
    assert_eq!(h.key["link"], "true");
}

#[test]
fn a_bad_copy_timestamp_is_an_error() {
    let e = case("FROM img\nCOPY --timestamp=soon a b\n")
        .lower()
        .unwrap_err();
    assert!(e.to_string().contains("invalid --timestamp"), "{e}");
}

#[test]
fn from_inside_a_stage_never_lowers() {
    // The plan splits stages at FROM, so a stage's instructions never hold one.
    let s = case("FROM img\nRUN true\n").lower().unwrap();
    assert!(s
        .steps
        .iter()
        .all(|st| !st.text.to_uppercase().starts_with("FROM")));
}

#[test]
fn a_stage_built_from_a_stage_inherits_its_args() {
    let text = "FROM img AS base\nARG V=1\nFROM base\nRUN echo $V\n";
    let df = crate::dockerfile::parse(text, Path::new("Dockerfile")).unwrap();
    let opts = PlanOptions {
        platform: Platform::parse("linux/amd64").unwrap(),
        build_platform: Platform::parse("linux/amd64").unwrap(),
        named_contexts: Default::default(),
        ..PlanOptions::default()
    };
    let plan = Plan::new(&df, &opts).unwrap();
    let empty = ContainerConfig::default();
    let input = |stage, parent_args| LowerInput {
        df: &df,
        plan: &plan,
        opts: &opts,
        stage,
        base: &empty,
        base_author: None,
        parent_args,
        history_format: HistoryFormat::Buildkit,
    };
    let first = lower_stage(&input(0, None)).unwrap();
    let second = lower_stage(&input(1, Some(&first.args))).unwrap();
    let run = exec(&second.steps[0]);
    assert!(run.env.contains(&"V=1".to_string()), "{:?}", run.env);
    assert_eq!(run.created_by, "RUN |1 V=1 /bin/sh -c echo $V # buildkit");
}
