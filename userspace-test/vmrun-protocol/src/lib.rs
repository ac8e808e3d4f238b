//! The protocol between `ivshmem-vmrun` on the host and the programs it
//! runs in its guests (`ivshmem-selftest`, `ivshmem-bench`), in one place
//! for both sides:
//!
//! - [`Request`]: what a guest asks the runner to do, as a KTAP diagnostic
//!   line starting with [`REQUEST`] on the guest's KTAP channel;
//! - [`server_shm`]: where the runner answers in the shared memory of a
//!   scenario's ivshmem server;
//! - [`data`]: what the host and the guests write into, and check in, a
//!   plain device's shared memory;
//! - [`ptwalk`]: where and how the runner answers a `ptwalk` request in a
//!   plain device's shared memory.
//!
//! No dependencies: the guests' programs are static binaries.

use std::fmt;

/// The prefix of a request line: `# vmrun-request: device_del shm0`.
pub const REQUEST: &str = "# vmrun-request: ";

/// What a guest asks the runner to do, while the guest runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `device_del ID`: hot-unplug device ID over QMP, and wait until QEMU
    /// says it is gone.
    DeviceDel(String),
    /// `device_add ID`: plug device ID (`shmN`) in again, on its file.
    DeviceAdd(String),
    /// `peers ID`: check that peer ID is in the host client's peer list,
    /// then acknowledge at [`server_shm::peer_ack_slot`]`(ID)`.
    Peers(u16),
    /// `host-ring PEER VECTOR`: the host client rings peer PEER.
    HostRing {
        /// The peer to ring.
        peer: u16,
        /// Its vector.
        vector: u16,
    },
    /// `host-wait GUEST VECTOR`: a host client waits for one ring on
    /// VECTOR and leaves its id at [`server_shm::host_id_slot`]`(GUEST)`
    /// for guest GUEST to ring.
    HostWait {
        /// The IVPosition of the guest that will ring.
        guest: u16,
        /// The vector it will ring.
        vector: u16,
    },
    /// `host-got GUEST`: whether the host client of guest GUEST's
    /// `host-wait` has got its ring (the host waits up to a second for it),
    /// answered at [`server_shm::host_id_slot`]`(GUEST)` with
    /// [`server_shm::host_got_value`]. The guest's QEMU drops a ring to a
    /// peer whose arrival it has not read from the server yet, so a guest
    /// rings and asks until the answer is yes.
    HostGot(u16),
    /// `kill NAME [PEER]`: kill guest NAME's QEMU. With PEER (the killed
    /// guest's IVPosition), acknowledge at [`server_shm::KILL_ACK`] once
    /// the server has seen that peer go.
    Kill {
        /// The guest's name in its scenario.
        guest: String,
        /// Its peer id on the server, if the asking guest waits for it.
        peer: Option<u16>,
    },
    /// `progress TEXT`: print TEXT as the guest's progress.
    Progress(String),
    /// `ptwalk CPU VA LEN PHYS OFFSET NONCE` (CPU in decimal, the others
    /// in hexadecimal with `0x`):
    /// the asking process, pinned to vCPU CPU and spinning in user space,
    /// maps LEN bytes of a plain device's BAR 2 (at guest-physical PHYS)
    /// from its start at virtual address VA. The host stops the guest,
    /// walks that vCPU's page tables over [VA, VA+LEN), counts the leaf
    /// entries that map into the BAR by size, and leaves a
    /// [`ptwalk::Answer`] at OFFSET of the device's shared memory, NONCE
    /// last. The walk is the asking process's only if VA+OFFSET maps to
    /// PHYS+OFFSET; otherwise the host lets the guest run and tries again.
    PtWalk(PtWalk),
}

/// The arguments of [`Request::PtWalk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtWalk {
    /// The vCPU (QEMU's cpu-index, Linux's CPU number) the process is
    /// pinned to.
    pub cpu: u32,
    /// Where the mapping starts.
    pub va: u64,
    /// Its length in bytes.
    pub len: u64,
    /// BAR 2's guest-physical address.
    pub phys: u64,
    /// Where in the BAR the answer goes (8-byte aligned, below LEN): the
    /// process reads it through the mapping at VA+OFFSET.
    pub offset: u64,
    /// What the host writes last ([`ptwalk::nonce`]).
    pub nonce: u64,
}

