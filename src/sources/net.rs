//! Socket sources: TCP and Unix streams (one input per connection, a
//! connection limit, framing per connection) and UDP and Unix datagrams
//! (one or more lines per datagram; they cannot push back, so what does not
//! fit in the queue is dropped and counted).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket, UnixDatagram, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use serde::Deserialize;

use super::{read_stream, shutdown_signalled, Framing, SourceContext};
use crate::pipeline::LineBatcher;
use crate::settings::{in_range, Invalid};

/// Most connections a stream source accepts at once.
pub const MAX_CONNECTIONS: usize = 1 << 20;

fn default_max_connections() -> usize {
    1024
}

/// `[sources.NAME] type = "tcp"`: newline-framed or RFC 6587 octet-counted.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    pub address: SocketAddr,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub framing: Framing,
}

/// `[sources.NAME] type = "udp"`: one or more lines per datagram.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UdpConfig {
    pub address: SocketAddr,
}

/// `[sources.NAME] type = "unix"`: a Unix socket, stream or datagram.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UnixConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub mode: UnixMode,
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub framing: Framing,
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
    /// A connection limit out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("max_connections", self.max_connections, 1, MAX_CONNECTIONS)
    }
}

impl UnixConfig {
    /// # Errors
    /// A connection limit out of range.
    pub fn validate(&self) -> Result<(), Invalid> {
        in_range("max_connections", self.max_connections, 1, MAX_CONNECTIONS)
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
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.recv(buf).await,
            DatagramSocket::Unix(s) => s.recv(buf).await,
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
    Ok(tokio::spawn(accept_loop(
        name,
        config.max_connections,
        config.framing,
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
    let UnixConfig {
        path,
        mode,
        max_connections,
        framing,
    } = config;
    remove_stale_socket(&path)?;
    match mode {
        UnixMode::Stream => {
            let listener = Listener::Unix(UnixListener::bind(&path)?);
            Ok(tokio::spawn(async move {
                accept_loop(name, max_connections, framing, ctx, listener).await;
                let _ = std::fs::remove_file(&path);
            }))
        }
        UnixMode::Datagram => {
            let socket = DatagramSocket::Unix(UnixDatagram::bind(&path)?);
            Ok(tokio::spawn(async move {
                datagrams(name, ctx, socket).await;
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
    let socket = DatagramSocket::Udp(UdpSocket::bind(config.address).await?);
    Ok(tokio::spawn(datagrams(name, ctx, socket)))
}

async fn accept_loop(
    name: Arc<str>,
    max_connections: usize,
    framing: Framing,
    ctx: SourceContext,
    listener: Listener,
) {
    let limit = Arc::new(Semaphore::new(max_connections));
    let open = ctx.metrics.connections_open.with_label_values(&[&name]);
    let rejected = ctx.metrics.connections_rejected.with_label_values(&[&name]);
    let mut shutdown = ctx.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = accept(&listener) => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            rejected.inc();
            tracing::warn!(source = %name, max_connections, "connection refused: at the connection limit");
            continue;
        };
        let (ctx, open, name) = (ctx.clone(), open.clone(), name.clone());
        open.inc();
        connections.spawn(async move {
            // Each connection is its own input: own line numbers, own framing,
            // so garbage or a cut line from one client touches nobody else.
            let mut shutdown = ctx.shutdown.clone();
            let batcher = ctx.batcher(&name);
            match stream {
                Stream::Tcp(s) => read_stream(s, batcher, framing, &ctx.queue, &mut shutdown).await,
                Stream::Unix(s) => {
                    read_stream(s, batcher, framing, &ctx.queue, &mut shutdown).await
                }
            }
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Stream> {
    Ok(match listener {
        Listener::Tcp(l) => Stream::Tcp(l.accept().await?.0),
        Listener::Unix(l) => Stream::Unix(l.accept().await?.0),
    })
}

async fn datagrams(name: Arc<str>, ctx: SourceContext, socket: DatagramSocket) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut batcher: LineBatcher = ctx.batcher(&name);
    let dropped = ctx
        .metrics
        .lines_dropped
        .with_label_values(&[&name, "queue_full"]);
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let n = tokio::select! {
            biased;
            _ = shutdown_signalled(&mut shutdown) => break,
            r = socket.recv(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "receive failed");
                    continue;
                }
            },
        };
        let mut data = &buf[..n];
        if data.last() == Some(&b'\n') {
            data = &data[..data.len() - 1];
        }
        for line in data.split(|&b| b == b'\n') {
            batcher.push_line(line);
        }
        if let Some(batch) = batcher.take() {
            if let Err(lines) = ctx.queue.try_send(batch) {
                // A datagram sender cannot be slowed down: count the loss.
                dropped.inc_by(lines as u64);
            }
        }
    }
}
