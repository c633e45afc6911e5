//! The build context: .dockerignore, source resolution, content hashing, COPY/ADD into a rootfs.
