//! Page-table entries counted from the page tables themselves, by the
//! host: the guest's kernel has no reader of them for `VM_PFNMAP`
//! mappings (see `mapping.rs`).
//!
//! The process pins itself to the CPU it runs on, asks the runner for a
//! walk (`# vmrun-request: ptwalk ...`, see
//! [`vmrun_protocol::Request::PtWalk`]) and spins in user space, with no
//! system call, on the answer slot in the shared memory, read through the
//! mapping being counted: the host stops the guest, reads that vCPU's CR3
//! and the tables under the mapping, and leaves the counts and then the
//! nonce in the device's backing file.

use guest_sys::Map;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering, fence};
use std::time::{Duration, Instant};
use vmrun_protocol::{PtWalk, Request, ptwalk};

/// How long the process waits for the host's answer before it gives up
/// (the runner's log then says what went wrong).
const PATIENCE: Duration = Duration::from_secs(180);

/// Walks asked for so far: each has its own nonce.
static ASKED: AtomicU32 = AtomicU32::new(0);

/// BAR 2's guest-physical address, from the function's `resource` file
/// (line 2: `start end flags`).
pub fn bar2_phys(dev: &Path) -> Result<u64, String> {
    let text = guest_sys::read_trim(dev.join("resource")).map_err(|e| e.to_string())?;
    let start = text
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|w| w.strip_prefix("0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| format!("no BAR 2 in {}/resource", dev.display()))?;
    if start == 0 {
        return Err(format!("BAR 2 of {} is not assigned", dev.display()));
    }
    Ok(start)
}

/// The CPUs this thread may run on, and pinning to one of them.
struct Pin {
    old: libc::cpu_set_t,
    cpu: u32,
}

impl Pin {
    /// Pins the calling thread to the CPU it is running on.
    fn here() -> Result<Self, String> {
        let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
        // SAFETY: A cpu_set_t is an array of plain integers; all zeroes is a
        // valid value, the empty set.
        let mut old: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: The `old` is a local, writable cpu_set_t, and the size passed
        // is its size, so the kernel writes only within it.
        if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old) } != 0 {
            return Err(os("sched_getaffinity"));
        }
        // SAFETY: The sched_getcpu call takes no arguments; a failure is a
        // negative return, checked below.
        let cpu = unsafe { libc::sched_getcpu() };
        let cpu = u32::try_from(cpu).map_err(|_| os("sched_getcpu"))?;
        if cpu as usize >= libc::CPU_SETSIZE as usize {
            return Err(format!("CPU {cpu} does not fit a cpu_set_t"));
        }
        // SAFETY: A cpu_set_t is an array of plain integers; all zeroes is a
        // valid value, the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: The `cpu` is below CPU_SETSIZE (checked above), so CPU_SET
        // writes a bit inside `one`, a local cpu_set_t.
        unsafe { libc::CPU_SET(cpu as usize, &mut one) };
        // SAFETY: The `one` is a local cpu_set_t, and the size passed is its
        // size; the kernel only reads it.
        if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) } != 0 {
            return Err(os("sched_setaffinity"));
        }
        Ok(Self { old, cpu })
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        // SAFETY: The `self.old` is the set sched_getaffinity filled in `here`,
        // and the size passed is its size; the kernel only reads it.
        unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.old) };
    }
}

/// Asks the host to count the page-table entries of `map`, a mapping of
/// the whole of BAR 2 (at guest-physical `phys`) from its start, touched
/// already; the answer comes at `slot` of the BAR (through the mapping).
pub fn ask(map: &Map, phys: u64, slot: usize) -> Result<ptwalk::Answer, String> {
    if slot % 8 != 0 || slot + ptwalk::LEN > map.len {
        return Err(format!("answer slot {slot:#x} is not in the mapping"));
    }
    let pin = Pin::here()?;
    let nonce = ptwalk::nonce(ASKED.fetch_add(1, Ordering::Relaxed));
    // No answer of an earlier walk can be taken for this one.
    map.write_u64(slot + ptwalk::NONCE, 0);
    fence(Ordering::SeqCst);
    let req = Request::PtWalk(PtWalk {
        cpu: pin.cpu,
        va: map.ptr as u64,
        len: map.len as u64,
        phys,
        offset: slot as u64,
        nonce,
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", req.line())
            .and_then(|()| out.flush())
            .map_err(|e| format!("asking the host: {e}"))?;
    }
    // Spin in user space on this CPU until the nonce comes; the clock
    // (which may be a system call) is read only every few million reads.
    let start = Instant::now();
    let mut n = 0u64;
    while map.read_u64(slot + ptwalk::NONCE) != nonce {
        std::hint::spin_loop();
        n += 1;
        if n % (1 << 22) == 0 && start.elapsed() > PATIENCE {
            return Err(format!(
                "no answer to `{req}` within {} s",
                PATIENCE.as_secs()
            ));
        }
    }
    // The host wrote the counts before the nonce.
    fence(Ordering::Acquire);
    let a = ptwalk::Answer::read(|o| map.read_u64(slot + o));
    drop(pin);
    match a.status {
        ptwalk::OK => Ok(a),
        s => Err(format!(
            "the host could not walk the page tables (status {s}; see the runner's output)"
        )),
    }
}
