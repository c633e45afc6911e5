//! Outputs: docker-archive, OCI layout, rootfs tar and local directory.
