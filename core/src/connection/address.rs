//! Addresses a [`Listener`](super::Listener) binds and a [`Client`](super::Client) connects to:
//! TCP (IPv4 and IPv6), Unix socket paths and Linux abstract names.

use crate::error::{Error, Result};
use crate::sys::net::{PeerAddr, SockAddr};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a listener listens: CPython's `address` and its family in one value.
///
/// | CPython | here |
/// |---|---|
/// | `('127.0.0.1', 6000)` (`AF_INET`) | `Address::Tcp("127.0.0.1:6000".parse()?)`, or the string `"127.0.0.1:6000"` |
/// | `'/tmp/sock'` (`AF_UNIX`) | `Address::Unix("/tmp/sock".into())`, or the string `"/tmp/sock"` |
/// | `'\0name'` (`AF_UNIX`, abstract) | `Address::Abstract(b"name".to_vec())`, or the string `"@name"` (or `"\0name"`) |
///
/// TCP also takes IPv6 (`"[::1]:6000"`), which CPython's `multiprocessing.connection` does not.
///
/// Strings are read by [`Address::parse`]: a leading `@` or NUL names an abstract socket; a
/// string with a `/` is a path; `host:port` (with a numeric port) is TCP, the host resolved; any
/// other string is a relative path (write `./@x` for a path that starts with `@`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP address, IPv4 or IPv6.
    Tcp(SocketAddr),
    /// A Unix socket bound to a path in the file system.
    Unix(PathBuf),
    /// A Unix socket bound to a name in Linux's abstract namespace (no file; the name goes when
    /// the last socket bound to it closes).
    Abstract(Vec<u8>),
}

impl Address {
    /// Reads an address from a string (see the rules on [`Address`]). A host name is resolved
    /// (the first address it resolves to is used).
    pub fn parse(s: &str) -> Result<Address> {
        if s.is_empty() {
            return Err(Error::InvalidArgument("an empty address".into()));
        }
        if let Some(name) = s.strip_prefix('@').or_else(|| s.strip_prefix('\0')) {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if let Ok(a) = SocketAddr::from_str(s) {
            return Ok(Address::Tcp(a));
        }
        if let Some((host, port)) = s.rsplit_once(':') {
            if let Ok(port) = port.parse::<u16>() {
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                if host.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "address {s:?} has a port but no host"
                    )));
                }
                return resolve(host, port);
            }
        }
        Ok(Address::Unix(PathBuf::from(s)))
    }

    /// The address family, as CPython names it: `"AF_INET"`, `"AF_INET6"` or `"AF_UNIX"`.
    pub fn family(&self) -> &'static str {
        match self {
            Address::Tcp(SocketAddr::V4(_)) => "AF_INET",
            Address::Tcp(SocketAddr::V6(_)) => "AF_INET6",
            Address::Unix(_) | Address::Abstract(_) => "AF_UNIX",
        }
    }

    /// A fresh Unix socket path in the temporary directory (`$TMPDIR` or `/tmp`), unique to this
    /// process and call: CPython's `arbitrary_address('AF_UNIX')`. The listener that binds it
    /// removes the file when it is closed.
    pub fn unique_unix() -> Result<Address> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let mut rnd = [0u8; 6];
        crate::sys::net::random_bytes(&mut rnd)?;
        let hex: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("mproc-listener-{}-{n}-{hex}", std::process::id());
        Ok(Address::Unix(std::env::temp_dir().join(name)))
    }

    /// A loopback TCP address with an ephemeral port (CPython's `arbitrary_address('AF_INET')`):
    /// the listener's [`address`](super::Listener::address) tells the port it got.
    pub fn localhost() -> Address {
        Address::Tcp(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)))
    }

    pub(crate) fn to_sockaddr(&self) -> Result<SockAddr> {
        Ok(match self {
            Address::Tcp(a) => SockAddr::inet(*a),
            Address::Unix(p) => SockAddr::unix(p.as_os_str().as_bytes(), false)?,
            Address::Abstract(name) => SockAddr::unix(name, true)?,
        })
    }

    /// The address of a peer as the kernel reported it (`None` for an unnamed Unix socket).
    pub(crate) fn from_peer(p: PeerAddr) -> Option<Address> {
        match p {
            PeerAddr::Inet(a) => Some(Address::Tcp(a)),
            PeerAddr::UnixPath(b) => Some(Address::Unix(PathBuf::from(
                std::ffi::OsStr::from_bytes(&b),
            ))),
            PeerAddr::UnixAbstract(b) => Some(Address::Abstract(b)),
            PeerAddr::UnixUnnamed => None,
        }
    }
}

