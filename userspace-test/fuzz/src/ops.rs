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
        for _ in 0..calls {
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
