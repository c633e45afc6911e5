//! StageNameCasing, FromAsCasing and ConsistentInstructionCasing.

use super::{Stage, Warning};
use crate::dockerfile::Node;

fn self_consistent(s: &str) -> bool {
    s == s.to_lowercase() || s == s.to_uppercase()
}

pub(super) fn check(stages: &[Stage], out: &mut Vec<Warning>) {
    for st in stages {
        let n = st.from;
        let words = n.arg_words();
        if words.len() == 3 && words[2] != words[2].to_lowercase() {
            out.push(Warning::at(
                "StageNameCasing",
                n,
                format!("Stage name '{}' should be lowercase", words[2]),
            ));
        }
        // A FROM that is itself mixed-case is ConsistentInstructionCasing's business.
        if words.len() >= 3 && self_consistent(&n.value) {
            let want = if n.value == n.value.to_lowercase() {
                words[1].to_lowercase()
            } else {
                words[1].to_uppercase()
            };
            if words[1] != want {
                out.push(Warning::at(
                    "FromAsCasing",
                    n,
                    format!(
                        "'{}' and '{}' keywords' casing do not match",
                        words[1], n.value
                    ),
                ));
            }
        }
    }
    // Instructions before the first FROM (global ARGs) are not counted, as in BuildKit.
    let counted: Vec<&Node> = stages
        .iter()
        .flat_map(|s| std::iter::once(s.from).chain(s.body.iter()))
        .collect();
    let (mut lower, mut upper) = (0, 0);
    for n in &counted {
        if self_consistent(&n.value) {
            if n.value == n.value.to_lowercase() {
                lower += 1;
            } else {
                upper += 1;
            }
        }
    }
    let majority_lower = lower > upper;
    for n in counted {
        let casing = if majority_lower && n.value != n.value.to_lowercase() {
            "lowercase"
        } else if !majority_lower && n.value != n.value.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        out.push(Warning::at(
            "ConsistentInstructionCasing",
            n,
            format!(
                "Command '{}' should match the case of the command majority ({casing})",
                n.value
            ),
        ));
    }
}
