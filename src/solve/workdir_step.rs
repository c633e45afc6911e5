//! WORKDIR's directory: made with its parents when missing, owned by the USER in effect, as a
//! layer; an empty layer when it already exists (BuildKit's mkdir file op, docs/compat.md).

use super::cache::StepKey;
use super::error::BuildError;
use super::progress::StepHandle;
use super::solver::Solver;
use super::state::StageState;
use crate::context::dest_root::{DestRoot, Meta};
use crate::plan::lower::{KeyInputs, Mkdir};
use std::path::Path;

impl Solver<'_> {
    /// One WORKDIR whose config edit is already applied to `st`; returns whether it was cached.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn workdir_step(
        &self,
        st: &mut StageState,
        m: &Mkdir,
        created_by: &str,
        key: &KeyInputs,
        line: usize,
        handle: &mut StepHandle,
        no_cache: bool,
    ) -> Result<bool, BuildError> {
        let mut inputs = key.clone();
        inputs.insert("layer-format".to_string(), self.layer_format());
        let key = StepKey::new(&st.key, inputs);
        if self.try_cache(st, &key, handle, no_cache)? {
            return Ok(true);
        }
        let layer = self.layer_step(st, handle.id(), |active| {
            let root = crate::snapshot::mount_fresh(&active.mounts, &self.scratch)
                .map_err(BuildError::snapshot)?;
            let made = make_dir(root.path(), m).map_err(|e| self.step_error(line, e));
            root.unmount().map_err(BuildError::snapshot)?;
            made
        })?;
        self.finish_layer_step(st, key, layer, created_by.to_string())
    }
}

/// Creates the missing directories of `m.path` inside `root` (resolved there, symlinks followed
/// as if `root` were `/`, as COPY's destination is), each 0755 and owned by `m.user` (looked up
/// in the image's /etc/passwd and /etc/group, as `--chown` is).
fn make_dir(root: &Path, m: &Mkdir) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("WORKDIR {}: {e}", m.path);
    let (uid, gid) = if m.user.is_empty() {
        (0, 0)
    } else {
        crate::exec::resolve_chown(root, &m.user).map_err(|e| fail(&e))?
    };
    let droot = DestRoot::open(root).map_err(|e| fail(&e))?;
    let meta = Meta {
        uid,
        gid,
        mode: Some(0o755),
        mtime: None,
    };
    droot.mkdir_all(&m.path, &meta).map_err(|e| fail(&e))?;
    Ok(())
}
