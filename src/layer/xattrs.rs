//! Extended attributes of an upper dir's entries as a layer records them: sorted, without
//! overlayfs' bookkeeping or SELinux labels; overlay features a layer cannot express (redirects,
//! metacopy) are refused; opaque directories recognised by either xattr namespace.

use crate::layer::error::LayerError;
use crate::layer::whiteout::{FUSE_OPAQUE_XATTR, OVERLAY_OPAQUE_XATTR, USER_OPAQUE_XATTR};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// (name, value) pairs of extended attributes.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// xattrs never copied into a layer: overlayfs' own bookkeeping and host SELinux labels.
pub(crate) fn skip_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name.starts_with(b"user.fuseoverlayfs.")
        || name == b"security.selinux"
}

/// xattrs of `path` (not following symlinks), sorted by name, minus the ones we never copy.
pub(crate) fn read_xattrs(path: &Path) -> Result<Xattrs, LayerError> {
    read_xattrs_via(path, || xattr::list(path), |n| xattr::get(path, n))
}

/// [`read_xattrs`] of an open file (no path lookups).
pub(crate) fn read_file_xattrs(file: &File, path: &Path) -> Result<Xattrs, LayerError> {
    use xattr::FileExt;
    read_xattrs_via(path, || file.list_xattr(), |n| file.get_xattr(n))
}

pub(crate) fn read_xattrs_via<L: Iterator<Item = std::ffi::OsString>>(
    path: &Path,
    list: impl FnOnce() -> io::Result<L>,
    get: impl Fn(&OsStr) -> io::Result<Option<Vec<u8>>>,
) -> Result<Xattrs, LayerError> {
    let names = match list() {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(LayerError::io(path, "listxattr", e)),
    };
    let mut out = Vec::new();
    for name in names {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"trusted.overlay.redirect")
            || bytes.starts_with(b"user.overlay.redirect")
            || bytes.starts_with(b"trusted.overlay.metacopy")
            || bytes.starts_with(b"user.overlay.metacopy")
        {
            return Err(LayerError::OverlayFeature {
                path: path.to_path_buf(),
                name: name.to_string_lossy().into_owned(),
            });
        }
        if skip_xattr(bytes) {
            continue;
        }
        match get(&name) {
            Ok(Some(value)) => out.push((bytes.to_vec(), value)),
            Ok(None) => {}
            Err(e) => return Err(LayerError::io(path, "getxattr", e)),
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn is_opaque(path: &Path) -> Result<bool, LayerError> {
    for name in [OVERLAY_OPAQUE_XATTR, USER_OPAQUE_XATTR, FUSE_OPAQUE_XATTR] {
        match xattr::get(path, OsStr::new(name)) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(LayerError::io(path, "getxattr opaque", e)),
        }
    }
    Ok(false)
}
