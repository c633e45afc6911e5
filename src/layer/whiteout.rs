//! OCI whiteout names (image-spec `layer.md`) and overlayfs' on-disk representation of them.

/// Prefix of a whiteout entry: `.wh.NAME` deletes `NAME` from the lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Opaque marker: `DIR/.wh..wh..opq` hides everything below `DIR` in the lower layers.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// xattr overlayfs sets on an opaque directory (value `y`).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Same, for overlays mounted with `userxattr` (rootless).
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";
/// Same, as fuse-overlayfs marks the directories it makes opaque.
pub const FUSE_OPAQUE_XATTR: &str = "user.fuseoverlayfs.opaque";

/// What a `.wh.`-prefixed base name means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// `.wh..wh..opq`
    Opaque,
    /// `.wh.NAME`: delete NAME.
    Delete(&'a [u8]),
    /// `.wh.`, `.wh..`, `.wh...`: invalid (image-spec: SHOULD error; containerd/moby do).
    Invalid,
}

/// Classifies a base name; `None` when it is not a whiteout at all.
pub(crate) fn classify(base: &[u8]) -> Option<Whiteout<'_>> {
    let rest = base.strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    if base == OPAQUE_MARKER.as_bytes() {
        return Some(Whiteout::Opaque);
    }
    if rest.is_empty() || rest == b"." || rest == b".." || rest.contains(&b'/') {
        return Some(Whiteout::Invalid);
    }
    Some(Whiteout::Delete(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_names() {
        assert_eq!(classify(b"file"), None);
        assert_eq!(classify(b".wh..wh..opq"), Some(Whiteout::Opaque));
        assert_eq!(classify(b".wh.foo"), Some(Whiteout::Delete(b"foo")));
        assert_eq!(classify(b".wh."), Some(Whiteout::Invalid));
        assert_eq!(classify(b".wh.."), Some(Whiteout::Invalid));
        assert_eq!(classify(b".wh..."), Some(Whiteout::Invalid));
        assert_eq!(classify(b".wh....x"), Some(Whiteout::Delete(b"...x")));
    }
}