fn resolve(host: &str, port: u16) -> Result<Address> {
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::InvalidArgument(format!("cannot resolve host {host:?}: {e}")))?;
    addrs
        .next()
        .map(Address::Tcp)
        .ok_or_else(|| Error::InvalidArgument(format!("host {host:?} resolves to no address")))
}

impl FromStr for Address {
    type Err = Error;

    fn from_str(s: &str) -> Result<Address> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    /// `127.0.0.1:6000`, `[::1]:6000`, `/tmp/sock`, `@name`: what [`Address::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

/// Anything that names an [`Address`]: an `Address`, a string (read by [`Address::parse`]), a
/// socket address, `(host, port)`, `(ip, port)`, or a path.
pub trait ToAddress {
    /// The address named.
    fn to_address(&self) -> Result<Address>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address> {
        Ok(self.clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address> {
        Address::parse(self)
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address> {
        Address::parse(self)
    }
}

impl ToAddress for SocketAddr {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(*self))
    }
}

impl ToAddress for SocketAddrV4 {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(SocketAddr::V4(*self)))
    }
}

impl ToAddress for SocketAddrV6 {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(SocketAddr::V6(*self)))
    }
}

impl ToAddress for (IpAddr, u16) {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(SocketAddr::new(self.0, self.1)))
    }
}

impl ToAddress for (Ipv4Addr, u16) {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(SocketAddr::new(IpAddr::V4(self.0), self.1)))
    }
}

impl ToAddress for (Ipv6Addr, u16) {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Tcp(SocketAddr::new(IpAddr::V6(self.0), self.1)))
    }
}

impl ToAddress for (&str, u16) {
    fn to_address(&self) -> Result<Address> {
        match self.0.parse::<IpAddr>() {
            Ok(ip) => Ok(Address::Tcp(SocketAddr::new(ip, self.1))),
            Err(_) => resolve(self.0, self.1),
        }
    }
}

impl ToAddress for Path {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Unix(self.to_path_buf()))
    }
}

impl ToAddress for PathBuf {
    fn to_address(&self) -> Result<Address> {
        Ok(Address::Unix(self.clone()))
    }
}

impl<T: ToAddress + ?Sized> ToAddress for &T {
    fn to_address(&self) -> Result<Address> {
        (**self).to_address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_name_every_kind_of_address() {
        let cases: &[(&str, Address)] = &[
            (
                "127.0.0.1:6000",
                Address::Tcp("127.0.0.1:6000".parse().unwrap()),
            ),
            ("[::1]:6000", Address::Tcp("[::1]:6000".parse().unwrap())),
            ("/tmp/sock", Address::Unix("/tmp/sock".into())),
            ("./@odd", Address::Unix("./@odd".into())),
            ("sock", Address::Unix("sock".into())),
            ("@name", Address::Abstract(b"name".to_vec())),
            ("\0name", Address::Abstract(b"name".to_vec())),
        ];
        for (s, want) in cases {
            assert_eq!(&Address::parse(s).unwrap(), want, "{s:?}");
        }
        let local = Address::parse("localhost:7").unwrap();
        assert!(matches!(local, Address::Tcp(a) if a.ip().is_loopback() && a.port() == 7));
        assert!(Address::parse("").is_err());
        assert!(Address::parse(":80").is_err());
    }

    #[test]
    fn display_reads_back() {
        for a in [
            Address::parse("127.0.0.1:1").unwrap(),
            Address::parse("[::1]:2").unwrap(),
            Address::parse("/tmp/x").unwrap(),
            Address::parse("@abc").unwrap(),
        ] {
            assert_eq!(Address::parse(&a.to_string()).unwrap(), a);
        }
    }

    #[test]
    fn unique_unix_addresses_differ_and_fit() {
        let a = Address::unique_unix().unwrap();
        let b = Address::unique_unix().unwrap();
        assert_ne!(a, b);
        assert!(a.to_sockaddr().is_ok());
        assert_eq!(a.family(), "AF_UNIX");
    }

    #[test]
    fn over_long_unix_names_are_refused() {
        let long = Address::Unix(PathBuf::from("/".repeat(200)));
        assert!(long.to_sockaddr().is_err());
        assert!(Address::Abstract(vec![b'x'; 107]).to_sockaddr().is_ok());
        assert!(Address::Abstract(vec![b'x'; 108]).to_sockaddr().is_err());
    }
}
