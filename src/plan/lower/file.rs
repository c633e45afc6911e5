//! COPY and ADD: one shape, every word expanded, `--from` resolved.

use super::{at, FileOp, KeyInputs, LowerError, Scope};
use crate::dockerfile::instruction::{AddInst, CopyInst};

pub(super) fn lower_copy(s: &Scope<'_>, c: CopyInst, line: usize) -> Result<FileOp, LowerError> {
    let from = match c.from {
        Some(name) => {
            let r = s.resolve_from(&name, line)?;
            Some((name, r))
        }
        None => None,
    };
    finish(
        s,
        FileOp {
            is_add: false,
            sources: c.sources,
            heredocs: c
                .heredoc_sources
                .into_iter()
                .map(|h| (h.path, h.content))
                .collect(),
            dest: c.dest,
            from,
            chown: c.chown,
            chmod: c.chmod,
            link: c.link,
            exclude: c.exclude,
            parents: c.parents,
            timestamp: timestamp(c.timestamp, line)?,
            checksum: None,
            keep_git_dir: false,
            unpack: None,
            workdir: String::new(),
            shell: Vec::new(),
            key: KeyInputs::new(),
        },
    )
}

pub(super) fn lower_add(s: &Scope<'_>, a: AddInst, line: usize) -> Result<FileOp, LowerError> {
    finish(
        s,
        FileOp {
            is_add: true,
            sources: a.sources,
            heredocs: a
                .heredoc_sources
                .into_iter()
                .map(|h| (h.path, h.content))
                .collect(),
            dest: a.dest,
            from: None,
            chown: a.chown,
            chmod: a.chmod,
            link: a.link,
            exclude: a.exclude,
            parents: false,
            timestamp: timestamp(a.timestamp, line)?,
            checksum: a.checksum,
            keep_git_dir: a.keep_git_dir.unwrap_or(false),
            unpack: a.unpack,
            workdir: String::new(),
            shell: Vec::new(),
            key: KeyInputs::new(),
        },
    )
}

fn finish(s: &Scope<'_>, mut op: FileOp) -> Result<FileOp, LowerError> {
    op.workdir = s.workdir();
    op.shell = s.shell();
    op.key.insert("workdir".to_string(), op.workdir.clone());
    if op.link {
        op.key.insert("link".to_string(), "true".into());
    }
    Ok(op)
}

fn timestamp(t: Option<String>, line: usize) -> Result<Option<i64>, LowerError> {
    match t {
        Some(t) => t
            .parse::<i64>()
            .map(Some)
            .map_err(|_| at(line, format!("invalid --timestamp {t:?}"))),
        None => Ok(None),
    }
}
