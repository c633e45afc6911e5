//! Cooperative cancellation of long file operations (COPY/ADD, archive extraction, layer writing).
//!
//! The build's cancel flag (set by Ctrl-C/SIGTERM or a failing stage) is an `AtomicBool`; code that
//! loops over entries calls [`check`], and streams are wrapped in [`Reader`] / [`Writer`], which fail
//! the next read or write with an `io::Error` carrying [`Cancelled`]. Callers recognise it with
//! [`is_cancelled`] and clean up as on any other error.

use std::io::{self, Read, Write};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};

/// The operation stopped because the build was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// `Err(Cancelled)` once `flag` is set; `None` never cancels.
pub fn check(flag: Option<&AtomicBool>) -> Result<(), Cancelled> {
    match flag {
        Some(f) if f.load(Ordering::Relaxed) => Err(Cancelled),
        _ => Ok(()),
    }
}

/// [`check`] as an `io::Result`, for code that reports I/O errors.
pub fn check_io(flag: Option<&AtomicBool>) -> io::Result<()> {
    check(flag).map_err(io::Error::other)
}

/// Whether `e` (or an error it wraps) is a [`Cancelled`] from this module.
pub fn is_cancelled(e: &io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(err) = cur {
        if err.is::<Cancelled>() {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        cur = err.source();
    }
    false
}

/// A reader that fails with [`Cancelled`] once the flag is set (checked before every read). The
/// flag is borrowed (`&AtomicBool`) or shared (`Arc<AtomicBool>`, for readers that must be 'static).
pub struct Reader<R, F> {
    inner: R,
    flag: Option<F>,
}

impl<R, F: Deref<Target = AtomicBool>> Reader<R, F> {
    pub fn new(inner: R, flag: Option<F>) -> Self {
        Reader { inner, flag }
    }
}

impl<R: Read, F: Deref<Target = AtomicBool>> Read for Reader<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        check_io(self.flag.as_deref())?;
        self.inner.read(buf)
    }
}

/// A writer that fails with [`Cancelled`] once the flag is set (checked before every write).
pub struct Writer<'a, W> {
    inner: W,
    flag: Option<&'a AtomicBool>,
}

impl<'a, W> Writer<'a, W> {
    pub fn new(inner: W, flag: Option<&'a AtomicBool>) -> Self {
        Writer { inner, flag }
    }

    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Writer<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        check_io(self.flag)?;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_stop_once_the_flag_is_set() {
        let flag = AtomicBool::new(false);
        let mut r = Reader::new(&b"abcdef"[..], Some(&flag));
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        flag.store(true, Ordering::SeqCst);
        let e = r.read(&mut buf).unwrap_err();
        assert!(is_cancelled(&e));
        // Wrapped once more, as layer and context errors do, it is still recognised.
        let wrapped = io::Error::other(e);
        assert!(is_cancelled(&wrapped));
        let mut w = Writer::new(Vec::new(), Some(&flag));
        assert!(is_cancelled(&w.write(b"x").unwrap_err()));
        assert!(!is_cancelled(&io::Error::from(io::ErrorKind::NotFound)));
        assert!(check(None).is_ok());
    }
}
