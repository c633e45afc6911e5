//! Rules about FROM lines and stage names: DuplicateStageName, ReservedStageName,
//! InvalidDefinitionDescription, FromPlatformFlagConstDisallowed, RedundantTargetPlatform,
//! UndefinedArgInFrom and InvalidDefaultArgInFrom.

use super::vars::{global_args, Recording};
use super::{Input, Stage, Warning};
use crate::dockerfile::shell::Lexer;
use crate::dockerfile::Node;

const RESERVED: [&str; 2] = ["context", "scratch"];

pub(super) fn check(input: &Input, globals: &[Node], stages: &[Stage], out: &mut Vec<Warning>) {
    let mut seen: Vec<&str> = Vec::new();
    for st in stages {
        let Some(name) = st.name.as_deref() else {
            continue;
        };
        if RESERVED.contains(&name) {
            out.push(Warning::at(
                "ReservedStageName",
                st.from,
                format!("Stage name should not use the same name as reserved stage {name:?}"),
            ));
        }
        if seen.contains(&name) {
            out.push(Warning::at(
                "DuplicateStageName",
                st.from,
                format!("Duplicate stage name {name:?}, stage names should be unique"),
            ));
        }
        seen.push(name);
        description(st.from, "FROM", &[name.to_string()], out);
    }
    for n in globals
        .iter()
        .chain(stages.iter().flat_map(|s| s.body.iter()))
    {
        if n.keyword() == "arg" {
            let keys: Vec<String> = n
                .arg_words()
                .iter()
                .map(|w| w.split('=').next().unwrap_or("").to_string())
                .collect();
            description(n, "ARG", &keys, out);
        }
    }

    let lexer = Lexer::new(input.dockerfile.escape);
    let (env, declared) = global_args(input, globals, true);
    let (defaults_env, _) = global_args(input, globals, false);
    for st in stages {
        let words = st.from.arg_words();
        let Some(base) = words.first() else { continue };
        let rec = Recording::new(&env);
        let _ = lexer.process_word(base, &rec);
        undefined_in_from(st.from, &rec.unmatched(), &declared, out);

        let rec_default = Recording::new(&defaults_env);
        if let Ok(v) = lexer.process_word(base, &rec_default) {
            let is_stage = stages.iter().any(|s| s.name.as_deref() == Some(v.as_str()));
            if !is_stage && crate::image::reference::Reference::parse(&v).is_err() {
                out.push(Warning::at(
                    "InvalidDefaultArgInFrom",
                    st.from,
                    format!(
                        "Default value for ARG {base} results in empty or invalid base image name"
                    ),
                ));
            }
        }

        let Some(platform) = st
            .from
            .flags
            .iter()
            .find_map(|f| f.strip_prefix("--platform="))
        else {
            continue;
        };
        let rec = Recording::new(&env);
        let Ok(result) = lexer.process_word(platform, &rec) else {
            continue;
        };
        let (matched, unmatched) = (rec.matched(), rec.unmatched());
        undefined_in_from(st.from, &unmatched, &declared, out);
        if matched == ["TARGETPLATFORM"] && unmatched.is_empty() {
            out.push(Warning::at(
                "RedundantTargetPlatform",
                st.from,
                format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"),
            ));
        }
        if matched.is_empty() && unmatched.is_empty() {
            // A constant platform is fine when the stage name says which one it builds.
            let mut parts = result.split('/');
            let os = parts.next().unwrap_or("");
            let arch = parts.next().unwrap_or("");
            let name = st.name.as_deref().unwrap_or("");
            let mentioned =
                (!os.is_empty() && name.contains(os)) || (!arch.is_empty() && name.contains(arch));
            if !os.is_empty() && !arch.is_empty() && !mentioned {
                out.push(Warning::at(
                    "FromPlatformFlagConstDisallowed",
                    st.from,
                    format!("FROM --platform flag should not use constant value {result:?}"),
                ));
            }
        }
    }
}

fn undefined_in_from(
    node: &Node,
    unmatched: &[String],
    declared: &[String],
    out: &mut Vec<Warning>,
) {
    for arg in unmatched {
        if declared.contains(arg) {
            continue;
        }
        let mut msg = format!("FROM argument '{arg}' is not declared");
        if let Some(s) = super::suggest(arg, declared, true) {
            msg.push_str(&format!(" (did you mean {s}?)"));
        }
        out.push(Warning::at("UndefinedArgInFrom", node, msg));
    }
}

/// The comment right above a FROM or ARG must start with the name it describes.
fn description(node: &Node, instruction: &str, keys: &[String], out: &mut Vec<Warning>) {
    let (Some(last), false) = (node.comments.last(), keys.is_empty()) else {
        return;
    };
    let first = last
        .trim_start_matches('#')
        .trim_start()
        .split(' ')
        .next()
        .unwrap_or("");
    if keys.iter().any(|k| k == first) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        &keys[0]
    };
    out.push(Warning::at(
        "InvalidDefinitionDescription",
        node,
        format!("Comment for {instruction} should follow the format: `# {example} <description>`"),
    ));
}
