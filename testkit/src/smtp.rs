//! A small SMTP server for tests ("sink"): speaks enough RFC 5321 for a real client —
//! `EHLO`/`HELO`, `AUTH PLAIN` (advertised when credentials are required), `MAIL FROM`,
//! `RCPT TO`, `DATA` (with dot-unstuffing), `RSET`, `NOOP`, `QUIT` — and records every
//! accepted message. No TLS: the server under test is configured with
//! `smtp_security: plain`, as for a relay on the same host.
//!
//! Like a real server it refuses what it must: commands out of order (503), mail before
//! authentication when credentials are required (530), wrong credentials (535).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as sent (headers and body, CRLF line ends, dot-unstuffed).
    pub data: String,
    /// The user that authenticated, if any.
    pub user: Option<String>,
}

impl Received {
    /// The message with quoted-printable soft line breaks and `=3D` undone: enough to
    /// find a link in a text part, whatever transfer encoding the client chose.
    pub fn decoded(&self) -> String {
        self.data.replace("=\r\n", "").replace("=3D", "=")
    }

    /// The first `http(s)://…` URL in the decoded message that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let text = self.decoded();
        let start = text.find(prefix)?;
        let rest = &text[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
            .unwrap_or(rest.len());
        Some(rest[..end].replace("&amp;", "&"))
    }

    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Vec<Received>,
    connections: u32,
}

/// A running sink on a loopback port; stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    /// A sink on `port` (0: any free port) accepting every sender without
    /// authentication.
    pub async fn start(port: u16) -> Self {
        Self::start_with(port, None).await
    }

    /// A sink that requires `AUTH PLAIN` with `credentials` (user, password) before
    /// `MAIL FROM`.
    pub async fn start_with(port: u16, credentials: Option<(&str, &str)>) -> Self {
        let listener = crate::wait_until(
            &format!("127.0.0.1:{port} to be free for the SMTP sink"),
            Duration::from_secs(10),
            || async move { TcpListener::bind(("127.0.0.1", port)).await.ok() },
        )
        .await;
        let port = listener.local_addr().expect("bound").port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let creds = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let task = {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    shared.lock().expect("sink state").connections += 1;
                    let (shared, creds) = (Arc::clone(&shared), creds.clone());
                    tokio::spawn(async move {
                        let _ = session(stream, &shared, creds.as_ref()).await;
                    });
                }
            })
        };
        Self { port, shared, task }
    }

    /// Every message accepted so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("sink state").received.clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.shared.lock().expect("sink state").connections
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        crate::wait_until(
            &format!("{n} message(s) at the SMTP sink"),
            Duration::from_secs(20),
            || async move {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// One SMTP conversation.
// One loop over the commands, as the RFC lists them: reads best in one place.
#[allow(clippy::too_many_lines)]
async fn session(
    stream: TcpStream,
    shared: &Mutex<Shared>,
    creds: Option<&(String, String)>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut greeted = false;
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            greeted = true;
            if creds.is_some() {
                "250-sink.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n".into()
            } else {
                "250-sink.test\r\n250 8BITMIME\r\n".into()
            }
        } else if upper.starts_with("HELO") {
            greeted = true;
            "250 sink.test\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let arg = cmd.get(10..).map_or("", str::trim);
            let arg = if arg.is_empty() {
                write.write_all(b"334 \r\n").await?;
                let mut more = String::new();
                lines.read_line(&mut more).await?;
                more.trim().to_owned()
            } else {
                arg.to_owned()
            };
            match (plain(&arg), creds) {
                (Some((u, p)), Some((cu, cp))) if u == *cu && p == *cp => {
                    user = Some(u);
                    "235 2.7.0 authenticated\r\n".into()
                }
                _ => "535 5.7.8 authentication failed\r\n".into(),
            }
        } else if upper.starts_with("MAIL FROM:") {
            if !greeted {
                "503 5.5.1 EHLO first\r\n".into()
            } else if creds.is_some() && user.is_none() {
                "530 5.7.0 authentication required\r\n".into()
            } else {
                from = Some(address(&cmd[10..]));
                to.clear();
                "250 2.1.0 ok\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            if from.is_none() {
                "503 5.5.1 MAIL first\r\n".into()
            } else {
                to.push(address(&cmd[8..]));
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper == "DATA" {
            if from.is_none() || to.is_empty() {
                "503 5.5.1 RCPT first\r\n".into()
            } else {
                write
                    .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if lines.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 §4.5.2).
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                shared.lock().expect("sink state").received.push(Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                    user: user.clone(),
                });
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "RSET" {
            from = None;
            to.clear();
            "250 2.0.0 ok\r\n".into()
        } else if upper == "NOOP" {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 command not implemented\r\n".into()
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// `<a@b>` (and any parameters after it) → `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_owned(),
        _ => arg.split_whitespace().next().unwrap_or("").to_owned(),
    }
}

/// `AUTH PLAIN`'s base64 of `authzid NUL user NUL password`.
fn plain(arg: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(arg).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let _authzid = parts.next()?;
    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    async fn say(s: &mut TcpStream, line: &str) -> String {
        s.write_all(line.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn records_a_message_and_refuses_what_a_real_server_refuses() {
        let sink = SmtpSink::start_with(0, Some(("u", "p"))).await;
        let mut s = TcpStream::connect(("127.0.0.1", sink.port)).await.unwrap();
        let mut buf = vec![0u8; 128];
        let _ = s.read(&mut buf).await.unwrap();
        assert!(say(&mut s, "MAIL FROM:<a@x>\r\n").await.starts_with("503"));
        assert!(say(&mut s, "EHLO me\r\n").await.contains("AUTH PLAIN"));
        assert!(say(&mut s, "MAIL FROM:<a@x>\r\n").await.starts_with("530"));
        let bad = base64::engine::general_purpose::STANDARD.encode("\0u\0q");
        assert!(
            say(&mut s, &format!("AUTH PLAIN {bad}\r\n"))
                .await
                .starts_with("535")
        );
        let good = base64::engine::general_purpose::STANDARD.encode("\0u\0p");
        assert!(
            say(&mut s, &format!("AUTH PLAIN {good}\r\n"))
                .await
                .starts_with("235")
        );
        assert!(
            say(&mut s, "MAIL FROM:<a@x> SIZE=10\r\n")
                .await
                .starts_with("250")
        );
        assert!(say(&mut s, "RCPT TO:<b@y>\r\n").await.starts_with("250"));
        assert!(say(&mut s, "DATA\r\n").await.starts_with("354"));
        let r = say(
            &mut s,
            "Subject: hi\r\n\r\nsee https://x/t?token=3Dab=\r\ncd\r\n..dot\r\n.\r\n",
        )
        .await;
        assert!(r.starts_with("250"), "{r}");
        assert!(say(&mut s, "QUIT\r\n").await.starts_with("221"));
        let got = sink.wait_for(1).await;
        assert_eq!(got[0].from, "a@x");
        assert_eq!(got[0].to, ["b@y"]);
        assert_eq!(got[0].user.as_deref(), Some("u"));
        assert_eq!(got[0].header("subject").as_deref(), Some("hi"));
        assert!(got[0].data.ends_with(".dot\r\n"), "{:?}", got[0].data);
        assert_eq!(
            got[0].link("https://x/").as_deref(),
            Some("https://x/t?token=abcd")
        );
    }
}
