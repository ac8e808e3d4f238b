//! `ivshmem`: look at and poke ivshmem devices from a guest's shell.
//!
//! Errors go to stderr as `ivshmem: DEVICE: message`; the exit status is 0
//! on success, 1 on failure, 2 on a usage error and 124 when `wait` timed
//! out (see `ivshmem --help`).

use clap::Parser;
use ivshmem::{CacheMode, Device, Event, Info, Mapping, uapi};
use ivshmem_cli::cli::{Cache, Cli, Command, EXIT_FAILURE, EXIT_TIMEOUT, node_path};
use ivshmem_cli::hexdump::HexDump;
use ivshmem_cli::sysfs::{self, CacheState};
use serde_json::json;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// A failure, printed as `ivshmem: {0}`.
#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// The system's message for an error, without Rust's ` (os error N)`:
/// `No such file or directory`, as `strerror` says it.
fn strerror(e: &io::Error) -> String {
    match ivshmem::errno(e) {
        Some(n) => {
            let s = io::Error::from_raw_os_error(n).to_string();
            match s.find(" (os error ") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

/// `PATH: message`, or `PATH: what: message`.
fn os_error(path: &Path, what: Option<fmt::Arguments<'_>>, e: &io::Error) -> Error {
    match what {
        Some(w) => Error(format!("{}: {w}: {}", path.display(), strerror(e))),
        None => Error(format!("{}: {}", path.display(), strerror(e))),
    }
}

fn main() -> ExitCode {
    // Die quietly of SIGPIPE, as a filter should (`ivshmem dump ... | head`).
    // SAFETY: Restores SIGPIPE's default action before any thread starts (first
    // thing in `main`); no handler of ours is installed or replaced.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ivshmem: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List { json } => list(json)?,
        Command::Info { dev, json } => info(&node_path(&dev), json)?,
        Command::Dump {
            dev,
            offset,
            len,
            no_squeeze,
            raw,
            cache,
        } => dump(&node_path(&dev), offset, len, !no_squeeze, raw, cache)?,
        Command::Write {
            dev,
            offset,
            data,
            cache,
        } => write(&node_path(&dev), offset, &data, cache)?,
        Command::Ring { dev, peer, vector } => {
            let path = node_path(&dev);
            open(&path)?.ring(peer, vector).map_err(|e| {
                os_error(
                    &path,
                    Some(format_args!("cannot ring peer {peer} on vector {vector}")),
                    &e,
                )
            })?;
        }
        Command::Wait {
            dev,
            vector,
            timeout,
            json,
        } => return wait(&node_path(&dev), &vector, timeout, json),
    }
    Ok(ExitCode::SUCCESS)
}

fn open(path: &Path) -> Result<Device> {
    Device::open_path(path).map_err(|e| os_error(path, None, &e))
}

/// Opens read-only, for what needs no more (INFO, the vector mask,
/// waiting): a node readable but not writable is enough.
fn open_read_only(path: &Path) -> Result<Device> {
    Device::open_path_read_only(path).map_err(|e| os_error(path, None, &e))
}

fn read_info(dev: &Device) -> Result<Info> {
    dev.info().map_err(|e| os_error(dev.path(), None, &e))
}

fn stdout_error(e: io::Error) -> Error {
    Error(format!("write error: {}", strerror(&e)))
}

fn pci_address(info: &Info) -> String {
    let (domain, bus, slot, func) = info.pci;
    format!("{domain:04x}:{bus:02x}:{slot:02x}.{func:x}")
}

/// A size in bytes, and in the largest binary unit that divides it.
fn human_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{n} ({} {unit})", n >> shift);
        }
    }
    n.to_string()
}

