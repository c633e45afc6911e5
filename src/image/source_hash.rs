//! Classic Docker's source ids in `created_by` (`COPY file:<hex> in /`): tarsum-v1 per-file
//! hashes and the `file:`/`dir:`/`multi:` aggregates (ANCHORS §6.1).

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::{self, Read};

/// Tar header fields that classic Docker's tarsum-v1 per-file hash covers (no mtime).
#[derive(Debug, Clone, Default)]
pub struct TarsumHeader {
    /// Raw tar header name, relative to the context root; directories keep a trailing `/`.
    pub name: String,
    /// Permission (+ setuid/setgid/sticky) bits, as Go's `FileInfoHeader` writes them.
    pub mode: i64,
    pub uid: u64,
    pub gid: u64,
    /// Content size (0 for non-regular files).
    pub size: u64,
    /// Tar typeflag byte (`b'0'` file, `b'5'` dir, `b'2'` symlink, …).
    pub typeflag: u8,
    pub linkname: String,
    pub devmajor: i64,
    pub devminor: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Classic Docker's per-file content hash (tarsum v1 without mtime): sha256 over the selected
/// header key/value pairs (uname/gname always empty) followed by the file bytes. Returns hex.
pub fn tarsum_file(h: &TarsumHeader, mut content: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let fields: [(&str, String); 11] = [
        ("name", h.name.clone()),
        ("mode", h.mode.to_string()),
        ("uid", h.uid.to_string()),
        ("gid", h.gid.to_string()),
        ("size", h.size.to_string()),
        ("typeflag", (h.typeflag as char).to_string()),
        ("linkname", h.linkname.clone()),
        ("uname", String::new()),
        ("gname", String::new()),
        ("devmajor", h.devmajor.to_string()),
        ("devminor", h.devminor.to_string()),
    ];
    for (k, v) in &fields {
        hasher.update(k.as_bytes());
        hasher.update(v.as_bytes());
    }
    for (k, v) in &h.xattrs {
        hasher.update(k.as_bytes());
        hasher.update(v);
    }
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = content.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `file:<hex>` for a single-file source.
pub fn source_hash_file(tarsum_hex: &str) -> String {
    format!("file:{tarsum_hex}")
}

/// `dir:<hex>`: sha256 of the sorted per-path sums (the dir itself and every descendant) joined by `,`.
pub fn source_hash_dir(tarsums_hex: &[String]) -> String {
    let mut sorted = tarsums_hex.to_vec();
    sorted.sort();
    hash_string_slice("dir", &sorted)
}

/// `multi:<hex>` for a COPY with several sources: sha256 of the source hashes (with their
/// `file:`/`dir:` prefixes) in source order, joined by `,`; a single source is returned as is.
pub fn source_hash_multi(source_hashes: &[String]) -> String {
    match source_hashes {
        [one] => one.clone(),
        many => hash_string_slice("multi", many),
    }
}

fn hash_string_slice(prefix: &str, items: &[String]) -> String {
    format!(
        "{prefix}:{}",
        hex::encode(Sha256::digest(items.join(",").as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarsum_field_order_and_aggregates() {
        let h = TarsumHeader {
            name: "a.txt".into(),
            mode: 0o644,
            size: 3,
            typeflag: b'0',
            ..Default::default()
        };
        let got = tarsum_file(&h, &b"hi\n"[..]).unwrap();
        let expect = hex::encode(Sha256::digest(
            b"namea.txtmode420uid0gid0size3typeflag0linknameunamegnamedevmajor0devminor0hi\n",
        ));
        assert_eq!(got, expect);
        let mut hx = h.clone();
        hx.xattrs.insert("user.k".into(), b"v".to_vec());
        assert_ne!(tarsum_file(&hx, &b"hi\n"[..]).unwrap(), got);

        let d = source_hash_dir(&["bb".into(), "aa".into()]);
        assert_eq!(d, format!("dir:{}", hex::encode(Sha256::digest(b"aa,bb"))));
        let m = source_hash_multi(&["file:1".into(), "dir:2".into()]);
        assert_eq!(
            m,
            format!("multi:{}", hex::encode(Sha256::digest(b"file:1,dir:2")))
        );
        assert_eq!(source_hash_multi(&["file:1".into()]), "file:1");
    }
}