/// Why a request line could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The request, as the guest wrote it.
    pub request: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad request `{}`: {}", self.request, self.why)
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for Request {
    /// The request without [`REQUEST`], as [`Request::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceDel(id) => write!(f, "device_del {id}"),
            Self::DeviceAdd(id) => write!(f, "device_add {id}"),
            Self::Peers(id) => write!(f, "peers {id}"),
            Self::HostRing { peer, vector } => write!(f, "host-ring {peer} {vector}"),
            Self::HostWait { guest, vector } => write!(f, "host-wait {guest} {vector}"),
            Self::HostGot(guest) => write!(f, "host-got {guest}"),
            Self::Kill { guest, peer: None } => write!(f, "kill {guest}"),
            Self::Kill {
                guest,
                peer: Some(p),
            } => write!(f, "kill {guest} {p}"),
            Self::Progress(text) => write!(f, "progress {text}"),
            Self::PtWalk(w) => write!(
                f,
                "ptwalk {} {:#x} {:#x} {:#x} {:#x} {:#x}",
                w.cpu, w.va, w.len, w.phys, w.offset, w.nonce
            ),
        }
    }
}

impl Request {
    /// The line a guest prints to make this request (without a newline).
    pub fn line(&self) -> String {
        format!("{REQUEST}{self}")
    }

    /// The request in a line of a guest's KTAP, if the line is one
    /// (leading and trailing blanks ignored).
    pub fn from_line(line: &str) -> Option<Result<Self, ParseError>> {
        line.trim()
            .strip_prefix(REQUEST.trim_end())
            .map(|r| Self::parse(r.trim()))
    }

    /// Reads a request, as [`Request`]'s `Display` writes it.
    pub fn parse(request: &str) -> Result<Self, ParseError> {
        let bad = |why| ParseError {
            request: request.to_string(),
            why,
        };
        let id = |w: &str| {
            w.parse::<u16>()
                .map_err(|_| bad("not a number from 0 to 65535"))
        };
        if let Some(text) = request.strip_prefix("progress ") {
            return Ok(Self::Progress(text.to_string()));
        }
        let hex = |w: &str| {
            w.strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad("not a hexadecimal number (0x...)"))
        };
        let words: Vec<&str> = request.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["device_del", dev] => Self::DeviceDel((*dev).to_string()),
            ["device_add", dev] => Self::DeviceAdd((*dev).to_string()),
            ["peers", peer] => Self::Peers(id(peer)?),
            ["host-ring", peer, vector] => Self::HostRing {
                peer: id(peer)?,
                vector: id(vector)?,
            },
            ["host-wait", guest, vector] => Self::HostWait {
                guest: id(guest)?,
                vector: id(vector)?,
            },
            ["host-got", guest] => Self::HostGot(id(guest)?),
            ["kill", guest] => Self::Kill {
                guest: (*guest).to_string(),
                peer: None,
            },
            ["kill", guest, peer] => Self::Kill {
                guest: (*guest).to_string(),
                peer: Some(id(peer)?),
            },
            ["ptwalk", cpu, va, len, phys, offset, nonce] => Self::PtWalk(PtWalk {
                cpu: cpu.parse().map_err(|_| bad("not a CPU number"))?,
                va: hex(va)?,
                len: hex(len)?,
                phys: hex(phys)?,
                offset: hex(offset)?,
                nonce: hex(nonce)?,
            }),
            [
                "device_del" | "device_add" | "peers" | "host-ring" | "host-wait" | "host-got"
                | "kill" | "progress" | "ptwalk",
                ..,
            ] => return Err(bad("wrong number of arguments")),
            _ => return Err(bad("unknown request")),
        })
    }
}

