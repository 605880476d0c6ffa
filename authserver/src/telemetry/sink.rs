//! Log lines are written by a thread of their own, never by the async workers.
//!
//! A log write is a `write(2)` to stderr, a pipe the container runtime drains. When that
//! pipe or the disk behind it stalls (a slow log shipper, writeback during a database
//! checkpoint), a writer on an async worker blocks the worker — and with one access-log
//! line per request every worker soon waits on the same pipe, so the whole process stops
//! answering for as long as the stall lasts. Here the formatting thread hands each line to
//! a bounded queue and returns at once; the writer thread blocks instead. When the queue
//! is full the line is dropped and counted (the count is written as a warning once the
//! writer catches up): losing log lines during an I/O stall is better than stopping
//! sign-ins and token requests. Audit events are in the database, not in this log.
//!
//! The writer works in batches: woken by a line, it lets more arrive for
//! [`GATHER`], then writes everything queued with one `write(2)`. Per line, a `write(2)`
//! and waking a parked thread cost more CPU than formatting the line (measured: see
//! README, Benchmarks); while it gathers, senders find no one to wake. A line waits at
//! most [`GATHER`] plus the write before it reaches the output.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds before new ones are dropped: a few MiB of JSON lines, seconds of
/// a busy server's logging.
pub const CAPACITY: usize = 16_384;

/// How long the writer lets lines accumulate after the first one wakes it.
const GATHER: Duration = Duration::from_millis(2);

/// The writer's buffer: a batch larger than this is written in several calls.
const BATCH_BYTES: usize = 64 * 1024;

/// What goes down the queue.
enum Message {
    Line(Vec<u8>),
    /// Write everything queued before, then acknowledge.
    Flush(SyncSender<()>),
}

/// The `MakeWriter` of the fmt layer: each event's line goes to the writer thread.
#[derive(Clone)]
pub struct Sink {
    tx: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Flushes the queue when dropped (at process exit), so nothing logged before is lost.
pub struct FlushOnDrop {
    sink: Sink,
}

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.sink.flush(Duration::from_secs(2));
    }
}

impl Sink {
    /// A sink writing to `out` from a new thread, queueing at most `capacity` lines.
    pub fn spawn(out: impl Write + Send + 'static, capacity: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || write_lines(&rx, out, &counter))?;
        Ok(Self { tx, dropped })
    }

    /// A guard that flushes this sink when dropped.
    pub fn flush_on_drop(&self) -> FlushOnDrop {
        FlushOnDrop { sink: self.clone() }
    }

    /// Waits (at most `timeout`) until every line queued so far is written.
    pub fn flush(&self, timeout: Duration) {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// Lines dropped because the queue was full, since start.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, line: Vec<u8>) {
        match self.tx.try_send(Message::Line(line)) {
            Ok(()) | Err(TrySendError::Disconnected(Message::Flush(_))) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The writer thread is gone (it cannot panic short of a bug): write here.
            Err(TrySendError::Disconnected(Message::Line(line))) => {
                let _ = std::io::stderr().write_all(&line);
            }
        }
    }
}

fn write_lines(rx: &Receiver<Message>, out: impl Write, dropped: &AtomicU64) {
    let mut out = std::io::BufWriter::with_capacity(BATCH_BYTES, out);
    let mut reported = 0;
    // Blocks only while the queue is empty: then the next line wakes this thread.
    while let Ok(first) = rx.recv() {
        let mut acks = Vec::new();
        if !matches!(first, Message::Flush(_)) {
            #[expect(
                clippy::disallowed_methods,
                reason = "this thread only writes logs; no async task runs on it"
            )]
            std::thread::sleep(GATHER);
        }
        for message in std::iter::once(first).chain(rx.try_iter()) {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(ack) => acks.push(ack),
            }
        }
        let _ = out.flush();
        // After the flush: lines dropped while it was blocked are counted in this report.
        let now = dropped.load(Ordering::Relaxed);
        if now > reported {
            let _ = writeln!(
                out,
                r#"{{"level":"WARN","message":"log lines dropped: the log output was blocked and the queue full","dropped":{}}}"#,
                now - reported
            );
            let _ = out.flush();
            reported = now;
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// One event's line, handed to the queue when the fmt layer is done with it.
pub struct LineWriter {
    buf: Vec<u8>,
    sink: Sink,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.sink.send(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            // An access-log line is 250–300 bytes: one allocation, no regrowth.
            buf: Vec::with_capacity(512),
            sink: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    /// An output that blocks every write until released, like a stalled pipe.
    #[derive(Clone)]
    struct Stalled {
        gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(sink: &Sink, line: &str) {
        let mut w = sink.make_writer();
        w.write_all(line.as_bytes()).unwrap();
    }

    #[test]
    fn a_stalled_output_never_blocks_the_logger_and_drops_are_counted_then_reported() {
        let out = Stalled {
            gate: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            written: Arc::default(),
        };
        let sink = Sink::spawn(out.clone(), 4).unwrap();
        let started = Instant::now();
        for i in 0..100 {
            log(&sink, &format!("line {i}\n"));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "logging waited for the stalled output"
        );
        // One line is with the blocked writer, four are queued, the rest dropped.
        assert!(sink.dropped() >= 90, "dropped {}", sink.dropped());

        *out.gate.0.lock().unwrap() = true;
        out.gate.1.notify_all();
        sink.flush(Duration::from_secs(5));
        let written = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        assert!(written.starts_with("line 0\n"), "{written}");
        let kept: Vec<u32> = written
            .lines()
            .filter_map(|l| l.strip_prefix("line "))
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order: {kept:?}");
        assert!(
            written.contains(&format!("\"dropped\":{}", sink.dropped())),
            "the drop is reported once the writer catches up: {written}"
        );
    }

    #[derive(Clone)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flush_writes_everything_logged_before() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::spawn(Shared(Arc::clone(&written)), CAPACITY).unwrap();
        for i in 0..1000 {
            log(&sink, &format!("{i}\n"));
        }
        drop(sink.flush_on_drop());
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1000);
        assert_eq!(sink.dropped(), 0);
    }
}
