//! A minimal QMP client: enough to hot-unplug and re-plug devices.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long QEMU may take to greet or to answer a command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    stream: UnixStream,
    /// What was read past the last complete line: the start of the next
    /// message, kept when a deadline cuts it.
    partial: Vec<u8>,
    /// Events read while waiting for something else, oldest first.
    events: VecDeque<Value>,
}

impl Qmp {
    /// Connects and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Self> {
        let s = UnixStream::connect(path)
            .with_context(|| format!("connecting to QMP at {}", path.display()))?;
        Self::handshake(s)
    }

    /// Reads the greeting on a connected stream and negotiates
    /// capabilities.
    pub(crate) fn handshake(stream: UnixStream) -> Result<Self> {
        let mut q = Self {
            stream,
            partial: Vec::new(),
            events: VecDeque::new(),
        };
        let greeting = q
            .next_message(Instant::now() + REPLY_TIMEOUT)?
            .with_context(|| format!("no QMP greeting within {} s", REPLY_TIMEOUT.as_secs()))?;
        if greeting.get("QMP").is_none() {
            bail!("not a QMP greeting: {greeting}");
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    /// The next message, or `None` once `deadline` has passed. A message
    /// cut by the deadline stays for the next call.
    fn next_message(&mut self, deadline: Instant) -> Result<Option<Value>> {
        loop {
            if let Some(nl) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_str(line)
                    .map(Some)
                    .with_context(|| format!("bad QMP message {line:?}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => bail!("QMP closed the connection"),
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("reading from QMP"),
            }
        }
    }

    /// Runs a command and returns its `return` value; events read on the
    /// way are kept for [`Qmp::wait_event`].
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let msg = json!({ "execute": cmd, "arguments": args });
        writeln!(self.stream, "{msg}").with_context(|| format!("sending QMP {cmd}"))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let v = self.next_message(deadline)?.with_context(|| {
                format!("no reply to QMP {cmd} within {} s", REPLY_TIMEOUT.as_secs())
            })?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {cmd} failed: {e}");
            }
            if v.get("event").is_some() {
                self.events.push_back(v);
            }
        }
    }

    /// The QOM type of the device with id `id` (`ivshmem-plain`, ...).
    pub fn device_type(&mut self, id: &str) -> Result<String> {
        let t = self.execute(
            "qom-get",
            json!({ "path": format!("/machine/peripheral/{id}"), "property": "type" }),
        )?;
        t.as_str()
            .map(str::to_string)
            .with_context(|| format!("device {id} has no type ({t})"))
    }

    /// The QOM path of the memory backend of the device with id `id`
    /// (its `memdev`, such as `/objects/mem0`).
    pub fn memdev(&mut self, id: &str) -> Result<String> {
        let memdev = self.execute(
            "qom-get",
            json!({ "path": format!("/machine/peripheral/{id}"), "property": "memdev" }),
        )?;
        memdev
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("device {id} has no memory backend ({memdev})"))
    }

    /// Waits for an event named `name` whose data matches `pred`, among
    /// the events already read first. Other events are kept.
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<()> {
        let wanted =
            |v: &Value| v.get("event").and_then(Value::as_str) == Some(name) && pred(&v["data"]);
        if let Some(i) = self.events.iter().position(wanted) {
            self.events.remove(i);
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        while let Some(v) = self.next_message(deadline)? {
            if wanted(&v) {
                return Ok(());
            }
            if v.get("event").is_some() {
                self.events.push_back(v);
            }
        }
        bail!("no {name} event within {} s", timeout.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    /// A fake QEMU: the test writes its messages, which the socket keeps
    /// until the client reads them, and reads what the client sent.
    struct Peer {
        out: UnixStream,
        sent: BufReader<UnixStream>,
    }

    impl Peer {
        fn say(&mut self, text: &str) {
            self.out.write_all(text.as_bytes()).unwrap();
        }

        /// The next command the client sent.
        fn heard(&mut self) -> Value {
            let mut l = String::new();
            self.sent.read_line(&mut l).unwrap();
            serde_json::from_str(&l).unwrap()
        }
    }

    const GREETING: &str = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n";
    const OK: &str = "{\"return\": {}}\n";

    fn deleted(dev: &str) -> String {
        format!("{{\"event\": \"DEVICE_DELETED\", \"data\": {{\"device\": \"{dev}\"}}}}\n")
    }

    /// A client in command mode, and its peer.
    fn connected() -> (Qmp, Peer) {
        let (client, server) = UnixStream::pair().unwrap();
        let mut peer = Peer {
            out: server.try_clone().unwrap(),
            sent: BufReader::new(server),
        };
        peer.say(GREETING);
        peer.say(OK);
        let q = Qmp::handshake(client).unwrap();
        assert_eq!(peer.heard()["execute"], "qmp_capabilities");
        (q, peer)
    }

    fn is_dev(dev: &'static str) -> impl Fn(&Value) -> bool {
        move |d| d["device"] == dev
    }

    #[test]
    fn events_before_the_reply_are_kept() {
        let (mut q, mut peer) = connected();
        // QEMU may report the device gone before it answers device_del.
        peer.say(&deleted("shm1"));
        peer.say(&deleted("shm0"));
        peer.say(OK);
        q.execute("device_del", json!({ "id": "shm0" })).unwrap();
        let cmd = peer.heard();
        assert_eq!(cmd["execute"], "device_del");
        assert_eq!(cmd["arguments"]["id"], "shm0");
        // Found without reading: nothing more will come.
        q.wait_event("DEVICE_DELETED", Duration::ZERO, is_dev("shm0"))
            .unwrap();
        q.wait_event("DEVICE_DELETED", Duration::ZERO, is_dev("shm1"))
            .unwrap();
        // Each event is taken once.
        let e = q
            .wait_event("DEVICE_DELETED", Duration::ZERO, is_dev("shm0"))
            .unwrap_err();
        assert!(e.to_string().contains("no DEVICE_DELETED event"), "{e}");
    }

    #[test]
    fn other_events_are_kept_while_waiting() {
        let (mut q, mut peer) = connected();
        peer.say("{\"event\": \"RESUME\", \"data\": {}}\n");
        peer.say(&deleted("shm0"));
        q.wait_event("DEVICE_DELETED", Duration::from_secs(5), is_dev("shm0"))
            .unwrap();
        q.wait_event("RESUME", Duration::ZERO, |_| true).unwrap();
    }

    #[test]
    fn a_line_cut_by_the_timeout_is_kept() {
        let (mut q, mut peer) = connected();
        let line = deleted("shm0");
        let (head, tail) = line.split_at(20);
        peer.say(head);
        // The read times out in the middle of the line...
        let e = q
            .wait_event("DEVICE_DELETED", Duration::from_millis(50), is_dev("shm0"))
            .unwrap_err();
        assert!(e.to_string().contains("no DEVICE_DELETED event"), "{e}");
        // ...and its start is still there when the rest comes.
        peer.say(tail);
        q.wait_event("DEVICE_DELETED", Duration::from_secs(5), is_dev("shm0"))
            .unwrap();
    }

    #[test]
    fn replies_in_pieces_and_together() {
        let (mut q, mut peer) = connected();
        // Two replies in one write, the second split from its newline.
        peer.say("{\"return\": 1}\n{\"return\": 2}");
        assert_eq!(q.execute("a", json!({})).unwrap(), json!(1));
        peer.say("\n");
        assert_eq!(q.execute("b", json!({})).unwrap(), json!(2));
    }

    #[test]
    fn errors_are_reported() {
        let (mut q, mut peer) = connected();
        peer.say("{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such device\"}}\n");
        let e = q.execute("device_del", json!({ "id": "x" })).unwrap_err();
        assert!(e.to_string().contains("QMP device_del failed"), "{e}");
        assert!(e.to_string().contains("no such device"), "{e}");
        peer.say("not json\n");
        let e = q.execute("x", json!({})).unwrap_err();
        assert!(e.to_string().contains("bad QMP message"), "{e}");
        drop(peer);
        let e = q.execute("x", json!({})).unwrap_err();
        assert!(format!("{e:#}").contains("QMP"), "{e:#}");
    }

    #[test]
    fn a_peer_that_is_not_qmp_is_refused() {
        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(b"{\"hello\": 1}\n").unwrap();
        let e = Qmp::handshake(client).unwrap_err();
        assert!(e.to_string().contains("not a QMP greeting"), "{e}");
    }
}
