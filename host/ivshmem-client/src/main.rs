//! `ivshmem-client`: a host peer of an ivshmem server.
//!
//! It connects like a guest's ivshmem-doorbell device would, maps the shared
//! memory, and then runs one command (for scripts and tests) or reads QEMU's
//! `contrib/ivshmem-client` commands on stdin.

use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use ivshmem_client::cli::{Cli, Command, EXIT_TIMEOUT, VectorArg, parse_num, parse_vector};
use ivshmem_proto::{Client, ConnectOptions, Event, PeerId, SharedMemory};
use rustix::buffer::spare_capacity;
use rustix::event::Timespec;
use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::io::Errno;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ivshmem-client: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn connect(cli: &Cli) -> Result<Client> {
    let opts = ConnectOptions {
        vectors: cli.vectors,
        timeout: Some(cli.connect_timeout),
        ..Default::default()
    };
    Client::connect_with(&cli.socket, &opts)
        .with_context(|| format!("cannot connect to {}", cli.socket.display()))
}

/// The peers as JSON (`info --json` and `peers --json`): an array of
/// `{"id": N, "vectors": N}`.
fn peers_json(client: &Client) -> serde_json::Value {
    client
        .peers()
        .iter()
        .map(|(id, v)| serde_json::json!({ "id": id, "vectors": v.len() }))
        .collect()
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let mut client = connect(cli)?;
    let mem = client.map_shared_memory()?;
    let mut out = std::io::stdout().lock();
    match cli.command.as_ref().unwrap_or(&Command::Shell) {
        Command::Info { json } => {
            if *json {
                let info = serde_json::json!({
                    "id": client.id(),
                    "shm_size": client.shm_size(),
                    "vectors": client.vectors().len(),
                    "peers": peers_json(&client),
                });
                writeln!(out, "{info}")?;
            } else {
                writeln!(out, "id: {}", client.id())?;
                writeln!(out, "shm_size: {}", client.shm_size())?;
                writeln!(out, "vectors: {}", client.vectors().len())?;
                let peers: Vec<String> = client
                    .peers()
                    .iter()
                    .map(|(id, v)| format!("{id} ({} vectors)", v.len()))
                    .collect();
                writeln!(out, "peers: {}", peers.join(", "))?;
            }
        }
        Command::Peers { json } => {
            if *json {
                writeln!(out, "{}", peers_json(&client))?;
            } else {
                for (id, v) in client.peers() {
                    writeln!(out, "{id} {}", v.len())?;
                }
            }
        }
        Command::Dump => dump(&client, &mut out)?,
        Command::Ring { peer, vector } => match vector {
            VectorArg::One(v) => client.ring(*peer, *v)?,
            VectorArg::All => {
                client.ring_all_vectors(*peer)?;
            }
        },
        Command::RingAll => {
            client.ring_all()?;
        }
        Command::Wait {
            count,
            timeout,
            vector,
        } => {
            writeln!(out, "id {}", client.id())?;
            out.flush()?;
            drop(out);
            return wait(cli, &mut client, *count, *timeout, *vector);
        }
        Command::Read { offset, len, hex } => {
            read_chunks(&mem, *offset, *len, |at, bytes| {
                if *hex {
                    hex_dump(&mut out, at, bytes)
                } else {
                    out.write_all(bytes)
                }
            })?;
        }
        Command::Write { offset, data } => mem.write(*offset, data.as_bytes())?,
        Command::Shell => {
            drop(out);
            return shell(cli, &mut client, &mem);
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// How much of the shared memory is copied at a time: a multiple of the
/// 16 bytes of a hex dump line.
const CHUNK: u64 = 64 << 10;

/// Hands `len` bytes of the shared memory at `offset` to `each`, one chunk
/// (and its offset) at a time, after checking that they are all inside the
/// region: the buffer is never larger than a chunk.
fn read_chunks(
    mem: &SharedMemory,
    offset: u64,
    len: u64,
    mut each: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    mem.check_range(offset, len)?;
    let mut buf = vec![0u8; len.min(CHUNK) as usize];
    let end = offset + len;
    let mut at = offset;
    while at < end {
        let n = (end - at).min(CHUNK) as usize;
        mem.read(at, &mut buf[..n])?;
        each(at, &buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

fn hex_dump(out: &mut impl Write, base: u64, buf: &[u8]) -> std::io::Result<()> {
    for (i, chunk) in buf.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        writeln!(
            out,
            "{:016x}  {:<47}  |{text}|",
            base + 16 * i as u64,
            hex.join(" ")
        )?;
    }
    Ok(())
}

fn dump(client: &Client, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "our_id = {}", client.id())?;
    for (v, fd) in client.vectors().iter().enumerate() {
        writeln!(out, "  vector {v} is enabled (fd={})", raw(fd))?;
    }
    for (id, fds) in client.peers() {
        writeln!(out, "peer_id = {id}")?;
        for (v, fd) in fds.iter().enumerate() {
            writeln!(out, "  vector {v} is enabled (fd={})", raw(fd))?;
        }
    }
    Ok(())
}

fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_raw_fd()
}

const TOKEN_SOCKET: u64 = u64::MAX;
const TOKEN_STDIN: u64 = u64::MAX - 1;

/// Epoll over the server socket, this client's vectors and maybe stdin.
struct Watch {
    epoll: OwnedFd,
    watched_vectors: usize,
    events: Vec<epoll::Event>,
}

impl Watch {
    fn new(client: &Client, stdin: bool) -> Result<Self> {
        let epoll = epoll::create(CreateFlags::CLOEXEC).context("cannot create epoll")?;
        epoll::add(
            &epoll,
            client.socket(),
            EventData::new_u64(TOKEN_SOCKET),
            EventFlags::IN,
        )
        .context("cannot watch the server socket")?;
        if stdin {
            epoll::add(
                &epoll,
                std::io::stdin().as_fd(),
                EventData::new_u64(TOKEN_STDIN),
                EventFlags::IN,
            )
            .context("cannot watch stdin")?;
        }
        let mut w = Self {
            epoll,
            watched_vectors: 0,
            events: Vec::with_capacity(64),
        };
        w.update(client)?;
        Ok(w)
    }

    /// Watches vectors that arrived late.
    fn update(&mut self, client: &Client) -> Result<()> {
        for (v, fd) in client
            .vectors()
            .iter()
            .enumerate()
            .skip(self.watched_vectors)
        {
            epoll::add(
                &self.epoll,
                fd,
                EventData::new_u64(v as u64),
                EventFlags::IN,
            )
            .context("cannot watch an eventfd")?;
        }
        self.watched_vectors = client.vectors().len();
        Ok(())
    }

    /// Waits for events; returns their tokens.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<Vec<u64>> {
        let timeout = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        self.events.clear();
        match epoll::wait(
            &self.epoll,
            spare_capacity(&mut self.events),
            timeout.as_ref(),
        ) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e).context("epoll_wait failed"),
        }
        Ok(self.events.iter().map(|e| e.data.u64()).collect())
    }
}

