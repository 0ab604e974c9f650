//! Socket sources: TCP and Unix streams (one input per connection, a
//! connection limit, framing per connection) and UDP and Unix datagrams
//! (one or more lines per datagram; they cannot push back, so what does not
//! fit in the queue is dropped and counted).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket, UnixDatagram, UnixListener};
use tokio::task::{JoinHandle, JoinSet};

use serde::Deserialize;

use super::{
    conns, read_stream, shutdown_signalled, Framing, SourceContext, StreamEnd, StreamGuard,
};
use crate::backoff::Backoff;
use crate::pipeline::LineBatcher;
use crate::settings::{in_range, Invalid};

/// Most connections a stream source accepts at once.
pub const MAX_CONNECTIONS: usize = 1 << 20;

fn default_max_connections() -> usize {
    1024
}
fn default_idle_timeout_secs() -> u64 {
    600
}
fn default_evict_idle_secs() -> u64 {
    10
}

/// The connection settings every stream source shares: who may hold a
/// connection, and for how long in silence. (Written out in each source's
/// table rather than flattened: serde's flatten would turn a misspelt key
/// into a "missing field" error that does not name it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address (none: no limit).
    pub max_connections_per_peer: Option<usize>,
    /// A connection silent this long is closed.
    pub idle_timeout_secs: u64,
    /// At the limit, a connection silent this long gives way to a new one.
    pub evict_idle_secs: u64,
}

impl ConnectionSettings {
    /// # Errors
    /// A setting out of its range.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("max_connections", self.max_connections, 1, MAX_CONNECTIONS)?;
        if let Some(n) = self.max_connections_per_peer {
            in_range("max_connections_per_peer", n, 1, MAX_CONNECTIONS)?;
        }
        in_range("idle_timeout_secs", self.idle_timeout_secs, 1, 7 * 86_400)?;
        in_range("evict_idle_secs", self.evict_idle_secs, 0, 7 * 86_400)
    }

    fn limits(&self) -> conns::Limits {
        conns::Limits {
            max: self.max_connections,
            per_peer: self.max_connections_per_peer,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            evict_idle: Duration::from_secs(self.evict_idle_secs),
        }
    }
}

/// `[sources.NAME] type = "tcp"`: newline-framed or RFC 6587 octet-counted.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub address: SocketAddr,
    /// Syslog over TLS (RFC 5425): `cert_file`, `key_file`, and
    /// `client_ca_file` to require client certificates.
    #[serde(default)]
    pub tls: Option<super::tls::ServerTls>,
    /// Peers allowed to connect (CIDRs); empty: any. Others are refused
    /// and counted (`reason="peer_not_allowed"`).
    #[serde(default)]
    pub allowed_peers: Vec<ipnet::IpNet>,
    /// Connections at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections at once from one address (TCP; none: no limit).
    #[serde(default)]
    pub max_connections_per_peer: Option<usize>,
    /// A connection silent this long is closed (log shippers reconnect).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// At the connection limit, a connection silent this long gives way to
    /// a new one, so idle sockets cannot lock real senders out.
    #[serde(default = "default_evict_idle_secs")]
    pub evict_idle_secs: u64,

    #[serde(default)]
    pub framing: Framing,
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
}

/// `[sources.NAME] type = "udp"`: one or more lines per datagram.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    pub address: SocketAddr,
    /// Peers whose datagrams are read (CIDRs); empty: any. Others are
    /// dropped and counted (`iocd_lines_dropped_total{reason="peer_not_allowed"}`).
    #[serde(default)]
    pub allowed_peers: Vec<ipnet::IpNet>,
    /// The socket's receive buffer (`SO_RCVBUF`), which absorbs bursts
    /// while the matchers catch up. Default 4 MiB: the kernel's default
    /// (~208 KiB) lost 7-14% of a 20,000-datagram burst, 4 MiB none. The
    /// kernel caps it at `net.core.rmem_max`; a warning says when it did.
    #[serde(default = "default_receive_buffer_bytes")]
    pub receive_buffer_bytes: usize,
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
}

impl UdpConfig {
    /// # Errors
    /// A receive buffer out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range(
            "receive_buffer_bytes",
            self.receive_buffer_bytes,
            4096,
            1 << 30,
        )
    }
}

fn default_receive_buffer_bytes() -> usize {
    4 << 20
}

