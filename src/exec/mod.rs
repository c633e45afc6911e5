//! RUN: executes a command in Linux namespaces over a snapshot.
