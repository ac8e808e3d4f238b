//! Where the server's messages go: stderr in the foreground; syslog or a
//! file once daemonized.

use std::fs::File;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// A destination for log lines.
#[derive(Debug)]
pub enum Sink {
    /// Standard error, `ivshmem-server: warning: ...`.
    Stderr,
    /// The local syslog socket (facility daemon).
    Syslog(UnixDatagram),
    /// A file, appended to, with timestamps.
    File(File),
    /// Nowhere.
    Null,
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: Logger = Logger {
    sink: Mutex::new(Sink::Stderr),
};

const NAME: &str = "ivshmem-server";

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug | Level::Trace => "debug: ",
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        let word = level_word(record.level());
        match &mut *sink {
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr(), "{NAME}: {word}{}", record.args());
            }
            Sink::Syslog(sock) => {
                // RFC 3164 framing; facility daemon (3).
                let severity = match record.level() {
                    Level::Error => 3,
                    Level::Warn => 4,
                    Level::Info => 6,
                    Level::Debug | Level::Trace => 7,
                };
                let line = format!(
                    "<{}>{NAME}[{}]: {word}{}",
                    3 * 8 + severity,
                    std::process::id(),
                    record.args()
                );
                let _ = sock.send(line.as_bytes());
            }
            Sink::File(f) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let _ = writeln!(
                    f,
                    "{}.{:03} {NAME}[{}]: {word}{}",
                    now.as_secs(),
                    now.subsec_millis(),
                    std::process::id(),
                    record.args()
                );
            }
            Sink::Null => {}
        }
    }

    fn flush(&self) {}
}

/// Installs the logger, writing to stderr.
pub fn init(verbose: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// Sends further messages to `sink`.
pub fn set_sink(sink: Sink) {
    if let Ok(mut s) = LOGGER.sink.lock() {
        *s = sink;
    }
}

/// A connection to the local syslog daemon, if there is one.
pub fn syslog() -> Option<UnixDatagram> {
    let sock = UnixDatagram::unbound().ok()?;
    sock.connect("/dev/log").ok()?;
    Some(sock)
}