/// `[sources.NAME] type = "unix"`: a Unix socket, stream or datagram.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnixConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub mode: UnixMode,
    /// Connections at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections at once from one address (TCP; none: no limit).
    #[serde(default)]
    pub max_connections_per_peer: Option<usize>,
    /// A connection silent this long is closed (log shippers reconnect).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// At the connection limit, a connection silent this long gives way to
    /// a new one, so idle sockets cannot lock real senders out.
    #[serde(default = "default_evict_idle_secs")]
    pub evict_idle_secs: u64,

    #[serde(default)]
    pub framing: Framing,
    /// How lines are read for context in hits: `none`, `syslog`, `auto`
    /// (syslog when the line starts with `<PRI>`), `json`.
    #[serde(default)]
    pub parse: crate::context::LineFormat,
}

/// A Unix socket's kind.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnixMode {
    #[default]
    Stream,
    Datagram,
}

impl TcpConfig {
    /// # Errors
    /// A connection setting out of range; TLS files that do not load.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(tls) = &self.tls {
            tls.server_config().map_err(|e| Invalid::new("tls", e))?;
        }
        self.connections().validate()
    }

    /// Its connection settings.
    pub fn connections(&self) -> ConnectionSettings {
        ConnectionSettings {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            idle_timeout_secs: self.idle_timeout_secs,
            evict_idle_secs: self.evict_idle_secs,
        }
    }
}

impl UnixConfig {
    /// # Errors
    /// A connection setting out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.connections().validate()
    }

    /// Its connection settings.
    pub fn connections(&self) -> ConnectionSettings {
        ConnectionSettings {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            idle_timeout_secs: self.idle_timeout_secs,
            evict_idle_secs: self.evict_idle_secs,
        }
    }
}

/// The stream listeners: a closed set.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// The datagram sockets: a closed set.
enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl DatagramSocket {
    /// A datagram and its sender's address (none for Unix sockets).
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<SocketAddr>)> {
        match self {
            DatagramSocket::Udp(s) => s.recv_from(buf).await.map(|(n, a)| (n, Some(a))),
            DatagramSocket::Unix(s) => s.recv(buf).await.map(|n| (n, None)),
        }
    }

    /// A datagram already waiting, without waiting (`WouldBlock` if none).
    fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<(usize, Option<SocketAddr>)> {
        match self {
            DatagramSocket::Udp(s) => s.try_recv_from(buf).map(|(n, a)| (n, Some(a))),
            DatagramSocket::Unix(s) => s.try_recv(buf).map(|n| (n, None)),
        }
    }
}

/// Binds the TCP listener and spawns its accept loop.
///
/// # Errors
/// The address cannot be bound.
pub async fn tcp(
    name: Arc<str>,
    config: TcpConfig,
    ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let listener = Listener::Tcp(TcpListener::bind(config.address).await?);
    let tls = match config.tls.clone() {
        Some(t) => Some(super::tls::Acceptor::new(t).map_err(std::io::Error::other)?),
        None => None,
    };
    Ok(tokio::spawn(accept_loop(
        name,
        config.connections(),
        config.framing,
        PeerFilter(config.allowed_peers),
        tls,
        ctx,
        listener,
    )))
}

/// Binds the Unix socket (replacing a stale socket file) and spawns its task.
///
/// # Errors
/// The path cannot be bound, or holds something that is not a socket.
pub async fn unix(
    name: Arc<str>,
    config: UnixConfig,
    ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let connections = config.connections();
    let UnixConfig {
        path,
        mode,
        framing,
        ..
    } = config;
    remove_stale_socket(&path)?;
    match mode {
        UnixMode::Stream => {
            let listener = Listener::Unix(UnixListener::bind(&path)?);
            Ok(tokio::spawn(async move {
                accept_loop(
                    name,
                    connections,
                    framing,
                    PeerFilter::default(),
                    None,
                    ctx,
                    listener,
                )
                .await;
                let _ = std::fs::remove_file(&path);
            }))
        }
        UnixMode::Datagram => {
            let socket = DatagramSocket::Unix(UnixDatagram::bind(&path)?);
            Ok(tokio::spawn(async move {
                datagrams(name, ctx, socket, PeerFilter::default()).await;
                let _ = std::fs::remove_file(&path);
            }))
        }
    }
}

/// A socket file left by a previous run would make bind fail; anything
/// else at that path is not ours to remove.
fn remove_stale_socket(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Err(_) => Ok(()),
    }
}

/// Binds the UDP socket and spawns its task.
///
/// # Errors
/// The address cannot be bound.
pub async fn udp(
    name: Arc<str>,
    config: UdpConfig,
    ctx: SourceContext,
) -> std::io::Result<JoinHandle<()>> {
    let socket = UdpSocket::bind(config.address).await?;
    let asked = config.receive_buffer_bytes;
    let sock = socket2::SockRef::from(&socket);
    sock.set_recv_buffer_size(asked)?;
    // Linux reports twice what it grants (it doubles it for overhead).
    let reported = sock.recv_buffer_size()?;
    let granted = if cfg!(target_os = "linux") {
        reported / 2
    } else {
        reported
    };
    if granted < asked {
        tracing::warn!(
            source = %name,
            asked,
            granted,
            "UDP receive buffer capped by the kernel: raise net.core.rmem_max, or bursts may be lost"
        );
    }
    let socket = DatagramSocket::Udp(socket);
    Ok(tokio::spawn(datagrams(
        name,
        ctx,
        socket,
        PeerFilter(config.allowed_peers),
    )))
}

