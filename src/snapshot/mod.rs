//! Overlay2-shaped snapshots: diff/work/merged/link/lower per layer, overlay mounts.
