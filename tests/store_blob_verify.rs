//! Every blob commit verifies: the blob writer hashes what it stores (there is no trusted writer
//! that takes a caller's digest on faith), so the name is the sha256 of the bytes on disk, and a
//! producer that needs the digest (the layer writer) reads it from the writer.

use rbuild::digest::Digest;
use rbuild::store::Store;
use std::io::Write;

#[test]
fn the_digest_a_producer_reads_is_the_name_the_bytes_get() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let mut w = store.new_blob_writer().unwrap();
    w.write_all(b"layer ").unwrap();
    assert_eq!(w.digest(), Digest::of_bytes(b"layer "));
    w.write_all(b"bytes").unwrap();
    let seen = w.digest();
    assert_eq!(seen, Digest::of_bytes(b"layer bytes"));
    let stored = w.commit(Some(&seen)).unwrap();
    assert_eq!(stored, seen);
    let on_disk = std::fs::read(store.blob_path(&stored)).unwrap();
    assert_eq!(Digest::of_bytes(&on_disk), stored);
}

#[test]
fn a_digest_computed_over_other_bytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let mut w = store.new_blob_writer().unwrap();
    // A producer that hashed one stream and wrote another (the bug a trusted writer would hide).
    let claimed = Digest::of_bytes(b"what the producer hashed");
    w.write_all(b"what it actually wrote").unwrap();
    let err = w.commit(Some(&claimed)).unwrap_err();
    assert!(err.to_string().contains("mismatch"), "{err}");
    assert!(!store.has_blob(&claimed));
    assert!(!store.has_blob(&Digest::of_bytes(b"what it actually wrote")));
}
