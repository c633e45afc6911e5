//! The local, Docker-shaped image store and build cache.