/// The peers a network source reads from: CIDRs, or any when empty.
#[derive(Clone, Debug, Default)]
struct PeerFilter(Vec<ipnet::IpNet>);

impl PeerFilter {
    /// True when `peer` may send (always for Unix sockets, which have none).
    fn allows(&self, peer: Option<std::net::IpAddr>) -> bool {
        match peer {
            Some(ip) if !self.0.is_empty() => {
                // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
                let ip = match ip {
                    std::net::IpAddr::V6(v6) => {
                        v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4)
                    }
                    v4 => v4,
                };
                self.0.iter().any(|n| n.contains(&ip))
            }
            _ => true,
        }
    }
}

async fn accept_loop(
    name: Arc<str>,
    settings: ConnectionSettings,
    framing: Framing,
    peers: PeerFilter,
    mut tls: Option<super::tls::Acceptor>,
    ctx: SourceContext,
    listener: Listener,
) {
    let tls_failed = ctx
        .metrics
        .connections_closed
        .with_label_values(&[&name, "tls_handshake"]);
    let registry = conns::Registry::new(settings.limits());
    let m = &ctx.metrics;
    let open = m.connections_open.with_label_values(&[&name]);
    let closed = |reason: &str| m.connections_closed.with_label_values(&[&name, reason]);
    let (idle_closed, evicted) = (closed("idle_timeout"), closed("evicted"));
    let mut shutdown = ctx.shutdown.clone();
    let mut connections = JoinSet::new();
    // Out of descriptors (EMFILE) accept fails at once, every time: back
    // off instead of spinning, and say so once in a while, not per try.
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut accept_warning = conns::Throttle::new(Duration::from_secs(10));
    let mut refused_warning = conns::Throttle::new(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = accept(&listener) => match r {
                Ok(s) => {
                    backoff.reset();
                    s
                }
                Err(e) => {
                    if let Some(quiet) = accept_warning.allow() {
                        tracing::warn!(source = %name, error = %e, not_logged = quiet, "accept failed; backing off");
                    }
                    tokio::select! {
                        _ = shutdown_signalled(&mut shutdown) => break,
                        _ = tokio::time::sleep(backoff.next_wait()) => continue,
                    }
                }
            },
        };
        let peer_addr = peer;
        let peer = peer.map(|p| p.ip());
        if !peers.allows(peer) {
            m.connections_rejected
                .with_label_values(&[&name, "peer_not_allowed"])
                .inc();
            if let Some(quiet) = refused_warning.allow() {
                tracing::warn!(source = %name, peer = ?peer, not_logged = quiet, "connection refused: peer not allowed");
            }
            continue;
        }
        let (ticket, was_evicted) = match registry.admit(peer) {
            Ok(admitted) => admitted,
            Err(why) => {
                m.connections_rejected
                    .with_label_values(&[&name, why.label()])
                    .inc();
                if let Some(quiet) = refused_warning.allow() {
                    tracing::warn!(source = %name, reason = why.label(), max_connections = settings.max_connections, not_logged = quiet, "connection refused");
                }
                continue;
            }
        };
        if was_evicted {
            evicted.inc();
        }
        let (ctx, open, name, idle_closed) =
            (ctx.clone(), open.clone(), name.clone(), idle_closed.clone());
        let idle_timeout = registry.limits().idle_timeout;
        let acceptor = tls.as_mut().map(super::tls::Acceptor::current);
        let tls_failed = tls_failed.clone();
        open.inc();
        connections.spawn(async move {
            // Each connection is its own input: own line numbers, own framing,
            // so garbage or a cut line from one client touches nobody else.
            let mut shutdown = ctx.shutdown.clone();
            let mut batcher = ctx.batcher(&name);
            if let Some(p) = peer_addr {
                batcher.set_peer(p);
            }
            let guard = Some(StreamGuard {
                activity: &ticket.activity,
                idle_timeout,
            });
            let end = match (stream, acceptor) {
                (Stream::Tcp(s), Some(acceptor)) => {
                    // The handshake runs in the connection's task, bounded:
                    // a client that never finishes it holds only itself.
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(s));
                    match handshake.await {
                        Ok(Ok(s)) => {
                            let mut batcher = batcher;
                            // mTLS: the client's certificate names the sender in hits.
                            if let Some(subject) = s
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| super::tls::subject(c))
                            {
                                batcher.set_tls_client(Arc::from(subject));
                            }
                            read_stream(s, batcher, framing, &ctx.queue, &mut shutdown, guard).await
                        }
                        _ => {
                            tls_failed.inc();
                            StreamEnd::Closed
                        }
                    }
                }
                (Stream::Tcp(s), None) => {
                    read_stream(s, batcher, framing, &ctx.queue, &mut shutdown, guard).await
                }
                (Stream::Unix(s), _) => {
                    read_stream(s, batcher, framing, &ctx.queue, &mut shutdown, guard).await
                }
            };
            if end == StreamEnd::IdleTimeout {
                idle_closed.inc();
            }
            open.dec();
            drop(ticket);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Stream, Option<SocketAddr>)> {
    Ok(match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            (Stream::Tcp(s), Some(peer))
        }
        Listener::Unix(l) => (Stream::Unix(l.accept().await?.0), None),
    })
}

