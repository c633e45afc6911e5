//! Heredocs, read as BuildKit does (cases from BuildKit's parser_heredoc_test.go plus heredocs
//! that are not first on the line).

use std::path::Path;

use rbuild::dockerfile::{self, CommandLine, Instruction, NodeHeredoc};

fn hd(name: &str, content: &str, expand: bool, chomp: bool, fd: u32) -> NodeHeredoc {
    NodeHeredoc {
        name: name.into(),
        content: content.into(),
        expand,
        chomp,
        file_descriptor: fd,
    }
}

#[test]
fn parse_extracts_heredocs_like_buildkit() {
    let text = "
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN \"<<NOHEREDOC\"

RUN <<INDENT
\tfoo
\tbar
INDENT

RUN <<-UNINDENT
\tbaz
\tquux
UNINDENT

RUN <<-UNINDENT2
\tbaz
\tquux
\tUNINDENT2

RUN <<-EXPAND
\texpand $NAME
EXPAND

RUN <<-'NOEXPAND'
\tdon't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<X <<Y /dest
Y
X
X
Y
\t";
    let df = dockerfile::parse(text, Path::new("Dockerfile")).unwrap();
    let expected: Vec<Vec<NodeHeredoc>> = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![hd("EMPTY", "", true, false, 0)],
        vec![hd("EMPTY2", "", true, false, 3)],
        vec![],
        vec![hd("INDENT", "\tfoo\n\tbar\n", true, false, 0)],
        vec![hd("UNINDENT", "\tbaz\n\tquux\n", true, true, 0)],
        vec![hd("UNINDENT2", "\tbaz\n\tquux\n", true, true, 0)],
        vec![hd("EXPAND", "\texpand $NAME\n", true, true, 0)],
        vec![hd("NOEXPAND", "\tdon't expand $NAME\n", false, true, 0)],
        vec![hd(
            "COPY",
            "echo hello world\necho foo bar\n",
            true,
            false,
            0,
        )],
        vec![hd(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            true,
            false,
            0,
        )],
        vec![hd("MOUNT", "echo hello\n", true, false, 0)],
        vec![
            hd("FILE1", "content 1\n", true, false, 0),
            hd("FILE2", "content 2\n", true, false, 0),
        ],
        vec![
            hd("X", "Y\n", true, false, 0),
            hd("Y", "X\n", true, false, 0),
        ],
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&df.nodes[i + 1].heredocs, want, "node {}", i + 1);
    }
    // The typed RUN strips tabs for <<- and keeps the command text.
    let instrs = df.instructions();
    // `INVALID` is an unknown instruction at line 9.
    let err = instrs.unwrap_err();
    assert_eq!(err.line, 9);
    assert_eq!(
        err.to_string(),
        "Dockerfile:9:1: unknown instruction: INVALID"
    );
}

#[test]
fn json_form_has_no_heredocs() {
    let df = dockerfile::parse(
        "FROM a\nRUN [\"whoami\"]\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n",
        Path::new("Dockerfile"),
    )
    .unwrap();
    assert_eq!(df.nodes.len(), 4);
    assert!(df.nodes.iter().all(|n| n.heredocs.is_empty()));
}

#[test]
fn heredoc_not_first_on_line_and_typed() {
    let text = "FROM a\nRUN cat <<EOF > /etc/motd\nhello $USER\nEOF\nRUN python3 <<PY\nprint('x')\nPY\nRUN <<-\"EOT\" bash\n\techo $A\n\tEOT\nRUN <<A cat && <<B cat\na\nA\nb\nB\nRUN echo \\\n <<EOF\ncont\nEOF\nCOPY --chmod=644 <<-EOF /app/conf\n\tk=v\n\tEOF\n";
    let df = dockerfile::parse(text, Path::new("Dockerfile")).unwrap();
    let ins = df.instructions().unwrap();
    let runs: Vec<_> = ins
        .iter()
        .filter_map(|l| match &l.inner {
            Instruction::Run(r) => Some((l.start_line, l.end_line, r.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(runs.len(), 5);
    assert_eq!((runs[0].0, runs[0].1), (2, 4));
    assert_eq!(
        runs[0].2.cmd,
        CommandLine::Shell("cat <<EOF > /etc/motd".into())
    );
    assert_eq!(runs[0].2.heredocs[0].content, "hello $USER\n");
    assert!(runs[0].2.heredocs[0].expand);
    assert_eq!(runs[1].2.heredocs[0].name, "PY");
    assert_eq!(runs[1].2.heredocs[0].content, "print('x')\n");
    assert_eq!(runs[2].2.cmd, CommandLine::Shell("<<-\"EOT\" bash".into()));
    assert_eq!(runs[2].2.heredocs[0].content, "echo $A\n");
    assert!(!runs[2].2.heredocs[0].expand);
    assert!(runs[2].2.heredocs[0].chomp);
    let names: Vec<_> = runs[3]
        .2
        .heredocs
        .iter()
        .map(|h| h.content.as_str())
        .collect();
    assert_eq!(names, vec!["a\n", "b\n"]);
    assert_eq!(runs[4].2.heredocs[0].content, "cont\n");
    assert_eq!((runs[4].0, runs[4].1), (16, 19));
    match &ins.last().unwrap().inner {
        Instruction::Copy(c) => {
            assert!(c.sources.is_empty());
            assert_eq!(c.heredoc_sources.len(), 1);
            assert_eq!(c.heredoc_sources[0].path, "EOF");
            assert_eq!(c.heredoc_sources[0].content, "k=v\n");
            assert_eq!(c.dest, "/app/conf");
            assert_eq!(c.chmod.as_deref(), Some("644"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unterminated_heredoc_names_its_line() {
    let err =
        dockerfile::parse("FROM a\n\nRUN <<EOF\necho\n", Path::new("df/Dockerfile")).unwrap_err();
    assert_eq!(err.line, 3);
    assert!(err.to_string().starts_with("df/Dockerfile:3"), "{err}");
    assert!(err.to_string().contains("unterminated heredoc"));
    assert_eq!(err.line_text, "RUN <<EOF");
}
