//! The command line interface.
