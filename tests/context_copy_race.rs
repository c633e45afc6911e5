//! COPY resolves its sources once: the cache key (`hash_resolved`) and the copy
//! (`copy_resolved`) consume one resolution, and a file that changed after it was resolved is an
//! error naming it, never bytes stored under the old content's key. The file is rewritten between
//! resolution and copy, as an edit racing a build would.

use rbuild::context::{
    copy_resolved, hash_resolved, hash_sources, resolve, Context, ContextError, CopyEnv,
    CopyRequest, SourceRoot,
};
use std::fs;
use std::path::Path;

struct Fixture {
    ctx: tempfile::TempDir,
    root: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let f = Fixture {
        ctx: tempfile::tempdir().unwrap(),
        root: tempfile::tempdir().unwrap(),
    };
    fs::write(f.ctx.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    fs::create_dir(f.ctx.path().join("dir")).unwrap();
    fs::write(f.ctx.path().join("dir/a.txt"), "first version\n").unwrap();
    fs::write(f.ctx.path().join("dir/b.txt"), "unchanged\n").unwrap();
    f
}

fn context(f: &Fixture) -> Context {
    Context::open(f.ctx.path(), &f.ctx.path().join("Dockerfile")).unwrap()
}

fn changed_path(e: &ContextError) -> &Path {
    match e {
        ContextError::SourceChanged(p) => p,
        other => panic!("expected SourceChanged, got {other:?}"),
    }
}

#[test]
fn unchanged_sources_copy_what_the_key_was_computed_from() {
    let f = fixture();
    let ctx = context(&f);
    let req = CopyRequest::new(SourceRoot::Context(&ctx), vec!["dir".into()], "/out/");
    let resolution = resolve(&req).unwrap();
    let key = hash_resolved(&req, &resolution, None).unwrap();
    copy_resolved(&req, &resolution, f.root.path(), &CopyEnv::default()).unwrap();
    assert_eq!(
        fs::read_to_string(f.root.path().join("out/a.txt")).unwrap(),
        "first version\n"
    );
    // The shared resolution gives the key a fresh resolution gives.
    assert_eq!(key, hash_sources(&req, None).unwrap());
}

#[test]
fn a_file_edited_after_hashing_fails_the_copy_and_names_the_file() {
    let f = fixture();
    let ctx = context(&f);
    let req = CopyRequest::new(SourceRoot::Context(&ctx), vec!["dir".into()], "/out/");
    let resolution = resolve(&req).unwrap();
    let key = hash_resolved(&req, &resolution, None).unwrap();
    // Edited in place between hashing and copying.
    fs::write(f.ctx.path().join("dir/a.txt"), "second, longer version\n").unwrap();
    let err = copy_resolved(&req, &resolution, f.root.path(), &CopyEnv::default()).unwrap_err();
    assert_eq!(changed_path(&err), f.ctx.path().join("dir/a.txt"));
    assert!(err
        .to_string()
        .contains("changed while the build was reading it"));
    // The key of what is there now differs: storing the new bytes under `key` would have been wrong.
    assert_ne!(key, hash_sources(&req, None).unwrap());
}

#[test]
fn a_file_replaced_by_a_same_size_one_fails_the_copy() {
    let f = fixture();
    let ctx = context(&f);
    let req = CopyRequest::new(
        SourceRoot::Context(&ctx),
        vec!["dir/a.txt".into()],
        "/a.txt",
    );
    let resolution = resolve(&req).unwrap();
    hash_resolved(&req, &resolution, None).unwrap();
    // An editor's save: a new file of the same size renamed over the old one.
    let tmp = f.ctx.path().join("dir/.a.txt.swp");
    fs::write(&tmp, "FIRST VERSION\n").unwrap();
    fs::rename(&tmp, f.ctx.path().join("dir/a.txt")).unwrap();
    let err = copy_resolved(&req, &resolution, f.root.path(), &CopyEnv::default()).unwrap_err();
    assert_eq!(changed_path(&err), f.ctx.path().join("dir/a.txt"));
}

#[test]
fn a_file_edited_between_resolution_and_hashing_fails_the_hash() {
    let f = fixture();
    let ctx = context(&f);
    let req = CopyRequest::new(SourceRoot::Context(&ctx), vec!["dir".into()], "/out/");
    let resolution = resolve(&req).unwrap();
    fs::write(f.ctx.path().join("dir/b.txt"), "changed after the walk\n").unwrap();
    let err = hash_resolved(&req, &resolution, None).unwrap_err();
    assert_eq!(changed_path(&err), f.ctx.path().join("dir/b.txt"));
}