fn list(as_json: bool) -> Result<()> {
    let devs = sysfs::list().map_err(|e| Error(e.to_string()))?;
    let mut out = io::stdout().lock();
    if as_json {
        let v: Vec<_> = devs
            .iter()
            .map(|d| {
                json!({
                    "device": d.node,
                    "index": d.index,
                    "pci": d.pci,
                    "size": d.size,
                    "ivposition": d.ivposition,
                    "vectors": d.vectors,
                    "features": d.features,
                    "cache": d.cache.json(),
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(v)).map_err(stdout_error)?;
        return Ok(());
    }
    if devs.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 7]> = std::iter::once(
        [
            "DEVICE",
            "PCI",
            "SIZE",
            "IVPOSITION",
            "VECTORS",
            "CACHE",
            "FEATURES",
        ]
        .map(String::from),
    )
    .chain(devs.iter().map(|d| {
        [
            d.node.display().to_string(),
            d.pci.clone(),
            d.size.to_string(),
            d.ivposition.map_or("-".into(), |p| p.to_string()),
            d.vectors.to_string(),
            d.cache.short().to_string(),
            d.features.clone(),
        ]
    }))
    .collect();
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    Ok(())
}

fn info(path: &Path, as_json: bool) -> Result<()> {
    let dev = open_read_only(path)?;
    let info = read_info(&dev)?;
    let pci = pci_address(&info);
    let cache = sysfs::cache_state(&pci);
    let ready = info.raw.flags & uapi::IVSHMEM_INFO_NOT_READY == 0;
    let (sv, sd) = info.subsystem;
    let mut out = io::stdout().lock();
    let text = if as_json {
        json!({
            "device": path,
            "index": info.index,
            "pci": pci,
            "size": info.size,
            "ivposition": info.ivposition,
            "ready": ready,
            "vectors": info.vectors,
            "features": info.feature_names(),
            "revision": info.revision,
            "subsystem_vendor": sv,
            "subsystem_device": sd,
            "cache": cache.json(),
        })
        .to_string()
    } else {
        let ivposition = match info.ivposition {
            Some(p) => p.to_string(),
            None => format!("{} (not ready)", info.raw.ivposition),
        };
        let cache = match &cache {
            CacheState::Mapped(t) => t.clone(),
            CacheState::Unmapped => "none (no memtype held; the next mapping reserves one)".into(),
            CacheState::Unknown => "? (needs root and debugfs)".into(),
        };
        [
            ("device", path.display().to_string()),
            ("index", info.index.to_string()),
            ("pci", pci),
            ("size", human_size(info.size)),
            ("ivposition", ivposition),
            ("vectors", info.vectors.to_string()),
            ("features", info.feature_names()),
            ("revision", info.revision.to_string()),
            ("subsystem", format!("{sv:04x}:{sd:04x}")),
            ("cache", cache),
        ]
        .iter()
        .map(|(k, v)| format!("{:12}{v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
    };
    writeln!(out, "{text}").map_err(stdout_error)
}

/// Checks that `len` bytes at `offset` lie within a device of `size`
/// bytes, without overflowing.
fn check_range(path: &Path, offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error(format!(
            "{}: {len} bytes at offset {offset:#x} do not fit in the device's {size} bytes",
            path.display()
        ))),
    }
}

/// Maps the pages holding `len` bytes at `offset` (within the device).
/// Returns the mapping and where `offset` is in it.
fn map_range(dev: &Device, offset: u64, len: u64, cache: Cache) -> Result<(Mapping, usize)> {
    let page = rustix::param::page_size() as u64;
    let start = offset - offset % page;
    let delta = offset - start;
    let too_big = || {
        Error(format!(
            "{}: {len} bytes do not fit in this process's address space",
            dev.path().display()
        ))
    };
    let map_len = usize::try_from(delta + len).map_err(|_| too_big())?;
    let modes: &[CacheMode] = match cache {
        // The first that does not clash with the device's mappings.
        Cache::Auto => &[
            CacheMode::WriteBack,
            CacheMode::WriteCombining,
            CacheMode::Uncached,
        ],
        Cache::Wb => &[CacheMode::WriteBack],
        Cache::Wc => &[CacheMode::WriteCombining],
        Cache::Uc => &[CacheMode::Uncached],
    };
    let mut last = None;
    for &mode in modes {
        match dev.map(start, map_len, mode) {
            Ok(m) => return Ok((m, delta as usize)),
            Err(e) if ivshmem::errno(&e) == Some(libc::EBUSY) => last = Some(e),
            Err(e) => {
                return Err(os_error(
                    dev.path(),
                    Some(format_args!("cannot map {len} bytes at {offset:#x}")),
                    &e,
                ));
            }
        }
    }
    let e = last.expect("at least one mode was tried");
    Err(os_error(
        dev.path(),
        Some(format_args!(
            "cannot map {len} bytes at {offset:#x} with cache mode {cache:?} (the device is mapped with another)"
        )),
        &e,
    ))
}

fn dump(path: &Path, offset: u64, len: u64, squeeze: bool, raw: bool, cache: Cache) -> Result<()> {
    let dev = open(path)?;
    let size = read_info(&dev)?.size;
    check_range(path, offset, len, size)?;
    if len == 0 {
        return Ok(());
    }
    let (map, at) = map_range(&dev, offset, len, cache)?;
    let out = io::BufWriter::new(io::stdout().lock());
    enum Sink<W: Write> {
        Hex(HexDump<W>),
        Raw(W),
    }
    let mut sink = if raw {
        Sink::Raw(out)
    } else {
        Sink::Hex(HexDump::new(out, offset, squeeze))
    };
    let mut buf = vec![0u8; 64 << 10];
    let len = map.len() - at;
    let mut done = 0;
    while done < len {
        let n = buf.len().min(len - done);
        map.read_slice(at + done, &mut buf[..n])
            .map_err(|e| os_error(path, None, &e))?;
        match &mut sink {
            Sink::Hex(h) => h.feed(&buf[..n]),
            Sink::Raw(w) => w.write_all(&buf[..n]),
        }
        .map_err(stdout_error)?;
        done += n;
    }
    let mut out = match sink {
        Sink::Hex(h) => h.finish().map_err(stdout_error)?,
        Sink::Raw(w) => w,
    };
    out.flush().map_err(stdout_error)
}

fn write(path: &Path, offset: u64, data: &OsStr, cache: Cache) -> Result<()> {
    let dev = open(path)?;
    let size = read_info(&dev)?.size;
    check_range(path, offset, 0, size)?;
    let room = size - offset;
    let bytes = if data == "-" {
        // One byte more than fits tells that the input is too long.
        let mut v = Vec::new();
        io::stdin()
            .lock()
            .take(room.saturating_add(1))
            .read_to_end(&mut v)
            .map_err(|e| Error(format!("standard input: {}", strerror(&e))))?;
        v
    } else {
        data.as_bytes().to_vec()
    };
    check_range(path, offset, bytes.len() as u64, size)?;
    if bytes.is_empty() {
        return Ok(());
    }
    let (map, at) = map_range(&dev, offset, bytes.len() as u64, cache)?;
    map.write_slice(at, &bytes)
        .map_err(|e| os_error(path, None, &e))
}

fn print_events(path: &Path, events: &[Event], as_json: bool) -> io::Result<()> {
    let mut out = io::stdout().lock();
    if as_json {
        let evs: Vec<_> = events
            .iter()
            .map(|e| json!({"vector": e.vector, "count": e.count, "timestamp_ns": e.timestamp_ns}))
            .collect();
        writeln!(
            out,
            "{}",
            json!({"device": PathBuf::from(path), "events": evs})
        )
    } else {
        for e in events {
            writeln!(
                out,
                "vector={} count={} timestamp_ns={}",
                e.vector, e.count, e.timestamp_ns
            )?;
        }
        Ok(())
    }
}

fn wait(
    path: &Path,
    vectors: &[u16],
    timeout: Option<Duration>,
    as_json: bool,
) -> Result<ExitCode> {
    let dev = open_read_only(path)?;
    let info = read_info(&dev)?;
    if !info.doorbell {
        return Err(Error(format!(
            "{}: cannot wait: an ivshmem-plain device has no doorbells",
            path.display()
        )));
    }
    if let Some(v) = vectors.iter().find(|&&v| u32::from(v) >= info.vectors) {
        return Err(Error(format!(
            "{}: no vector {v}: the device has {} (0 to {})",
            path.display(),
            info.vectors,
            info.vectors.saturating_sub(1)
        )));
    }
    if !vectors.is_empty() {
        dev.set_vector_mask(vectors.iter().copied())
            .map_err(|e| os_error(path, Some(format_args!("cannot select the vectors")), &e))?;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match dev.wait(left) {
            Ok(events) if !events.is_empty() => {
                print_events(path, &events, as_json).map_err(stdout_error)?;
                return Ok(ExitCode::SUCCESS);
            }
            Ok(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                return Ok(ExitCode::from(EXIT_TIMEOUT));
            }
            // Woken early (a stopped and continued process): wait on.
            Ok(_) => {}
            Err(e) if ivshmem::errno(&e) == Some(libc::EINTR) => {}
            Err(e) => {
                return Err(os_error(
                    path,
                    Some(format_args!("cannot wait for doorbells")),
                    &e,
                ));
            }
        }
    }
}
