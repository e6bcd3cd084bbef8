//! Where log lines go: stderr, through a bounded queue and one writer thread.
//!
//! A stderr that nobody reads (a script holding `stderr=PIPE` it never reads, a paused pager, a
//! terminal after Ctrl-S, a stalled log collector) blocks every write to it once its buffer is
//! full. Written directly, that stalls each thread that logs, connection threads and the signal
//! thread among them. Here a thread that logs only hands the finished line to the queue; when the
//! queue is full the line is dropped and counted, and the writer says how many were lost once
//! stderr takes lines again. env_logger keeps the filtering (`RUST_LOG`) and the format; it can
//! write to any `Write`, and a few lines of our own are simpler than a logging framework's
//! non-blocking appender.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use env_logger::WriteStyle;
use log::LevelFilter;

use crate::cli::LogFormat;
use crate::numbers::thousands;
use format::Style;

mod format;

/// Lines waiting for stderr: a burst's worth, a few hundred KiB at most.
const QUEUE_LINES: usize = 4096;

enum Item {
    Line(Vec<u8>),
    /// Answered once every line queued before it was written.
    Flush(mpsc::Sender<()>),
}

/// The queue's sending end; env_logger holds one behind its own lock.
struct QueueWriter {
    line: Vec<u8>,
    /// Made with the writer thread: a run that logs nothing (a client in a shell pipe) starts
    /// no thread and never touches the queue's 128 KiB: `printf hello | tcpdemo client` took
    /// 43 page faults and 0.16 ms fewer so (283 in all; `nc -N` 213).
    queue: Option<SyncSender<Item>>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Lines in the queue.
    queued: AtomicUsize,
    /// Lines dropped since the last report of them.
    dropped: AtomicU64,
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// env_logger writes each record whole and then flushes: one flush, one line.
    fn flush(&mut self) -> io::Result<()> {
        let line = std::mem::take(&mut self.line);
        let Ok(queue) = start(&mut self.queue, &self.counts) else {
            // Out of threads: the line is lost, as when the queue is full.
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        // Counted before it is sent, so the writer never sees more taken out than put in.
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        if queue.try_send(Item::Line(line)).is_err() {
            self.counts.queued.fetch_sub(1, Ordering::Relaxed);
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The queue, and its writer thread, started unless it runs already.
fn start<'a>(
    slot: &'a mut Option<SyncSender<Item>>,
    counts: &Arc<Counts>,
) -> io::Result<&'a SyncSender<Item>> {
    let queue = match slot.take() {
        Some(queue) => queue,
        None => {
            let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
            let counts = Arc::clone(counts);
            thread::Builder::new()
                .name("log".into())
                .spawn(move || write_lines(&lines, &counts))?;
            let _ = FLUSH.set(queue.clone());
            queue
        }
    };
    Ok(slot.insert(queue))
}

/// The only sender that outlives `init`, for `flush`; set once the writer thread runs.
static FLUSH: std::sync::OnceLock<SyncSender<Item>> = std::sync::OnceLock::new();

/// When the writer thread starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Now: a server must be able to log when it is out of threads.
    Now,
    /// With the first line: a short run that logs nothing starts no thread.
    OnFirstLine,
}

/// Installs the logger at `level` (`RUST_LOG` overrides it), writing lines as `format` says,
/// from a writer thread started when `writer` says.
pub fn init(level: LevelFilter, format: LogFormat, writer: Writer) -> Result<()> {
    let mut writer_side = QueueWriter {
        line: Vec::with_capacity(256),
        queue: None,
        counts: Arc::new(Counts::default()),
    };
    if writer == Writer::Now {
        start(&mut writer_side.queue, &writer_side.counts)
            .context("cannot start the log thread")?;
    }
    // env_logger decides colours from its target; ours is a pipe to it, so decide here.
    let style = if io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        WriteStyle::Always
    } else {
        WriteStyle::Never
    };
    let style_of_lines = Style::new(format);
    env_logger::Builder::new()
        .filter_level(level)
        .format(move |buf, record| format::write(buf, record, style_of_lines))
        .parse_default_env()
        .write_style(style)
        .target(env_logger::Target::Pipe(Box::new(writer_side)))
        .try_init()
        .context("cannot install the logger")
}

/// Waits up to `timeout` for the lines logged so far to reach stderr. A stderr that is not
/// being read makes this return at the deadline, not hang.
pub fn flush(timeout: Duration) {
    let Some(queue) = FLUSH.get() else { return };
    let deadline = Instant::now() + timeout;
    let (done, written) = mpsc::channel();
    let mut item = Item::Flush(done);
    loop {
        match queue.try_send(item) {
            Ok(()) => break,
            Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                item = back;
                thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

fn write_lines(lines: &Receiver<Item>, counts: &Counts) {
    let mut stderr = io::stderr();
    for item in lines {
        match item {
            // Nothing to do about a failing stderr: the line is lost either way.
            Item::Line(line) => {
                counts.queued.fetch_sub(1, Ordering::Relaxed);
                let _ = stderr.write_all(&line);
            }
            Item::Flush(done) => {
                let _ = done.send(());
            }
        }
        // Once stderr takes lines again, say what was lost meanwhile. Logged like any line, so
        // it is formatted as one, and queued behind what was already waiting, once there is room
        // for it: sent into a full queue, the report itself would be lost.
        if counts.queued.load(Ordering::Relaxed) > QUEUE_LINES / 2 {
            continue;
        }
        let lost = counts.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            log::warn!(
                "{} log line{} dropped: stderr was not being read",
                thousands(lost),
                if lost == 1 { "" } else { "s" }
            );
        }
    }
}
