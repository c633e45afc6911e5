//! Image metadata parsing: image config, Docker/OCI manifest, OCI index, docker-archive
//! `manifest.json`, `repositories.json`, digests and references — alone and through the store's
//! `load` path (an OCI layout / docker-archive directory). Nothing may panic, and a config that
//! parses must survive its own canonical serialization unchanged, as must its form as a base
//! (`into_base`). Seeds include testdata/images (the producer corpus, issue 22).
//!
//! Input: up to five parts separated by `\n--\n`. Part 0 is the top document (`index.json` when
//! it starts with `{`, `manifest.json` otherwise; also tried as `repositories.json`); parts 1-4
//! are blobs stored at `blobs/sha256/<their digest>`. So that the fuzzer can build valid
//! references, `@k` in a part is replaced by `sha256:<hex of part k>`, `%k` by the bare hex and
//! `#k` by part k's size; a part may only refer to later parts (and part 0 to all of them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild::digest::Digest;
use rbuild::export::docker_archive::ManifestItem;
use rbuild::image::manifest::{Index, Manifest};
use rbuild::image::{ImageConfig, Reference};
use rbuild::store::Store;
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

const SEP: &[u8] = b"\n--\n";

fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < 4 {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                parts.push(rest[..i].to_vec());
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    parts.push(rest.to_vec());
    parts
}

fn substitute(part: &[u8], known: &[(usize, Digest, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        let c = part[i];
        if matches!(c, b'@' | b'%' | b'#') && i + 1 < part.len() {
            let k = part[i + 1].wrapping_sub(b'0') as usize;
            if let Some((_, d, size)) = known.iter().find(|(n, _, _)| *n == k) {
                match c {
                    b'@' => out.extend_from_slice(d.to_string().as_bytes()),
                    b'%' => out.extend_from_slice(d.hex().as_bytes()),
                    _ => out.extend_from_slice(size.to_string().as_bytes()),
                }
                i += 2;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn parse_alone(bytes: &[u8]) {
    match ImageConfig::from_bytes(bytes) {
        Ok(c) => {
            // rbuild's own form of it as a base is stable too (issue 22).
            let base = c.clone().into_base().to_bytes().expect("a base serializes");
            let again = ImageConfig::from_bytes(&base).expect("a base's bytes parse");
            assert_eq!(
                again.to_bytes().expect("serializes"),
                base,
                "base form unstable"
            );
        }
        // Errors render (with their JSON path) without panicking.
        Err(e) => drop(e.to_string()),
    }
    if let Ok(c) = ImageConfig::from_bytes(bytes) {
        let _ = c.digest();
        let canon = c.to_bytes().expect("a parsed config serializes");
        let again = ImageConfig::from_bytes(&canon).expect("canonical config parses");
        assert_eq!(
            c, again,
            "config changed across its canonical serialization"
        );
        assert_eq!(
            canon,
            again.to_bytes().expect("serializes"),
            "canonical bytes unstable"
        );
    }
    if let Err(e) = Manifest::from_bytes(bytes) {
        drop(e.to_string());
    }
    if let Ok(m) = Manifest::from_bytes(bytes) {
        let text = serde_json::to_vec(&m).expect("manifest serializes");
        assert_eq!(Manifest::from_bytes(&text).ok(), Some(m));
    }
    if let Ok(i) = Index::from_bytes(bytes) {
        let text = serde_json::to_vec(&i).expect("index serializes");
        assert_eq!(Index::from_bytes(&text).ok(), Some(i));
    }
    let _ = serde_json::from_slice::<Vec<ManifestItem>>(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        if s.len() < 512 {
            let _ = Digest::parse(s);
            if let Ok(r) = Reference::parse(s) {
                let _ = (
                    r.familiar(),
                    r.normalized(),
                    r.familiar_name(),
                    r.tag_or_latest(),
                );
                // The normalized form must parse back to the same reference.
                let again = Reference::parse(&r.normalized()).expect("normalized ref parses");
                assert_eq!(again.normalized(), r.normalized());
            }
            let _ = Reference::parse_tagged(s);
        }
    }
}

fn scratch() -> &'static PathBuf {
    static S: OnceLock<PathBuf> = OnceLock::new();
    S.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("rbuild-fuzz-manifest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("scratch dir");
        p
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = split(data);
    // Resolve placeholders from the last part to the first.
    let mut known: Vec<(usize, Digest, usize)> = Vec::new();
    let mut parts = vec![Vec::new(); raw.len()];
    for k in (0..raw.len()).rev() {
        let p = substitute(&raw[k], &known);
        known.push((k, Digest::of_bytes(&p), p.len()));
        parts[k] = p;
    }
    for p in &parts {
        parse_alone(p);
    }

    let base = scratch();
    let store_dir = base.join("store");
    let layout = base.join("layout");
    let _ = fs::remove_dir_all(&store_dir);
    let _ = fs::remove_dir_all(&layout);
    let Ok(store) = Store::open(&store_dir) else {
        return;
    };

    // repositories.json as the store reads it.
    let repos = store_dir.join("image/overlay2/repositories.json");
    // Setup writes that fail (a full disk) end the input: the environment's failure, not a finding.
    if fs::write(&repos, &parts[0]).is_err() {
        return;
    }
    for q in ["x", "busybox:latest", "sha256:", "x@sha256:0000"] {
        let _ = store.resolve(q);
    }
    let _ = store.list_images();
    if fs::remove_file(&repos).is_err() {
        return;
    }

    // The load path over a layout directory.
    let blobs = layout.join("blobs/sha256");
    if fs::create_dir_all(&blobs).is_err() {
        return;
    }
    let top_is_index = parts[0].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let top_name = if top_is_index {
        "index.json"
    } else {
        "manifest.json"
    };
    if fs::write(layout.join(top_name), &parts[0]).is_err() {
        return;
    }
    for (k, d, _) in &known {
        if *k > 0 && fs::write(blobs.join(d.hex()), &parts[*k]).is_err() {
            return;
        }
    }
    let mut n = 0;
    let mut extract = |_: &rbuild::store::LayerRecord, _: &std::path::Path| {
        n += 1;
        Ok::<_, std::boxed::Box<dyn std::error::Error + Send + Sync>>(format!("fuzz{n}"))
    };
    if let Ok(images) = store.load_archive(&layout, &mut extract) {
        for img in images {
            let _ = store.export_image(&img.id, &img.tags, rbuild::store::LayerForm::AsStored);
            let _ = store.image_summary(&img.id);
        }
        let _ = store.list_images();
    }
});
