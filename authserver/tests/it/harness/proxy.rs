//! A TCP proxy in front of PostgreSQL that a test can cut and restore: a database outage
//! for the processes behind it, while the shared server and every other test carry on.
//!
//! - [`Proxy::cut`] models PostgreSQL going down (a crash, a failover, a restart): every
//!   open connection is closed and new ones are refused (`ECONNREFUSED`: nothing listens
//!   on the port any more).
//! - [`Proxy::stall`] models a network partition: open connections stop carrying bytes
//!   in either direction, and new connections are accepted but never answered.
//! - [`Proxy::restore`] forwards again: new connections reach PostgreSQL; connections
//!   held during a stall carry on where they stopped.
//!
//! Not modelled: latency, partial loss, TLS, or a server that answers with errors.
//! `proxy_behaves_as_documented` checks the three modes against a real PostgreSQL.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Cut,
    Stall,
}

/// A running proxy; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
    /// The mode the accept loop has put into effect (the listener closed or open).
    applied: watch::Receiver<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to the host and port of
    /// `database_url`.
    pub async fn start(database_url: &str) -> Self {
        let url = url::Url::parse(database_url).expect("database URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("database host"),
            url.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let (mode, rx) = watch::channel(Mode::Forward);
        let (applied_tx, applied) = watch::channel(Mode::Forward);
        let task = tokio::spawn(accept_loop(listener, port, upstream, rx, applied_tx));
        Self {
            port,
            mode,
            applied,
            task,
        }
    }

    /// `database_url` with its host and port replaced by the proxy's.
    pub fn url(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).expect("database URL");
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// PostgreSQL is down: open connections close, new ones are refused.
    pub async fn cut(&mut self) {
        self.set(Mode::Cut).await;
    }

    /// A partition: nothing moves, new connections hang.
    pub async fn stall(&mut self) {
        self.set(Mode::Stall).await;
    }

    /// Forwarding again.
    pub async fn restore(&mut self) {
        self.set(Mode::Forward).await;
    }

    /// Switches modes and returns once the listener follows (closed for `Cut`).
    async fn set(&mut self, mode: Mode) {
        self.mode.send_replace(mode);
        tokio::time::timeout(
            Duration::from_secs(10),
            self.applied.wait_for(|m| *m == mode),
        )
        .await
        .expect("the proxy applies a mode change in time")
        .expect("the proxy is running");
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: u16,
    upstream: String,
    mut mode: watch::Receiver<Mode>,
    applied: watch::Sender<Mode>,
) {
    let mut listener = Some(listener);
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Cut {
            // Closing the listening socket is what makes new connections fail with
            // ECONNREFUSED, as with a server that is not running.
            listener = None;
        } else if listener.is_none() {
            listener = Some(rebind(port).await);
        }
        applied.send_replace(current);
        match &listener {
            None => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Some(l) => {
                tokio::select! {
                    accepted = l.accept() => {
                        if let Ok((client, _)) = accepted {
                            tokio::spawn(connection(client, upstream.clone(), mode.clone()));
                        }
                    }
                    changed = mode.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Listens on `port` again after a cut (briefly retried: the old socket may linger).
async fn rebind(port: u16) -> TcpListener {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(addr).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot listen on proxy port {port} again");
}

/// One client connection: held while stalled, dropped when cut, otherwise forwarded.
async fn connection(client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    let Ok(m) = mode.wait_for(|m| *m != Mode::Stall).await.map(|m| *m) else {
        return;
    };
    if m == Mode::Cut {
        return;
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    pump(client, server, mode).await;
}

/// Copies bytes both ways until either side closes or the proxy is cut; holds them while
/// stalled. Uses readiness + `try_read`/`try_write` (tokio's `net` feature) rather than
/// the `io-util` copy helpers, which the crate does not otherwise need.
async fn pump(client: TcpStream, server: TcpStream, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Cut => return,
            Mode::Stall => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Forward => {}
        }
        let (from, to) = tokio::select! {
            r = client.readable() => { if r.is_err() { return; } (&client, &server) }
            r = server.readable() => { if r.is_err() { return; } (&server, &client) }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if write_all(to, &buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

async fn write_all(to: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;

    use super::*;
    use testkit::postgres::admin_url;

    async fn query(url: &str) -> Result<i32, sqlx::Error> {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut c)
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proxy_behaves_as_documented() {
        let admin = admin_url().unwrap_or_else(|e| panic!("{e}"));
        let mut proxy = Proxy::start(&admin).await;
        let url = proxy.url(&admin);
        assert_eq!(query(&url).await.unwrap(), 1);

        // Cut: an open connection fails, a new one is refused.
        let mut open = sqlx::PgConnection::connect(&url).await.unwrap();
        proxy.cut().await;
        let in_flight = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut open),
        )
        .await
        .expect("a cut connection fails at once");
        assert!(in_flight.is_err());
        let refused = TcpStream::connect(("127.0.0.1", proxy.port)).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(ErrorKind::ConnectionRefused)
        );

        // Restore: new connections work again.
        proxy.restore().await;
        assert_eq!(query(&url).await.unwrap(), 1);

        // Stall: an open connection hangs, a new one is accepted but never answered;
        // both carry on after a restore.
        let mut held = sqlx::PgConnection::connect(&url).await.unwrap();
        proxy.stall().await;
        let hang = Duration::from_millis(300);
        let mut waiting = tokio::spawn(async move {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut held)
                .await
        });
        let mut connecting = tokio::spawn({
            let url = url.clone();
            async move { query(&url).await }
        });
        assert!(tokio::time::timeout(hang, &mut waiting).await.is_err());
        assert!(tokio::time::timeout(hang, &mut connecting).await.is_err());
        proxy.restore().await;
        assert_eq!(waiting.await.unwrap().unwrap(), 1);
        assert_eq!(connecting.await.unwrap().unwrap(), 1);
    }
}
