//! Socket writes gathered per wakeup of a connection's task.
//!
//! HTTP/2 sends a response as DATA frames of at most the peer's frame size (16 KB for
//! Envoy and gRPC), and h2 writes and flushes each large frame on its own: a full push of
//! 1.6 MB to 2,000 proxies was 180,000 `writev` calls, and the control plane spent more CPU
//! in the kernel for them (loopback delivery, per call) than on everything else. Here what
//! HTTP/2 writes during one poll of the connection is gathered and written once the poll
//! returns, as Envoy writes once per event-loop iteration: the frames a wakeup produces
//! leave in one call, and nothing waits longer than the poll that wrote it.
//!
//! [`Gathered`] is the connection's I/O (reads go straight to the socket; writes and
//! flushes only gather), and [`write_after_poll`] drives the connection and writes what
//! each poll gathered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Gathered bytes beyond which a write waits for the socket (bounds memory per connection).
const GATHER_MAX: usize = 256 << 10;
/// Emptied buffers kept for reuse, process-wide. A connection holds a buffer only while
/// it has bytes the socket did not take; the rest go back here, so 2,000 connections
/// neither keep a buffer each nor fault fresh pages in for every push.
const POOL_MAX: usize = 8;
/// A buffer bigger than this is freed rather than pooled.
const POOLED_CAPACITY_MAX: usize = 2 * GATHER_MAX;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn pooled() -> Vec<u8> {
    POOL.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .pop()
        .unwrap_or_default()
}

fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > POOLED_CAPACITY_MAX {
        return;
    }
    buf.clear();
    let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if pool.len() < POOL_MAX {
        pool.push(buf);
    }
}

struct Outgoing {
    half: OwnedWriteHalf,
    buf: Vec<u8>,
    /// How much of `buf` the socket took.
    sent: usize,
    /// A failed write: later writes fail with it, so HTTP/2 ends the connection.
    failed: Option<io::ErrorKind>,
}

impl Outgoing {
    /// Writes what is gathered; `Pending` (with the task registered) while the socket is full.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.half).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        give_back(std::mem::take(&mut self.buf));
        Poll::Ready(Ok(()))
    }
}

/// A connection's socket as HTTP/2 sees it.
pub(crate) struct Gathered {
    read: OwnedReadHalf,
    out: Arc<Mutex<Outgoing>>,
}

/// What [`write_after_poll`] needs to write a connection's gathered bytes.
pub(crate) struct Writer {
    out: Arc<Mutex<Outgoing>>,
}

/// Splits `stream` into the connection's I/O and its writer.
pub(crate) fn gathered(stream: TcpStream) -> (Gathered, Writer) {
    let (read, half) = stream.into_split();
    let out = Arc::new(Mutex::new(Outgoing {
        half,
        buf: Vec::new(),
        sent: 0,
        failed: None,
    }));
    (
        Gathered {
            read,
            out: out.clone(),
        },
        Writer { out },
    )
}

impl Gathered {
    fn out(&self) -> std::sync::MutexGuard<'_, Outgoing> {
        // Only this connection's task takes the lock, so it is never contended.
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AsyncRead for Gathered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Gathered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut out = self.out();
        if let Some(kind) = out.failed {
            return Poll::Ready(Err(kind.into()));
        }
        if out.buf.len() - out.sent >= GATHER_MAX {
            ready!(out.poll_write_out(cx))?;
        }
        if out.buf.capacity() == 0 {
            out.buf = pooled();
        }
        let mut n = 0;
        for b in bufs {
            out.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Gathered bytes go out when the poll that wrote them ends ([`write_after_poll`]).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.out();
        ready!(out.poll_write_out(cx))?;
        Pin::new(&mut out.half).poll_shutdown(cx)
    }
}

/// Runs `conn` (the HTTP/2 connection over [`Gathered`]), writing what each poll of it
/// gathered before yielding; when `conn` ends, writes what is left first.
pub(crate) async fn write_after_poll<F: Future>(conn: F, writer: Writer) -> F::Output {
    let mut conn = std::pin::pin!(conn);
    let mut done = None;
    std::future::poll_fn(|cx| {
        if done.is_none() {
            if let Poll::Ready(v) = conn.as_mut().poll(cx) {
                done = Some(v);
            }
        }
        let mut out = writer.out.lock().unwrap_or_else(PoisonError::into_inner);
        match out.poll_write_out(cx) {
            // The socket is full: the connection is polled again when it drains.
            Poll::Pending => return Poll::Pending,
            // HTTP/2 sees the error on its next write; the socket's reads fail too.
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "xDS write failed");
                out.failed = Some(e.kind());
                out.buf = Vec::new();
                out.sent = 0;
            }
            Poll::Ready(Ok(())) => {}
        }
        drop(out);
        match done.take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn what_a_poll_writes_leaves_when_it_ends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let mut got = vec![0u8; 5];
            c.read_exact(&mut got).await.expect("first");
            c.write_all(b"go").await.expect("answer");
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).await.expect("rest");
            (got, rest)
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let (mut io, writer) = gathered(stream);
        let conn = async move {
            io.write_all(b"hel").await?;
            io.flush().await?;
            io.write_all(b"lo").await?;
            // The peer only answers once both writes arrived: they must have left while
            // this task waits to read.
            let mut answer = [0u8; 2];
            io.read_exact(&mut answer).await?;
            io.write_all(&vec![7u8; 3 * GATHER_MAX]).await?;
            io.shutdown().await?;
            Ok::<_, io::Error>(answer)
        };
        // Gathered bytes that never left would hang both sides: fail instead.
        let within = std::time::Duration::from_secs(10);
        let answer = tokio::time::timeout(within, write_after_poll(conn, writer))
            .await
            .expect("the gathered writes left the process")
            .expect("conn");
        assert_eq!(&answer, b"go");
        let (got, rest) = tokio::time::timeout(within, client)
            .await
            .expect("the client got everything")
            .expect("client");
        assert_eq!(got, b"hello");
        assert_eq!(rest.len(), 3 * GATHER_MAX);
    }
}