/// Processes every announcement available. Returns false if the server
/// closed the connection.
fn drain_announcements(
    client: &mut Client,
    watch: &mut Watch,
    report: &mut dyn FnMut(&Event),
) -> Result<bool> {
    loop {
        match client.try_next_event() {
            Ok(Some(e)) => {
                report(&e);
                if matches!(e, Event::OwnVector { .. }) {
                    watch.update(client)?;
                }
            }
            Ok(None) => return Ok(true),
            Err(ivshmem_proto::Error::Closed) => return Ok(false),
            Err(e) => return Err(e).context("bad message from the server"),
        }
    }
}

fn describe(e: &Event) -> String {
    match e {
        Event::PeerVector { peer, vector: 0 } => format!("new peer {peer}"),
        Event::PeerVector { peer, vector } => format!("peer {peer}: vector {vector}"),
        Event::PeerLeft { peer, .. } => format!("peer {peer} left"),
        Event::OwnVector { vector } => format!("own vector {vector}"),
    }
}

fn wait(
    cli: &Cli,
    client: &mut Client,
    count: Option<u64>,
    timeout: Option<Duration>,
    only: Option<usize>,
) -> Result<ExitCode> {
    if let Some(v) = only.filter(|&v| v >= client.vectors().len()) {
        bail!(
            "this client has {} vector(s); there is no vector {v}",
            client.vectors().len()
        );
    }
    // The timeout is at most 1e9 s (cli::MAX_SECONDS): no overflow.
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut watch = Watch::new(client, false)?;
    let mut got = 0u64;
    let mut out = std::io::stdout();
    let verbose = cli.verbose;
    let mut report = |e: &Event| {
        if verbose {
            eprintln!("{}", describe(e));
        }
    };
    loop {
        if count.is_some_and(|n| got >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        if !drain_announcements(client, &mut watch, &mut report)? {
            bail!("the server closed the connection");
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "ivshmem-client: timeout: {got} notification(s) received{}",
                count.map(|n| format!(" of {n}")).unwrap_or_default()
            );
            return Ok(ExitCode::from(EXIT_TIMEOUT));
        }
        for token in watch.wait(deadline)? {
            if token == TOKEN_SOCKET || token == TOKEN_STDIN {
                continue;
            }
            let v = token as usize;
            let Some(c) = client.take_notifications(v)? else {
                continue;
            };
            if only.is_none_or(|o| o == v) {
                writeln!(out, "notify vector={v} count={c}")?;
                out.flush()?;
                got += c;
            }
        }
    }
}