/// Where the runner answers requests in the shared memory of a scenario's
/// ivshmem server (the doorbell devices' BAR 2). Slots are 8 bytes, little
/// endian, for peer ids below [`server_shm::MAX_ID`].
pub mod server_shm {
    /// Peer ids below this have slots that overlap nothing else.
    pub const MAX_ID: u16 = 256;
    /// `peers ID`: the acknowledgement [`ack`]`(ID)` lands at
    /// `PEER_ACKS + 8 * ID`.
    pub const PEER_ACKS: usize = 0x1000;
    /// `host-wait GUEST VECTOR`: the host client's id, marked
    /// ([`host_id_value`]), lands at `HOST_IDS + 8 * GUEST`.
    pub const HOST_IDS: usize = 0x3000;
    /// `kill NAME PEER`: [`ack`]`(PEER)` lands here once the server has
    /// seen peer PEER go.
    pub const KILL_ACK: usize = 0x3800;
    /// The end of the runner's slots.
    pub const END: usize = 0x4000;

    /// Where the host acknowledges `peers ID`.
    pub const fn peer_ack_slot(id: u16) -> usize {
        PEER_ACKS + 8 * id as usize
    }

    /// Where guest `guest` finds the id of the host client waiting for its
    /// ring.
    pub const fn host_id_slot(guest: u16) -> usize {
        HOST_IDS + 8 * guest as usize
    }

    /// The host's acknowledgement concerning peer `id`.
    pub const fn ack(id: u16) -> u64 {
        0xacc0_0000 | id as u64
    }

    // The slots of ids below MAX_ID overlap nothing else.
    const _: () = {
        assert!(peer_ack_slot(MAX_ID - 1) + 8 <= HOST_IDS);
        assert!(host_id_slot(MAX_ID - 1) + 8 <= KILL_ACK);
        assert!(KILL_ACK + 8 <= END);
    };

    const HOST_ID_MARK: u64 = 0x4057_0000_0000;

    /// The value at [`host_id_slot`]: the host client's id, marked so that
    /// zeroed memory does not read as id 0.
    pub const fn host_id_value(host: u16) -> u64 {
        HOST_ID_MARK | host as u64
    }

    /// The host client's id in a value read at [`host_id_slot`], if the
    /// host has written one.
    pub const fn host_id(value: u64) -> Option<u16> {
        if value >> 16 == HOST_ID_MARK >> 16 {
            Some(value as u16)
        } else {
            None
        }
    }

    const HOST_GOT: u64 = 0x4057_0001_0000;
    const HOST_NOT_YET: u64 = 0x4057_0002_0000;

    /// The answer to `host-got GUEST` at [`host_id_slot`]`(GUEST)`
    /// (which the guest clears before it asks): whether host client `host`
    /// got the guest's ring.
    pub const fn host_got_value(got: bool, host: u16) -> u64 {
        (if got { HOST_GOT } else { HOST_NOT_YET }) | host as u64
    }

    /// The answer in a value read at [`host_id_slot`], once the host has
    /// written one.
    pub const fn host_got(value: u64) -> Option<bool> {
        match value & !0xffff {
            HOST_GOT => Some(true),
            HOST_NOT_YET => Some(false),
            _ => None,
        }
    }
}

/// What the host and the guests leave in a plain device's shared memory
/// for each other (the host through the backing file, the guests through
/// the device).
pub mod data {
    /// Byte `off` of a region written with `seed`.
    pub fn pattern(seed: u8, off: u64) -> u8 {
        ((off >> 12) as u8) ^ (off as u8).wrapping_mul(31) ^ seed
    }

    /// The first bytes hold text for the C example.
    pub const TEXT_LEN: usize = 64;
    /// Text the host leaves at offset 0.
    pub const HOST_TEXT: &str = "hello from the host";
    /// Text the C example writes back.
    pub const GUEST_TEXT: &str = "hello from C";
    /// Pattern seed of the host.
    pub const HOST_SEED: u8 = 0x5a;
    /// Pattern seed of the guest.
    pub const GUEST_SEED: u8 = 0xa5;

