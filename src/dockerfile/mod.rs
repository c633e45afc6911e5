//! Dockerfile parsing: directives, continuations, heredocs, JSON/shell form, flags, variable expansion.