fn help_text() -> &'static str {
    "dump: dump peers (including us)\n\
     int <peer> <vector>: notify one vector on a peer\n\
     int <peer> all: notify all vectors of a peer\n\
     int all: notify all vectors of all peers (excepting us)\n\
     info: our id, shared memory size, vectors and peers\n\
     read <offset> <len>: show shared memory bytes\n\
     write <offset> <string>: write a string into shared memory\n\
     help: this text\n\
     quit: leave"
}

/// What a shell command asks the loop to do next.
enum Next {
    Continue,
    Quit,
}

fn shell_command(line: &str, client: &Client, mem: &SharedMemory) -> Result<Next> {
    let mut out = std::io::stdout();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [] => {}
        ["help"] | ["?"] => writeln!(out, "{}", help_text())?,
        ["quit"] | ["exit"] | ["q"] => return Ok(Next::Quit),
        ["dump"] => dump(client, &mut out)?,
        ["info"] => {
            writeln!(
                out,
                "id {} shm_size {} vectors {} peers {}",
                client.id(),
                client.shm_size(),
                client.vectors().len(),
                client.peers().len()
            )?;
        }
        ["int", "all"] => {
            let n = client.ring_all()?;
            writeln!(out, "notified {n} vector(s)")?;
        }
        ["int", peer, vector] => {
            let peer: PeerId = peer
                .parse()
                .map_err(|_| anyhow!("{peer:?} is not a peer id"))?;
            match parse_vector(vector).map_err(anyhow::Error::msg)? {
                VectorArg::One(v) => client.ring(peer, v)?,
                VectorArg::All => {
                    client.ring_all_vectors(peer)?;
                }
            }
        }
        ["read", offset, len] => {
            let offset = parse_num(offset).map_err(anyhow::Error::msg)?;
            let len = parse_num(len).map_err(anyhow::Error::msg)?;
            read_chunks(mem, offset, len, |_, bytes| {
                write!(out, "{}", bytes.escape_ascii())
            })?;
            writeln!(out)?;
        }
        ["write", offset, ..] => {
            let offset_n = parse_num(offset).map_err(anyhow::Error::msg)?;
            // The rest of the line, spaces included.
            let rest = line.trim_start()["write".len()..].trim_start();
            let data = rest[offset.len()..].strip_prefix(' ').unwrap_or("");
            mem.write(offset_n, data.as_bytes())?;
            writeln!(out, "wrote {} byte(s) at {offset_n}", data.len())?;
        }
        _ => writeln!(out, "invalid command, type help")?,
    }
    Ok(Next::Continue)
}

fn shell(cli: &Cli, client: &mut Client, mem: &SharedMemory) -> Result<ExitCode> {
    let interactive = std::io::stdin().is_terminal();
    let prompt = || {
        if interactive {
            print!("cmd> ");
            let _ = std::io::stdout().flush();
        }
    };
    if interactive {
        println!("{}", help_text());
    }
    println!(
        "connected to {} as peer {} ({} bytes, {} vector(s), {} peer(s))",
        cli.socket.display(),
        client.id(),
        client.shm_size(),
        client.vectors().len(),
        client.peers().len()
    );
    prompt();
    let mut watch = Watch::new(client, true)?;
    let mut report = |e: &Event| {
        println!("{}", describe(e));
    };
    let mut pending = Vec::<u8>::new();
    let mut stdin_open = true;
    loop {
        if !drain_announcements(client, &mut watch, &mut report)? {
            println!("disconnected from server");
            return Ok(ExitCode::FAILURE);
        }
        let _ = std::io::stdout().flush();
        if !stdin_open {
            return Ok(ExitCode::SUCCESS);
        }
        for token in watch.wait(None)? {
            match token {
                TOKEN_SOCKET => {}
                TOKEN_STDIN => {
                    let mut buf = [0u8; 4096];
                    let n = match rustix::io::read(std::io::stdin(), &mut buf) {
                        Ok(n) => n,
                        Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
                        Err(e) => return Err(e).context("cannot read stdin"),
                    };
                    if n == 0 {
                        stdin_open = false;
                        // A last line without newline still counts.
                        pending.push(b'\n');
                    } else {
                        pending.extend_from_slice(&buf[..n]);
                    }
                    while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        let line = String::from_utf8_lossy(&line);
                        for cmd in line.split(['\n', '\r', ';']) {
                            match shell_command(cmd, client, mem) {
                                Ok(Next::Continue) => {}
                                Ok(Next::Quit) => return Ok(ExitCode::SUCCESS),
                                Err(e) => println!("error: {e:#}"),
                            }
                        }
                        prompt();
                    }
                }
                v => {
                    if let Some(c) = client.take_notifications(v as usize)? {
                        println!("receive notification on vector {v} (count {c})");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_dump_format() {
        let mut v = Vec::new();
        hex_dump(&mut v, 16, b"hello\0").unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "0000000000000010  68 65 6c 6c 6f 00                                |hello.|\n"
        );
    }
}
