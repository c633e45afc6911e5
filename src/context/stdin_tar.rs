//! `docker build -`: the context arrives as a tar on stdin (optionally compressed) and is
//! extracted into a scratch directory with the same in-root writer as COPY, so entries like
//! `../../x`, absolute names, symlinked parents or hardlinks to outside never write or link
//! outside the scratch dir. Owners are not restored (context owners are reset to 0:0 on COPY
//! anyway); devices and fifos are skipped.

use super::dest_root::{apply_fd_meta, DestRoot, Meta};
use super::error::ContextError;
use super::path_clean::rel_in_root;
use std::io::{Cursor, Read};
use std::path::Path;

/// Extracts a (possibly gzip/bzip2/xz/zstd-compressed) tar stream into `dest`.
pub fn extract_context_tar(mut reader: impl Read, dest: &Path) -> Result<(), ContextError> {
    let tar_err = |e: std::io::Error| ContextError::ContextTar(e.to_string());
    // Sniff the compression from magic bytes, never from a name.
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match reader.read(&mut head[n..]).map_err(tar_err)? {
            0 => break,
            k => n += k,
        }
    }
    let stream = Cursor::new(head[..n].to_vec()).chain(reader);
    let decoded: Box<dyn Read> = match &head[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::read::MultiBzDecoder::new(stream)),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => {
            Box::new(liblzma::read::XzDecoder::new_multi_decoder(stream))
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            Box::new(zstd::stream::read::Decoder::new(stream).map_err(tar_err)?)
        }
        _ => Box::new(stream),
    };
    let root = DestRoot::open(dest)?;
    let owner = Meta {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
        mode: None,
        mtime: None,
    };
    let mut archive = tar::Archive::new(decoded);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path_bytes();
        let rel = rel_in_root(&String::from_utf8_lossy(&raw));
        if rel.is_empty() {
            continue;
        }
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), rel.clone()),
        };
        let header = entry.header();
        let mode = header.mode().map_err(tar_err)? & 0o7777;
        let mtime = header.mtime().ok().map(|t| (t as i64, 0));
        let kind = header.entry_type();
        let (dir, _) = root.mkdir_all(&parent, &owner)?;
        let meta = Meta {
            mode: Some(mode),
            mtime,
            ..owner
        };
        match kind {
            tar::EntryType::Directory => {
                dir.ensure_dir(&name, &rel)?;
                dir.apply_dir_meta(&name, &meta)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                dir.clear_for_file(&name, &rel)?;
                let mut file = dir.create_file(&name)?;
                std::io::copy(&mut entry, &mut file).map_err(tar_err)?;
                apply_fd_meta(std::os::fd::AsFd::as_fd(&file), &meta)
                    .map_err(|e| ContextError::in_root(&rel, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                dir.clear_for_file(&name, &rel)?;
                dir.symlink(&name, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| rel_in_root(&String::from_utf8_lossy(&b)))
                    .unwrap_or_default();
                let (tparent, tname) = match target.rsplit_once('/') {
                    Some((p, n)) => (p.to_string(), n.to_string()),
                    None => (String::new(), target.clone()),
                };
                let old = root.open_dir(&tparent)?;
                dir.clear_for_file(&name, &rel)?;
                dir.hardlink(&name, &old, &tname)?;
            }
            // Devices, fifos and unknown types have no place in a build context.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_mtime(1000);
            // Write the raw name so hostile `../` names reach the extractor unchanged.
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            if !link.is_empty() {
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_names_stay_inside() {
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("victim");
        std::fs::write(&victim, b"host").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let link_target = victim.to_str().unwrap().to_string();
        let data = tar_with(&[
            ("../../escape", tar::EntryType::Regular, b"a", ""),
            ("/abs", tar::EntryType::Regular, b"b", ""),
            ("l", tar::EntryType::Symlink, b"", &link_target),
            ("l", tar::EntryType::Regular, b"c", ""),
            ("hl", tar::EntryType::Link, b"", &link_target),
        ]);
        let r = extract_context_tar(&data[..], dest.path());
        // The hardlink to a host path resolves inside the dest (and does not exist there).
        assert!(r.is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"host");
        assert_eq!(std::fs::read(dest.path().join("escape")).unwrap(), b"a");
        assert_eq!(std::fs::read(dest.path().join("abs")).unwrap(), b"b");
        // The regular file replaced the symlink instead of writing through it.
        assert!(!std::fs::symlink_metadata(dest.path().join("l"))
            .unwrap()
            .is_symlink());
        assert_eq!(std::fs::read(dest.path().join("l")).unwrap(), b"c");
    }

    #[test]
    fn gzip_context_with_dirs_and_links() {
        let data = tar_with(&[
            ("d/", tar::EntryType::Directory, b"", ""),
            ("d/f", tar::EntryType::Regular, b"hello", ""),
            ("d/s", tar::EntryType::Symlink, b"", "f"),
            ("d/h", tar::EntryType::Link, b"", "d/f"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &data).unwrap();
        let gz = gz.finish().unwrap();
        let dest = tempfile::tempdir().unwrap();
        extract_context_tar(&gz[..], dest.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        let f = std::fs::metadata(dest.path().join("d/f")).unwrap();
        assert_eq!(f.nlink(), 2);
        assert_eq!(f.mode() & 0o7777, 0o644);
        assert_eq!(f.mtime(), 1000);
        assert_eq!(
            std::fs::read_link(dest.path().join("d/s"))
                .unwrap()
                .to_str(),
            Some("f")
        );
        assert_eq!(std::fs::read(dest.path().join("d/h")).unwrap(), b"hello");
    }

    #[test]
    fn garbage_fails() {
        let dest = tempfile::tempdir().unwrap();
        let mut data = tar_with(&[("Dockerfile", tar::EntryType::Regular, b"FROM x", "")]);
        data.truncate(700);
        data.extend_from_slice(&[0x55; 300]);
        assert!(extract_context_tar(&data[..], dest.path()).is_err());
    }
}
