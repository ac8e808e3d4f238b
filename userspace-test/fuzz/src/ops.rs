//! The kinds of call and their weights: each step of a worker draws one
//! and dispatches it to the module that makes it.

use crate::worker::Worker;

/// The kinds of call, in the order of their weights.
const OPS: &[(&str, u64)] = &[
    ("open", 6),
    ("close", 4),
    ("dup", 2),
    ("fork", 1),
    ("mmap", 10),
    ("munmap", 5),
    ("mremap", 3),
    ("mprotect", 3),
    ("madvise", 2),
    ("touch", 14),
    ("read", 6),
    ("poll", 4),
    ("epoll", 4),
    ("ioctl", 22),
    ("ioctl_raw", 6),
    ("eventfd", 3),
    ("bind", 5),
    ("fcntl", 2),
    ("signal", 2),
];

impl Worker<'_> {
    pub(crate) fn run(&mut self, calls: u64) {
        let total: u64 = OPS.iter().map(|o| o.1).sum();
        let cap = calls.saturating_mul(100);
        for i in 0..cap {
            // Past its share, a worker goes on only while the path it was
            // given exists (looked at every 64 calls).
            if i >= calls {
                match &self.until_gone {
                    None => break,
                    Some(p) if (i - calls) % 64 == 0 && !p.exists() => break,
                    Some(_) => {}
                }
            }
            let mut x = self.rng.below(total);
            let mut op = OPS[0].0;
            for (name, w) in OPS {
                if x < *w {
                    op = name;
                    break;
                }
                x -= w;
            }
            self.report.calls += 1;
            *self.report.ops.entry(op.to_string()).or_default() += 1;
            self.call(op);
        }
        self.teardown();
    }

    fn call(&mut self, op: &str) {
        match op {
            "open" => self.open(),
            "close" => self.close(),
            "dup" => self.dup(),
            "fork" => self.fork(),
            "mmap" => self.mmap(),
            "munmap" => self.munmap(),
            "mremap" => self.mremap(),
            "mprotect" => self.mprotect(),
            "madvise" => self.madvise(),
            "touch" => self.touch(),
            "read" => self.read(),
            "poll" => self.poll(),
            "epoll" => self.epoll(),
            "ioctl" => self.ioctl(),
            "ioctl_raw" => self.ioctl_raw(),
            "eventfd" => self.eventfd(),
            "bind" => self.bind(),
            "fcntl" => self.fcntl(),
            _ => self.signal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::sync::atomic::AtomicI32;

    fn calls_made(until_gone: Option<&str>) -> u64 {
        let cfg = Config {
            seed: 1,
            calls: 10,
            procs: 1,
            threads: 1,
            devices: vec![],
            until_gone: until_gone.map(Into::into),
        };
        let tids = [AtomicI32::new(0)];
        let mut w = Worker::new(&cfg, 1, &tids);
        w.run(10);
        w.report.calls
    }

    /// A worker makes its share, or, while `until_gone` exists, up to 100
    /// times it.
    #[test]
    fn until_gone_extends_the_share_while_the_path_exists() {
        assert_eq!(calls_made(None), 10);
        assert_eq!(calls_made(Some("/")), 1000);
        assert_eq!(calls_made(Some("/nonexistent/ivshmem0")), 10);
    }
}
