//! The build plan: stages, ARG scoping, the stage graph and --target pruning.
