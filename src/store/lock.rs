//! The store-wide lock: `flock` on `<root>/lock` across processes, plus an in-process owner so
//! the same thread can nest it (store methods lock internally and callers may hold it too).

use crate::store::{io_err, StoreError};
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};

#[derive(Debug, Default)]
struct Owner {
    thread: Option<ThreadId>,
    depth: usize,
    file: Option<File>,
}

#[derive(Debug)]
pub(crate) struct LockState {
    path: PathBuf,
    owner: Mutex<Owner>,
    released: Condvar,
}

impl LockState {
    pub(crate) fn new(path: PathBuf) -> Self {
        LockState {
            path,
            owner: Mutex::new(Owner::default()),
            released: Condvar::new(),
        }
    }

    fn owner(&self) -> MutexGuard<'_, Owner> {
        // A panic while holding this tiny mutex cannot leave Owner inconsistent.
        self.owner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Held store lock; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    state: std::sync::Arc<LockState>,
}

impl LockGuard {
    pub(crate) fn acquire(state: &std::sync::Arc<LockState>) -> Result<LockGuard, StoreError> {
        let me = thread::current().id();
        let mut owner = state.owner();
        loop {
            match owner.thread {
                Some(t) if t == me => {
                    owner.depth += 1;
                    return Ok(LockGuard {
                        state: state.clone(),
                    });
                }
                None => break,
                Some(_) => {
                    owner = state
                        .released
                        .wait(owner)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        owner.thread = Some(me);
        owner.depth = 1;
        drop(owner);
        // flock outside the mutex: it may block on another process.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&state.path)
            .and_then(|f| f.lock().map(|()| f));
        let mut owner = state.owner();
        match file {
            Ok(f) => {
                owner.file = Some(f);
                Ok(LockGuard {
                    state: state.clone(),
                })
            }
            Err(e) => {
                owner.thread = None;
                owner.depth = 0;
                state.released.notify_one();
                Err(io_err(&state.path)(e))
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut owner = self.state.owner();
        owner.depth = owner.depth.saturating_sub(1);
        if owner.depth == 0 {
            // Closing the file releases the flock.
            owner.file = None;
            owner.thread = None;
            self.state.released.notify_one();
        }
    }
}