async fn datagrams(name: Arc<str>, ctx: SourceContext, socket: DatagramSocket, peers: PeerFilter) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut batcher: LineBatcher = ctx.batcher(&name);
    let dropped = ctx
        .metrics
        .lines_dropped
        .with_label_values(&[&name, "queue_full"]);
    let not_allowed = ctx
        .metrics
        .lines_dropped
        .with_label_values(&[&name, "peer_not_allowed"]);
    let mut shutdown = ctx.shutdown.clone();
    // A datagram sender cannot be slowed down, and a batch per datagram
    // fills the queue while the matchers are busy. So a batch goes to the
    // matchers at once only while they are idle (nothing queued) or when it
    // is full; otherwise it is filled on, and offered when it has waited
    // `HOLD` (the latency a busy matcher adds anyway). A stall of the
    // matchers then grows batches instead of using up the queue a datagram
    // at a time; only a full batch the full queue still refuses is dropped
    // and counted.
    const HOLD: Duration = Duration::from_millis(1);
    let mut held_since: Option<tokio::time::Instant> = None;
    let hand_over =
        |batcher: &mut LineBatcher, held_since: &mut Option<tokio::time::Instant>, now: bool| {
            let due = held_since.is_some_and(|t| t.elapsed() >= HOLD);
            if !(now || due || batcher.is_full() || ctx.queue.is_idle()) {
                held_since.get_or_insert_with(tokio::time::Instant::now);
                return;
            }
            if let Some(batch) = batcher.take() {
                match ctx.queue.try_send(batch) {
                    Ok(()) => *held_since = None,
                    Err(batch) => {
                        batcher.put_back(batch);
                        // Offered again in `HOLD`, not at once: the queue
                        // is full, and a deadline passed would spin.
                        *held_since = Some(tokio::time::Instant::now());
                        if batcher.is_full() {
                            if let Some(lost) = batcher.take() {
                                dropped.inc_by(lost.lines.len() as u64);
                            }
                            *held_since = None;
                        }
                    }
                }
            }
        };
    loop {
        let offer_at = held_since.map(|t| t + HOLD);
        let (n, peer) = tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => break,
            // A held batch is offered when due, not only when the next
            // datagram comes.
            _ = tokio::time::sleep_until(offer_at.unwrap_or_else(tokio::time::Instant::now)), if offer_at.is_some() && batcher.holds_batch() => {
                hand_over(&mut batcher, &mut held_since, true);
                continue;
            }
            r = socket.recv(&mut buf) => match r {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "receive failed");
                    continue;
                }
            },
        };
        // Every datagram already waiting joins this batch: one batch per
        // datagram filled the queue with a few lines each and lost most of
        // a burst.
        let mut next = Some((n, peer));
        while let Some((n, peer)) = next.take() {
            if peers.allows(peer.map(|p| p.ip())) {
                if let Some(p) = peer {
                    batcher.set_peer(p);
                }
                let mut data = &buf[..n];
                if data.last() == Some(&b'\n') {
                    data = &data[..data.len() - 1];
                }
                for line in data.split(|&b| b == b'\n') {
                    batcher.push_line(line);
                }
            } else {
                let lines = buf[..n]
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
                not_allowed.inc_by(lines.max(1) as u64);
            }
            if !batcher.is_full() {
                next = socket.try_recv(&mut buf).ok();
            }
        }
        hand_over(&mut batcher, &mut held_since, false);
    }
    // At shutdown what is held goes out with waiting: the pipeline drains it.
    let _ = ctx.queue.flush(&mut batcher).await;
}
