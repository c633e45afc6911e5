//! ADD of a local archive: extract it if it is a (possibly compressed) tar.

use crate::layer::apply::{apply_in, ApplyOptions, WhiteoutMode};
use crate::layer::compress::{decompress, is_tar};
use crate::layer::error::LayerError;
use pathrs::Root;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

/// If `file` is a tar (plain, gzip, bzip2, xz or zstd), extracts it under `dest_in_root` and
/// returns `true`; otherwise returns `false` and the caller copies the file as it is.
///
/// `dest_in_root` is resolved (and created, 0755) inside `root`, and the archive is then
/// contained in that destination directory: its absolute symlinks resolve against the
/// destination, never against the rootfs or the host. Archives are not layers, so whiteouts are
/// not interpreted ([`WhiteoutMode::None`]); `opts.whiteouts` is ignored. No mtime clamping
/// happens here: the layer writer clamps when the step's layer is written.
pub fn extract_if_archive(
    file: &Path,
    root: &Path,
    dest_in_root: &Path,
    opts: &ApplyOptions,
) -> Result<bool, LayerError> {
    let f = File::open(file).map_err(|e| LayerError::io(file, "open", e))?;
    extract_reader_if_archive(f, root, dest_in_root, opts)
}

/// [`extract_if_archive`] on an open reader (e.g. one that reports progress as it is read).
pub fn extract_reader_if_archive<R: Read + Send + 'static>(
    f: R,
    root: &Path,
    dest_in_root: &Path,
    opts: &ApplyOptions,
) -> Result<bool, LayerError> {
    extract_reader_if_archive_as(f, root, dest_in_root, opts, None)
}

/// [`extract_reader_if_archive`], every extracted entry and every destination directory it
/// creates owned by `owner` when given (`ADD --chown=U:G x.tar /d/`, as BuildKit does).
pub fn extract_reader_if_archive_as<R: Read + Send + 'static>(
    f: R,
    root: &Path,
    dest_in_root: &Path,
    opts: &ApplyOptions,
    owner: Option<(u32, u32)>,
) -> Result<bool, LayerError> {
    let Ok((mut reader, _)) = decompress(f) else {
        return Ok(false);
    };
    let mut head = Vec::with_capacity(512);
    // A "compressed" file that fails to decompress is just a file to copy, as in Docker.
    if (&mut reader).take(512).read_to_end(&mut head).is_err() || !is_tar(&head) {
        return Ok(false);
    }

    let rootfs = Root::open(root).map_err(|source| LayerError::Resolve {
        name: dest_in_root.display().to_string(),
        op: "open root",
        root: root.to_path_buf(),
        source,
    })?;
    let perm = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    let resolve_err = |source| LayerError::Resolve {
        name: dest_in_root.display().to_string(),
        op: "create destination",
        root: root.to_path_buf(),
        source,
    };
    if let Some((uid, gid)) = owner {
        // Each missing directory of the destination is made, then given to the owner.
        let mut prefix = std::path::PathBuf::from("/");
        for comp in dest_in_root
            .components()
            .skip_while(|c| c == &std::path::Component::RootDir)
        {
            prefix.push(comp);
            if rootfs.resolve(&prefix).is_ok() {
                continue;
            }
            let made = rootfs.mkdir_all(&prefix, &perm).map_err(resolve_err)?;
            rustix::fs::fchown(
                &made,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(|e| LayerError::io(prefix.clone(), "chown", std::io::Error::from(e)))?;
        }
    }
    let dest = rootfs.mkdir_all(dest_in_root, &perm).map_err(resolve_err)?;
    let dest_root = Root::from_fd(std::os::fd::OwnedFd::from(dest));
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::None,
        ..*opts
    };
    // The joined path only names the destination in error messages; nothing resolves it.
    apply_in(
        Cursor::new(head).chain(reader),
        &dest_root,
        &root.join(dest_in_root.strip_prefix("/").unwrap_or(dest_in_root)),
        &opts,
        owner,
    )?;
    Ok(true)
}
