//! `SharedRegion`: a block of memory shared between processes — an anonymous `memfd` mapped
//! `MAP_SHARED` — that the queues, locks and shared values live in.
//!
//! Under `fork` a child inherits the mapping itself (the same physical pages). Under `spawn` and
//! `forkserver` the region serialises (through [`crate::reduction`]) as its descriptor, carried by
//! `SCM_RIGHTS`, and the child maps the same file again. Every region remembers the start method
//! of the context that made it and reports it when serialised, so that `start()` can refuse a
//! fork-context object passed to a process of another start method ([`Error::ContextMismatch`]).

use crate::error::{Error, Result};
use crate::method::StartMethod;
use crate::reduction;
use crate::sys::{self, Mapping};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// A shared memory block; see the module docs. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct SharedRegion(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    fd: OwnedFd,
    map: Mapping,
    method: StartMethod,
}

impl SharedRegion {
    /// A fresh zero-filled region of at least `len` bytes, for an object of the context with
    /// start method `method`. `init` runs on the mapping before anyone else can see it (it
    /// initialises mutexes).
    pub fn new(
        what: &str,
        len: usize,
        method: StartMethod,
        init: impl FnOnce(&mut Mapping) -> std::io::Result<()>,
    ) -> Result<SharedRegion> {
        let len = len.max(8).next_multiple_of(64);
        let fd = sys::memfd(&format!("mproc-{what}"), len)?;
        let mut map = Mapping::map(fd.as_fd())?;
        init(&mut map)?;
        Ok(SharedRegion(Arc::new(Inner { fd, map, method })))
    }

    /// The mapping.
    pub fn map(&self) -> &Mapping {
        &self.0.map
    }

    /// The start method of the context that made the region.
    pub fn method(&self) -> StartMethod {
        self.0.method
    }
}

struct FdRef<'a>(&'a OwnedFd);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        reduction::serialize_fd(self.0.as_fd(), "shared object (queue, lock or value)", s)
    }
}

struct FdOwned(OwnedFd);

impl<'de> Deserialize<'de> for FdOwned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        reduction::deserialize_fd(d).map(FdOwned)
    }
}

impl Serialize for SharedRegion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        reduction::note_context(self.0.method);
        (self.0.method, FdRef(&self.0.fd)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedRegion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (method, fd): (StartMethod, FdOwned) = Deserialize::deserialize(d)?;
        let map = Mapping::map(fd.0.as_fd())
            .map_err(|e| serde::de::Error::custom(format!("cannot map shared memory: {e}")))?;
        Ok(SharedRegion(Arc::new(Inner {
            fd: fd.0,
            map,
            method,
        })))
    }
}

/// Deadline arithmetic shared by the blocking primitives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<std::time::Instant>);

impl Deadline {
    /// `timeout` from now (`None`: never).
    pub fn after(timeout: Option<std::time::Duration>) -> Deadline {
        Deadline(timeout.map(|t| {
            std::time::Instant::now().checked_add(t).unwrap_or_else(|| {
                std::time::Instant::now() + std::time::Duration::from_secs(1 << 40)
            })
        }))
    }

    /// The time left (`None`: no limit); `Some(ZERO)` once passed.
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.0
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.remaining() == Some(std::time::Duration::ZERO)
    }
}

/// Turns an OS error into ours.
pub(crate) fn io(e: std::io::Error) -> Error {
    Error::Io(e)
}
