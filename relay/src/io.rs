//! A connection that is plain until STARTTLS and TLS after: our clients'
//! (server side) and our next hops' (client side).

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client's connection to us.
pub type ServerIo<S> = Io<S, tokio_rustls::server::TlsStream<S>>;
/// Our connection to a next hop.
pub type ClientIo = Io<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

pub enum Io<S, T> {
    Plain(S),
    Tls(Box<T>),
    /// Between the two, during the handshake.
    Upgrading,
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection in TLS handshake")
}

impl ClientIo {
    /// Whether the next hop closed the connection or spoke unasked, seen
    /// without reading or waiting (a peek at the socket): what it said, or
    /// why the connection is gone. Bytes waiting on a TLS connection may be
    /// TLS's own records (a session ticket), so there only the close counts.
    pub fn peer_gave_up(&self) -> Option<String> {
        let (tcp, tls) = match self {
            Io::Plain(s) => (s, false),
            Io::Tls(s) => (s.get_ref().0, true),
            Io::Upgrading => return Some("connection in TLS handshake".into()),
        };
        let mut buf = [0u8; 256];
        // SAFETY: recv into a buffer we own, on a socket we own; MSG_PEEK
        // leaves the bytes where they are, MSG_DONTWAIT never blocks.
        let n = unsafe {
            libc::recv(
                tcp.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => Some("connection closed".into()),
            n if n > 0 && !tls => {
                let said = String::from_utf8_lossy(&buf[..n as usize]);
                Some(said.lines().next().unwrap_or("").trim().to_owned())
            }
            n if n > 0 => None,
            _ => {
                let e = io::Error::last_os_error();
                (e.kind() != io::ErrorKind::WouldBlock).then(|| e.to_string())
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Io<S, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Upgrading => Poll::Ready(Err(gone())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin, T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Io<S, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Upgrading => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Upgrading => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Io::Upgrading => Poll::Ready(Err(gone())),
        }
    }
}