    /// Marker offsets for a region of `len` bytes: the host writes each
    /// offset at itself, the guest its bitwise negation right after it.
    pub fn big_offsets(len: u64) -> Vec<u64> {
        let mut v = vec![0, len / 2, len - 4096];
        if len > 1 << 32 {
            v.push((1 << 32) - 16);
            v.push(1 << 32);
        }
        v
    }

    /// Where the host leaves text for the `ivshmem dump` test (the `cli`
    /// scenario).
    pub const CLI_HOST_AT: u64 = 0x4000;
    /// The host's text for `ivshmem dump`.
    pub const CLI_HOST_TEXT: &[u8] = b"the host wrote this for ivshmem dump";
    /// Where the `ivshmem write` test leaves its text for the host to check.
    pub const CLI_GUEST_AT: u64 = 0x5000;
    /// The text `ivshmem write` leaves.
    pub const CLI_GUEST_TEXT: &[u8] = b"ivshmem write was here";
}

/// The answer to a `ptwalk` request ([`Request::PtWalk`]), at OFFSET of
/// the device's shared memory: little-endian `u64` words, the nonce
/// written last.
pub mod ptwalk {
    /// The nonce's word.
    pub const NONCE: usize = 0;
    /// [`OK`] or [`FAILED`].
    pub const STATUS: usize = 8;
    /// Leaf entries mapping into BAR 2: 4 KiB (PTEs), 2 MiB (PDEs with PS)
    /// and 1 GiB (PDPTEs with PS), three words.
    pub const ENTRIES: usize = 16;
    /// Present leaf entries in the range that map elsewhere.
    pub const ELSEWHERE: usize = 40;
    /// The walks the host made until one was the asking process's.
    pub const TRIES: usize = 48;
    /// The bytes of an answer.
    pub const LEN: usize = 56;
    /// The walk was made.
    pub const OK: u64 = 0;
    /// It was not (the runner's log says why): the counts are zero.
    pub const FAILED: u64 = 1;

    const TAG: u64 = 0x7074_7761_0000_0000;

    /// The `n`th nonce: marked, so that zeroed or patterned memory does
    /// not read as one.
    pub const fn nonce(n: u32) -> u64 {
        TAG | n as u64
    }

    /// What the host found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Answer {
        /// [`OK`] or [`FAILED`].
        pub status: u64,
        /// Leaf entries into BAR 2: 4 KiB, 2 MiB, 1 GiB.
        pub entries: [u64; 3],
        /// Present leaf entries in the range that map elsewhere.
        pub elsewhere: u64,
        /// Walks made.
        pub tries: u64,
    }

    impl Answer {
        /// The answer's words after the nonce, as bytes for offset
        /// [`STATUS`].
        pub fn body(&self) -> [u8; LEN - STATUS] {
            let mut b = [0u8; LEN - STATUS];
            let words = [
                self.status,
                self.entries[0],
                self.entries[1],
                self.entries[2],
                self.elsewhere,
                self.tries,
            ];
            for (chunk, w) in b.chunks_exact_mut(8).zip(words) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            b
        }

        /// Reads an answer with `word(offset)`, the `u64` at that offset of
        /// the answer.
        pub fn read(mut word: impl FnMut(usize) -> u64) -> Self {
            Self {
                status: word(STATUS),
                entries: [word(ENTRIES), word(ENTRIES + 8), word(ENTRIES + 16)],
                elsewhere: word(ELSEWHERE),
                tries: word(TRIES),
            }
        }

        /// The bytes the entries into the BAR map.
        pub fn bytes_mapped(&self) -> u64 {
            self.entries[0] << 12 | self.entries[1] << 21 | self.entries[2] << 30
        }
    }
}

#[cfg(test)]
mod tests {
    use super::server_shm::*;
    use super::*;

