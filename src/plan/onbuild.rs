//! ONBUILD triggers: parsing the trigger strings of a base image's config.

use std::path::Path;

use crate::dockerfile::{self, Instruction, Located, ParseError};

/// Parses `config.OnBuild` trigger strings (e.g. `RUN make`) into instructions to run at the
/// start of the stage built on that image. `path` names the origin in errors (e.g.
/// `<image>:ONBUILD`); line numbers are the trigger's 1-based position.
pub fn parse_onbuild_triggers(
    triggers: &[String],
    path: &Path,
) -> Result<Vec<Located<Instruction>>, ParseError> {
    let mut out = Vec::new();
    for (i, trigger) in triggers.iter().enumerate() {
        let n = i + 1;
        let at = |m: String| ParseError::at(path, trigger, 1, 1, m).with_line(n);
        let df = dockerfile::parse(trigger, path).map_err(|e| at(e.message))?;
        if df.nodes.len() != 1 {
            return Err(at("onbuild trigger should be a single expression".into()));
        }
        let kw = df.nodes[0].keyword();
        if matches!(kw.as_str(), "onbuild" | "from" | "maintainer") {
            return Err(at(format!(
                "{} isn't allowed as an ONBUILD trigger",
                kw.to_uppercase()
            )));
        }
        let mut inst = df.instructions().map_err(|e| at(e.message))?;
        let mut located = inst.remove(0);
        located.start_line = n;
        located.end_line = n;
        out.push(located);
    }
    Ok(out)
}
