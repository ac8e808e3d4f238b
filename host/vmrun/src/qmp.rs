//! A minimal QMP client: enough to hot-unplug and re-plug devices.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Self> {
        let s = UnixStream::connect(path)
            .with_context(|| format!("connecting to QMP at {}", path.display()))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut q = Self {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            bail!("not a QMP greeting: {greeting}");
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("QMP closed the connection");
        }
        serde_json::from_str(&line).with_context(|| format!("bad QMP message {line:?}"))
    }

    /// Runs a command and returns its `return` value; events read on the
    /// way are kept for [`Qmp::wait_event`].
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let msg = json!({ "execute": cmd, "arguments": args });
        writeln!(self.writer, "{msg}")?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {cmd} failed: {e}");
            }
        }
    }

    /// Waits for an event named `name` whose data matches `pred`.
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.read() {
                Ok(v)
                    if v.get("event").and_then(Value::as_str) == Some(name) && pred(&v["data"]) =>
                {
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
        }
        bail!("no {name} event within {} s", timeout.as_secs())
    }
}

fn is_timeout(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )
    })
}
