//! Random snapshot ids and overlay2-style short link ids.

use std::fs::File;
use std::io::{self, Read};

/// `n` random bytes from the kernel (no extra crate needed for this).
fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

/// 64 lowercase hex digits, like Docker's layer cache ids.
pub(crate) fn snapshot_id() -> io::Result<String> {
    Ok(hex::encode(random_bytes(32)?))
}

/// 26 characters of base32 (`A-Z2-7`), as overlay2's `l/` link names.
pub(crate) fn link_id() -> io::Result<String> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    Ok(random_bytes(26)?
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect())
}

pub(crate) fn is_snapshot_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) fn is_link_id(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_overlay2_shape() {
        let a = snapshot_id().unwrap();
        assert!(is_snapshot_id(&a), "{a}");
        assert_ne!(a, snapshot_id().unwrap());
        let l = link_id().unwrap();
        assert!(is_link_id(&l), "{l}");
        assert!(!is_snapshot_id("../etc"));
        assert!(!is_link_id("abc"));
    }
}
