//! Gates: tasks that finish when the test says so. Each gated task connects to a Unix socket
//! the test holds, announces its id, and blocks until the test releases it; tests that depend
//! on the order in which tasks finish use them instead of sleeps.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A Unix socket that gated tasks connect to; each blocks until the test releases it.
pub struct Gates {
    listener: UnixListener,
    path: PathBuf,
    waiting: HashMap<u32, UnixStream>,
}

impl Gates {
    pub fn new() -> Gates {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "mproc-gate-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind gate socket");
        listener.set_nonblocking(true).expect("nonblocking");
        Gates {
            listener,
            path,
            waiting: HashMap::new(),
        }
    }

    pub fn path(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Waits until the tasks `ids` are all blocked at the gate.
    pub fn wait_for(&mut self, ids: &[u32]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ids.iter().all(|id| self.waiting.contains_key(id)) {
            assert!(
                Instant::now() < deadline,
                "gated tasks {ids:?} never arrived"
            );
            match self.listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut id = [0u8; 4];
                    s.read_exact(&mut id).unwrap();
                    self.waiting.insert(u32::from_le_bytes(id), s);
                }
                // Polling the listener: this only bounds how long we wait for the tasks to
                // arrive; it orders nothing.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    pub fn release(&mut self, id: u32) {
        let mut s = self.waiting.remove(&id).expect("task is waiting");
        s.write_all(&[1]).unwrap();
    }
}

impl Drop for Gates {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Announces itself at the gate, waits to be released, returns `id`.
pub fn gated(path: String, id: u32) -> u32 {
    let mut s = UnixStream::connect(&path).expect("connect to gate");
    s.write_all(&id.to_le_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).expect("released");
    id
}
