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
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

/// Mappings of extents, by file offset.
type Extents = Vec<(u64, Arc<Mapping>)>;

/// A shared memory block; see the module docs. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct SharedRegion(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    fd: OwnedFd,
    map: Mapping,
    method: StartMethod,
    /// This process's mappings of the file's extents beyond `map`, by file offset.
    extents: Mutex<Extents>,
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
        Ok(SharedRegion(Arc::new(Inner {
            fd,
            map,
            method,
            extents: Mutex::default(),
        })))
    }

    /// The mapping.
    #[inline]
    pub fn map(&self) -> &Mapping {
        &self.0.map
    }

    /// The start method of the context that made the region.
    pub fn method(&self) -> StartMethod {
        self.0.method
    }

    /// Adds an extent of `len` bytes at the end of the file,
    /// with its memory reserved, maps it, lets `init` initialise it (it is fresh: nobody else
    /// knows its offset yet), and returns its file offset and mapping. The caller serialises
    /// growth (it holds the lock of the structure that grows) and then publishes the offset in
    /// shared memory, where other processes find it and map the same extent
    /// ([`SharedRegion::extent`]): every process holds the file's descriptor, so an extent made
    /// after a child started reaches it too. Out of memory is an error here, not a `SIGBUS`
    /// later.
    pub fn grow(
        &self,
        len: usize,
        init: impl FnOnce(&mut Mapping) -> std::io::Result<()>,
    ) -> Result<(u64, Arc<Mapping>)> {
        let fd = self.0.fd.as_fd();
        let off = (sys::file_size(fd)? as u64).next_multiple_of(EXTENT_ALIGN);
        sys::fallocate(fd, off, len as u64)?;
        let mut map = Mapping::map_range(fd, off, len)?;
        init(&mut map)?;
        let map = Arc::new(map);
        if let Some(mut cache) = self.extents_cache() {
            cache.push((off, Arc::clone(&map)));
        }
        Ok((off, map))
    }

    /// The extent of `len` bytes at file offset `off` (made by [`SharedRegion::grow`], in this
    /// process or another), mapped in this process on first use.
    pub fn extent(&self, off: u64, len: usize) -> Result<Arc<Mapping>> {
        let cache = self.extents_cache();
        if let Some(cache) = &cache {
            if let Some((_, m)) = cache.iter().find(|(o, m)| *o == off && m.len() == len) {
                return Ok(Arc::clone(m));
            }
        }
        let map = Arc::new(Mapping::map_range(self.0.fd.as_fd(), off, len)?);
        if let Some(mut cache) = cache {
            cache.push((off, Arc::clone(&map)));
        }
        Ok(map)
    }

    /// Unmaps, in this process, the extents for which `dead(offset)` holds (no longer used by
    /// the structure; a mapping still borrowed elsewhere stays until that borrow ends).
    pub fn forget_extents(&self, dead: impl Fn(u64) -> bool) {
        if let Some(mut cache) = self.extents_cache() {
            cache.retain(|(off, _)| !dead(*off));
        }
    }

    /// Frees the memory behind `len` bytes at file offset `off` (they read as zeros afterwards,
    /// in every process).
    pub fn punch(&self, off: u64, len: usize) -> Result<()> {
        sys::punch_hole(self.0.fd.as_fd(), off, len as u64)?;
        Ok(())
    }

    /// The cache of extent mappings (held only for a lookup or an insertion, never across a
    /// system call). It does not wait for ever: a fork child whose parent had another thread
    /// inside it at the instant of the fork finds it locked for good, and then maps extents
    /// afresh each time instead.
    fn extents_cache(&self) -> Option<MutexGuard<'_, Extents>> {
        for _ in 0..64 {
            match self.0.extents.try_lock() {
                Ok(g) => return Some(g),
                Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => std::thread::yield_now(),
            }
        }
        None
    }
}

/// What extents' file offsets are multiples of: a multiple of every page size Linux uses
/// (`mmap` offsets must be page-aligned). Only the bytes of an extent take memory.
const EXTENT_ALIGN: u64 = 64 << 10;

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
            extents: Mutex::default(),
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