    #[test]
    fn requests_read_back_what_they_write() {
        for r in [
            Request::DeviceDel("shm0".into()),
            Request::DeviceAdd("shm0".into()),
            Request::Peers(3),
            Request::HostRing { peer: 1, vector: 2 },
            Request::HostWait {
                guest: 4,
                vector: 3,
            },
            Request::HostGot(4),
            Request::Kill {
                guest: "b".into(),
                peer: None,
            },
            Request::Kill {
                guest: "b".into(),
                peer: Some(7),
            },
            Request::Progress("mapping: 3 of 11 repetitions".into()),
            Request::PtWalk(PtWalk {
                cpu: 1,
                va: 0x7f23_30c4_8000,
                len: 4 << 20,
                phys: 0x4_0000_0000,
                offset: (4 << 20) - 4096,
                nonce: ptwalk::nonce(7),
            }),
        ] {
            let line = r.line();
            assert!(line.starts_with(REQUEST), "{line}");
            assert_eq!(Request::from_line(&line), Some(Ok(r.clone())), "{line}");
            // As the runner sees it: indented, with a carriage return.
            assert_eq!(Request::from_line(&format!("  {line}\r")), Some(Ok(r)));
        }
    }

    #[test]
    fn host_got_answers_are_told_apart() {
        assert_eq!(host_got(host_got_value(true, 5)), Some(true));
        assert_eq!(host_got(host_got_value(false, 5)), Some(false));
        // Cleared, or the host client's id from `host-wait`: no answer yet.
        assert_eq!(host_got(0), None);
        assert_eq!(host_got(host_id_value(5)), None);
        assert_eq!(host_id(host_got_value(true, 5)), None);
    }

    #[test]
    fn other_lines_are_not_requests() {
        assert_eq!(Request::from_line("# vmrun: something else"), None);
        assert_eq!(Request::from_line("ok 1 peers 3"), None);
        assert_eq!(Request::from_line(""), None);
    }

    #[test]
    fn bad_requests_say_why() {
        for (line, why) in [
            ("peers", "wrong number of arguments"),
            ("peers x", "not a number from 0 to 65535"),
            ("host-ring 1 70000", "not a number from 0 to 65535"),
            ("kill", "wrong number of arguments"),
            ("reboot now", "unknown request"),
            (
                "ptwalk 0 0x1000 0x1000 0x1000 0",
                "wrong number of arguments",
            ),
            (
                "ptwalk 0 1000 0x1000 0x1000 0 0x1",
                "not a hexadecimal number (0x...)",
            ),
            ("ptwalk x 0x1000 0x1000 0x1000 0x0 0x1", "not a CPU number"),
        ] {
            let e = Request::parse(line).unwrap_err();
            assert_eq!(e.why, why, "{line}");
            assert!(e.to_string().contains(line), "{e}");
        }
    }

    #[test]
    fn host_ids_are_marked() {
        assert_eq!(host_id(host_id_value(0)), Some(0));
        assert_eq!(host_id(host_id_value(65535)), Some(65535));
        assert_eq!(host_id(0), None);
        assert_eq!(host_id(ack(5)), None);
    }

    #[test]
    fn ptwalk_answers_read_back() {
        let a = ptwalk::Answer {
            status: ptwalk::OK,
            entries: [3, 2, 1],
            elsewhere: 4,
            tries: 5,
        };
        let mut mem = [0u8; ptwalk::LEN];
        mem[ptwalk::STATUS..].copy_from_slice(&a.body());
        let word = |o: usize| u64::from_le_bytes(mem[o..o + 8].try_into().unwrap());
        assert_eq!(ptwalk::Answer::read(word), a);
        assert_eq!(a.bytes_mapped(), 3 * 4096 + 2 * (2 << 20) + (1 << 30));
        assert_ne!(ptwalk::nonce(0), 0);
        assert_ne!(ptwalk::nonce(0), ptwalk::nonce(1));
        assert_ne!(ptwalk::nonce(0), u64::from_le_bytes([1; 8]));
    }

    #[test]
    fn big_markers_cross_4g() {
        let v = data::big_offsets(8 << 30);
        assert!(v.contains(&(1 << 32)));
        assert!(v.iter().all(|o| o + 16 <= 8 << 30));
    }

    #[test]
    fn pattern_varies() {
        use data::pattern;
        let a: Vec<u8> = (0..4096).map(|o| pattern(1, o)).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        assert_ne!(pattern(1, 0), pattern(2, 0));
        assert_ne!(pattern(1, 0), pattern(1, 4096));
    }
}
