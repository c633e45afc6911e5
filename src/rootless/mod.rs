//! Rootless mode: an ordinary user's rbuild runs in a user namespace of its own, mapped with the
//! user's subordinate ids, so that everything after start (snapshots, layer files, RUN) is done
//! as "root" inside that namespace and the kernel maps ids both ways. docs/rootless.md says why
//! this needs no id mapping of its own in the layer writer or applier.

pub mod subid;
mod userns;

pub use userns::{enter_if_unprivileged, in_user_namespace, Identity, RootlessError};
