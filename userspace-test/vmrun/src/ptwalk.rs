//! Counting a guest process's page-table entries from the host: the
//! `ptwalk` request ([`vmrun_protocol::Request::PtWalk`]).
//!
//! The guest's kernel cannot say which entries map a `VM_PFNMAP` mapping
//! (see docs/benchmarks.md, "Page tables"), so the host reads the page
//! tables themselves while the asking process spins, pinned, on one vCPU:
//! QMP `stop`, that vCPU's CR3 (HMP `info registers`), the tables read
//! from guest-physical memory (`pmemsave`), `cont`. The walker is x86-64
//! paging with 4 or 5 levels; it reads only the tables under the range.

use crate::qmp::Qmp;
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vmrun_protocol::{PtWalk, ptwalk};

/// Entries in a page table.
const ENTRIES: usize = 512;
/// Present.
const P: u64 = 1;
/// Page size: a leaf at the PDE (2 MiB) and PDPTE (1 GiB) levels.
const PS: u64 = 1 << 7;
/// The physical address bits of an entry (bits 12 to 51).
const ADDR: u64 = 0x000f_ffff_ffff_f000;

/// How many walks the host makes before it gives up: the asking process may
/// be off its vCPU for a moment when the guest stops.
const TRIES: u32 = 20;

/// Reads page tables from guest-physical memory.
pub trait PhysMem {
    /// The 512 entries of the table at `pa` (4 KiB aligned).
    fn table(&mut self, pa: u64) -> Result<[u64; ENTRIES]>;
}

/// Leaf entries found in a range, by where they map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Leaf entries mapping into the wanted physical range: 4 KiB (level
    /// 1), 2 MiB (level 2), 1 GiB (level 3).
    pub into: [u64; 3],
    /// Present leaf entries in the range mapping elsewhere.
    pub elsewhere: u64,
}

/// The paging of a vCPU: its top-level table and how many levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Physical address of the PML4 (PML5 with 5 levels).
    pub root: u64,
    /// 4, or 5 with LA57.
    pub levels: u32,
}

/// Bits of virtual address an entry at `level` (1 = PTE) spans.
const fn shift(level: u32) -> u32 {
    12 + 9 * (level - 1)
}

/// The physical address a leaf at `level` maps.
fn leaf_addr(e: u64, level: u32) -> u64 {
    e & ADDR & !((1u64 << shift(level)) - 1)
}

fn is_leaf(e: u64, level: u32) -> Result<bool> {
    match level {
        1 => Ok(true),
        2 | 3 => Ok(e & PS != 0),
        _ if e & PS != 0 => bail!("entry {e:#x} at level {level} has PS set (reserved)"),
        _ => Ok(false),
    }
}

/// The user half of the address space `levels` translate: virtual
/// addresses below this need no sign extension.
fn user_end(levels: u32) -> u64 {
    1 << (shift(levels) + 9 - 1)
}

/// Counts the present leaf entries of the page tables at `p` that map
/// some of `va` (user addresses), by whether they map into `into`.
pub fn walk(
    mem: &mut impl PhysMem,
    p: Paging,
    va: Range<u64>,
    into: &Range<u64>,
) -> Result<Counts> {
    ensure!(
        va.start < va.end && va.end <= user_end(p.levels),
        "{:#x}..{:#x} is not a range of user addresses",
        va.start,
        va.end
    );
    let mut c = Counts::default();
    walk_table(mem, p.root, p.levels, 0, &va, into, &mut c)?;
    Ok(c)
}

fn walk_table(
    mem: &mut impl PhysMem,
    table: u64,
    level: u32,
    base: u64,
    va: &Range<u64>,
    into: &Range<u64>,
    c: &mut Counts,
) -> Result<()> {
    let span = 1u64 << shift(level);
    // The entries of this table that overlap the range.
    let first = (va.start.max(base) - base) >> shift(level);
    let last = (va.end.min(base + span * ENTRIES as u64) - 1 - base) >> shift(level);
    let t = mem.table(table)?;
    for i in first..=last {
        let e = t[i as usize];
        if e & P == 0 {
            continue;
        }
        if is_leaf(e, level)? {
            let pa = leaf_addr(e, level);
            if into.contains(&pa) {
                c.into[level as usize - 1] += 1;
            } else {
                c.elsewhere += 1;
            }
        } else {
            walk_table(mem, e & ADDR, level - 1, base + i * span, va, into, c)?;
        }
    }
    Ok(())
}

/// The physical address `va` maps to, if it is mapped.
pub fn translate(mem: &mut impl PhysMem, p: Paging, va: u64) -> Result<Option<u64>> {
    ensure!(va < user_end(p.levels), "{va:#x} is not a user address");
    let mut table = p.root;
    for level in (1..=p.levels).rev() {
        let e = mem.table(table)?[((va >> shift(level)) & 511) as usize];
        if e & P == 0 {
            return Ok(None);
        }
        if is_leaf(e, level)? {
            return Ok(Some(leaf_addr(e, level) | (va & ((1 << shift(level)) - 1))));
        }
        table = e & ADDR;
    }
    unreachable!("level 1 entries are leaves")
}

/// The control registers of a vCPU, from HMP `info registers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Regs {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

impl Regs {
    /// Reads `CR0=`, `CR3=`, `CR4=` and `EFER=` of `info registers`.
    pub fn parse(text: &str) -> Result<Self> {
        let get = |name: &str| -> Result<u64> {
            let v = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .with_context(|| format!("no {name} in `info registers`: {text:?}"))?;
            u64::from_str_radix(v, 16).with_context(|| format!("{name}={v} is not hexadecimal"))
        };
        Ok(Self {
            cr0: get("CR0")?,
            cr3: get("CR3")?,
            cr4: get("CR4")?,
            efer: get("EFER")?,
        })
    }

    /// The paging these registers set up: 4- or 5-level long mode only.
    pub fn paging(&self) -> Result<Paging> {
        const CR0_PG: u64 = 1 << 31;
        const CR4_PAE: u64 = 1 << 5;
        const CR4_LA57: u64 = 1 << 12;
        const EFER_LMA: u64 = 1 << 10;
        ensure!(
            self.cr0 & CR0_PG != 0 && self.cr4 & CR4_PAE != 0 && self.efer & EFER_LMA != 0,
            "the vCPU is not in long mode with paging (CR0 {:#x}, CR4 {:#x}, EFER {:#x})",
            self.cr0,
            self.cr4,
            self.efer
        );
        Ok(Paging {
            // Bits 0-11 are the PCID (CR4.PCIDE) or flags, bit 63 the
            // no-flush bit of a write.
            root: self.cr3 & ADDR,
            levels: if self.cr4 & CR4_LA57 != 0 { 5 } else { 4 },
        })
    }
}

/// Guest-physical memory read over QMP (`pmemsave` into a file), while
/// the guest is stopped; tables are read once.
struct QmpMem<'a> {
    q: &'a mut Qmp,
    file: &'a Path,
    cache: HashMap<u64, [u64; ENTRIES]>,
}

impl PhysMem for QmpMem<'_> {
    fn table(&mut self, pa: u64) -> Result<[u64; ENTRIES]> {
        if let Some(t) = self.cache.get(&pa) {
            return Ok(*t);
        }
        let name = self
            .file
            .to_str()
            .with_context(|| format!("{} is not UTF-8", self.file.display()))?;
        self.q.execute(
            "pmemsave",
            json!({ "val": pa, "size": ENTRIES * 8, "filename": name }),
        )?;
        let bytes =
            std::fs::read(self.file).with_context(|| format!("reading {}", self.file.display()))?;
        ensure!(
            bytes.len() == ENTRIES * 8,
            "pmemsave of {pa:#x} wrote {} bytes",
            bytes.len()
        );
        let mut t = [0u64; ENTRIES];
        for (e, b) in t.iter_mut().zip(bytes.chunks_exact(8)) {
            *e = u64::from_le_bytes(b.try_into()?);
        }
        self.cache.insert(pa, t);
        Ok(t)
    }
}

/// Runs `f` with the guest stopped, and lets it run again afterwards
/// whatever `f` returned.
fn stopped<T>(q: &mut Qmp, f: impl FnOnce(&mut Qmp) -> Result<T>) -> Result<T> {
    q.execute("stop", json!({}))?;
    let r = f(q);
    let c = q.execute("cont", json!({}));
    match (r, c) {
        (r, Ok(_)) => r,
        (Ok(_), Err(e)) => Err(e.context("letting the guest run again after the walk")),
        (Err(e), Err(c)) => Err(e.context(format!("and the guest cannot run again: {c:#}"))),
    }
}

/// The plain device whose BAR 2 is at `phys`: its QOM id and BAR size,
/// from `query-pci`.
fn bar2_device(pci: &Value, phys: u64) -> Option<(String, u64)> {
    fn devices(bus: &Value, out: &mut Vec<Value>) {
        for d in bus["devices"].as_array().into_iter().flatten() {
            out.push(d.clone());
            devices(&d["pci_bridge"]["bus"], out);
        }
    }
    let mut all = Vec::new();
    for bus in pci.as_array().into_iter().flatten() {
        devices(bus, &mut all);
    }
    all.iter().find_map(|d| {
        let bar = d["regions"]
            .as_array()?
            .iter()
            .find(|r| r["bar"] == 2 && r["type"] == "memory")?;
        (bar["address"].as_u64()? == phys)
            .then_some((d["qdev_id"].as_str()?.to_string(), bar["size"].as_u64()?))
    })
}

/// The backing file of the memory behind the device with QOM id `id`.
fn backing_file(q: &mut Qmp, id: &str) -> Result<PathBuf> {
    let memdev = q.memdev(id)?;
    let path = q.execute("qom-get", json!({ "path": memdev, "property": "mem-path" }))?;
    Ok(PathBuf::from(path.as_str().with_context(|| {
        format!("{memdev} has no mem-path ({path})")
    })?))
}

/// Writes `a` at `offset` of `file`, the nonce last.
fn answer(file: &Path, offset: u64, nonce: u64, a: &ptwalk::Answer) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    f.write_all_at(&a.body(), offset + ptwalk::STATUS as u64)?;
    f.write_all_at(&nonce.to_le_bytes(), offset + ptwalk::NONCE as u64)
        .with_context(|| format!("writing at {offset:#x} of {}", file.display()))
}

/// Carries out `ptwalk` for the guest whose QMP socket is `qmp`; `scratch`
/// is a file the host may overwrite (pmemsave's output).
pub fn carry_out(qmp: &Path, scratch: &Path, w: &PtWalk) -> Result<()> {
    let mut q = Qmp::connect(qmp)?;
    let pci = q.execute("query-pci", json!({}))?;
    let (id, size) = bar2_device(&pci, w.phys)
        .with_context(|| format!("no PCI device has its BAR 2 at {:#x}", w.phys))?;
    ensure!(
        w.len <= size && w.offset % 8 == 0 && w.offset + ptwalk::LEN as u64 <= w.len,
        "the mapping ({:#x} bytes, answer at {:#x}) does not fit {id}'s BAR 2 of {size:#x} bytes",
        w.len,
        w.offset
    );
    let file = backing_file(&mut q, &id)?;
    walk_until_found(&mut q, scratch, w, size, &file).map_err(|e| {
        // The guest spins until an answer comes: say it failed.
        let failed = ptwalk::Answer {
            status: ptwalk::FAILED,
            ..Default::default()
        };
        match answer(&file, w.offset, w.nonce, &failed) {
            Ok(()) => e,
            Err(a) => e.context(format!("and the guest could not be told: {a:#}")),
        }
    })
}

/// The counts of the walk `w` asks for, if the page tables at `p` are the
/// asking process's: those map its answer slot (VA+OFFSET) to the BAR's
/// (PHYS+OFFSET). Otherwise (another process's, or the kernel's, were on
/// the vCPU) why not.
fn askers_walk(
    mem: &mut impl PhysMem,
    p: Paging,
    w: &PtWalk,
    bar: &Range<u64>,
) -> Result<Result<Counts, String>> {
    let (slot, want) = (w.va + w.offset, w.phys + w.offset);
    match translate(mem, p, slot)? {
        Some(pa) if pa == want => Ok(Ok(walk(mem, p, w.va..w.va + w.len, bar)?)),
        other => Ok(Err(format!("{slot:#x} maps to {other:x?}, not {want:#x}"))),
    }
}

/// Walks until a walk is the asking process's (see [`carry_out`]), and
/// answers with it.
fn walk_until_found(q: &mut Qmp, scratch: &Path, w: &PtWalk, size: u64, file: &Path) -> Result<()> {
    let bar = w.phys..w.phys + size;
    let mut last = String::new();
    for tries in 1..=TRIES {
        let found = stopped(q, |q| {
            let regs = q.execute(
                "human-monitor-command",
                json!({ "command-line": "info registers", "cpu-index": w.cpu }),
            )?;
            let regs = Regs::parse(regs.as_str().context("info registers: not text")?)?;
            let p = regs.paging()?;
            let mut mem = QmpMem {
                q,
                file: scratch,
                cache: HashMap::new(),
            };
            let c = match askers_walk(&mut mem, p, w, &bar)? {
                Ok(c) => c,
                Err(why) => return Ok(Err(format!("CR3 {:#x}: {why}", regs.cr3))),
            };
            let a = ptwalk::Answer {
                status: ptwalk::OK,
                entries: c.into,
                elsewhere: c.elsewhere,
                tries: u64::from(tries),
            };
            // Written while the guest is stopped: it sees all of it at once.
            answer(file, w.offset, w.nonce, &a)?;
            Ok(Ok((c, mem.cache.len())))
        })?;
        match found {
            Ok((c, tables)) => {
                println!(
                    "# host: ptwalk vCPU {}: {:#x}+{:#x}: {} 4K, {} 2M, {} 1G entries into BAR 2, \
                     {} elsewhere ({tables} tables read, walk {tries} of {TRIES})",
                    w.cpu, w.va, w.len, c.into[0], c.into[1], c.into[2], c.elsewhere
                );
                return Ok(());
            }
            Err(why) => {
                println!(
                    "# host: ptwalk vCPU {}: not the asking process: {why}",
                    w.cpu
                );
                last = why;
                // Not a synchronisation: time for the guest's scheduler
                // to put the process back on its vCPU.
                std::thread::sleep(Duration::from_millis(10 * u64::from(tries)));
            }
        }
    }
    bail!(
        "none of {TRIES} walks of vCPU {}'s page tables was the asking process's (last: {last})",
        w.cpu
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guest-physical memory of page tables only; reading a table that is
    /// not there is an error (the walker read outside the range).
    #[derive(Default)]
    struct Fake {
        tables: HashMap<u64, [u64; ENTRIES]>,
        reads: usize,
    }

    impl PhysMem for Fake {
        fn table(&mut self, pa: u64) -> Result<[u64; ENTRIES]> {
            self.reads += 1;
            self.tables
                .get(&pa)
                .copied()
                .with_context(|| format!("no table at {pa:#x}"))
        }
    }

    impl Fake {
        fn set(&mut self, table: u64, i: usize, e: u64) {
            self.tables.entry(table).or_insert([0; ENTRIES])[i] = e;
        }
    }

    const G: u64 = 1 << 30;
    const M2: u64 = 2 << 20;
    const K4: u64 = 4096;
    /// The BAR: 4 GiB at 64 GiB.
    const BAR: Range<u64> = 64 * G..68 * G;
    const PML4: u64 = 0x1000;
    const PDPT: u64 = 0x2000;
    const PD: u64 = 0x3000;
    const PT: u64 = 0x4000;
    const PD2: u64 = 0x5000;
    const PT2: u64 = 0x6000;
    /// Present, writable, user.
    const RWU: u64 = 0x7;

    fn paging() -> Paging {
        Paging {
            root: PML4,
            levels: 4,
        }
    }

    /// Virtual addresses from 0x7f00_0000_0000 (PML4 slot 254):
    /// - PDPT slot 0: a PD with, at slot 0, a PT of 4K entries: slots
    ///   0..16 into the BAR, 16 not present, 17 elsewhere (RAM), the rest
    ///   not present; slots 1..4 2 MiB leaves into the BAR, 4 not
    ///   present, 5 a 2 MiB leaf elsewhere;
    /// - PDPT slot 1: a 1 GiB leaf into the BAR;
    /// - PDPT slot 2: not present;
    /// - PDPT slot 3: a PD with 2 MiB leaves into the BAR at 0..2 and a PT
    ///   at 2 with 4K entries into the BAR at 0..512.
    fn image() -> (Fake, u64) {
        let base = 254 << 39;
        let mut m = Fake::default();
        m.set(PML4, 254, PDPT | RWU);
        m.set(PDPT, 0, PD | RWU);
        m.set(PD, 0, PT | RWU);
        for i in 0..16 {
            m.set(PT, i, (BAR.start + i as u64 * K4) | RWU);
        }
        // Not present, though an address is there.
        m.set(PT, 16, BAR.start + 16 * K4);
        m.set(PT, 17, 0x80_0000 | RWU);
        for i in 1..4 {
            m.set(PD, i, (BAR.start + i as u64 * M2) | PS | RWU);
        }
        m.set(PD, 5, 0x20_0000 | PS | RWU);
        m.set(PDPT, 1, (BAR.start + G) | PS | RWU);
        m.set(PDPT, 3, PD2 | RWU);
        m.set(PD2, 0, (BAR.start + 2 * G) | PS | RWU);
        m.set(PD2, 1, (BAR.start + 2 * G + M2) | PS | RWU);
        m.set(PD2, 2, PT2 | RWU);
        for i in 0..ENTRIES {
            m.set(PT2, i, (BAR.start + 2 * G + 2 * M2 + i as u64 * K4) | RWU);
        }
        (m, base)
    }

    fn counts(into: [u64; 3], elsewhere: u64) -> Counts {
        Counts { into, elsewhere }
    }

    #[test]
    fn counts_leaves_of_every_size() {
        let (mut m, base) = image();
        let c = walk(&mut m, paging(), base..base + 4 * G, &BAR).unwrap();
        assert_eq!(c, counts([16 + 512, 3 + 2, 1], 2));
    }

    #[test]
    fn a_range_from_mid_table_to_mid_table() {
        let (mut m, base) = image();
        // From PT slot 8 to the middle of the 2 MiB leaf at PD slot 2.
        let c = walk(&mut m, paging(), base + 8 * K4..base + 2 * M2 + 5, &BAR).unwrap();
        assert_eq!(c, counts([8, 2, 0], 1));
        // One page at the end of PT2, then PD2's slot 3 (not present).
        let at = base + 3 * G + 3 * M2 - K4;
        let c = walk(&mut m, paging(), at..at + 2 * K4, &BAR).unwrap();
        assert_eq!(c, counts([1, 0, 0], 0));
        // Only the hole: nothing, and no table below the PDPT is read.
        m.reads = 0;
        let c = walk(&mut m, paging(), base + 2 * G..base + 3 * G, &BAR).unwrap();
        assert_eq!(c, counts([0, 0, 0], 0));
        assert_eq!(m.reads, 2);
    }

    #[test]
    fn reads_only_the_tables_under_the_range() {
        let (mut m, base) = image();
        // The 1 GiB leaf alone: PML4 and PDPT; the PDs are never read.
        m.tables.remove(&PD);
        m.tables.remove(&PD2);
        let c = walk(&mut m, paging(), base + G..base + 2 * G, &BAR).unwrap();
        assert_eq!(c, counts([0, 0, 1], 0));
        // The walker does read what is under the range.
        let e = walk(&mut m, paging(), base..base + 2 * G, &BAR).unwrap_err();
        assert!(e.to_string().contains("no table at 0x3000"), "{e}");
    }

    #[test]
    fn a_range_across_top_level_entries() {
        let (mut m, base) = image();
        // The last 4K of PML4 slot 253 (not present) into slot 254.
        let c = walk(&mut m, paging(), base - K4..base + K4, &BAR).unwrap();
        assert_eq!(c, counts([1, 0, 0], 0));
    }

    #[test]
    fn translates_through_every_leaf_size() {
        let (mut m, base) = image();
        let t = |m: &mut Fake, va| translate(m, paging(), va).unwrap();
        assert_eq!(t(&mut m, base + 5 * K4 + 3), Some(BAR.start + 5 * K4 + 3));
        assert_eq!(t(&mut m, base + 16 * K4), None);
        assert_eq!(t(&mut m, base + 3 * M2 + 77), Some(BAR.start + 3 * M2 + 77));
        assert_eq!(t(&mut m, base + G + 12345), Some(BAR.start + G + 12345));
        assert_eq!(t(&mut m, base + 2 * G), None);
        assert_eq!(t(&mut m, base - K4), None);
    }

    #[test]
    fn huge_leaf_addresses_drop_the_pat_bit() {
        // Bit 12 of a 2 MiB or 1 GiB leaf is PAT, not an address bit.
        let (mut m, base) = image();
        m.set(PD, 1, (BAR.start + M2) | PS | RWU | 1 << 12 | 1 << 63);
        assert_eq!(
            translate(&mut m, paging(), base + M2).unwrap(),
            Some(BAR.start + M2)
        );
    }

    #[test]
    fn reserved_ps_and_kernel_ranges_are_refused() {
        let (mut m, base) = image();
        m.set(PML4, 254, PDPT | PS | RWU);
        let e = walk(&mut m, paging(), base..base + K4, &BAR).unwrap_err();
        assert!(e.to_string().contains("PS set"), "{e}");
        let e = walk(&mut m, paging(), 0xffff_8000_0000_0000..u64::MAX, &BAR).unwrap_err();
        assert!(
            e.to_string().contains("not a range of user addresses"),
            "{e}"
        );
        assert!(walk(&mut m, paging(), base..base, &BAR).is_err());
    }

    #[test]
    fn five_levels() {
        let (mut m, base) = image();
        // A PML5 whose slot 0 is the PML4 of the image.
        m.set(0x9000, 0, PML4 | RWU);
        let p = Paging {
            root: 0x9000,
            levels: 5,
        };
        let c = walk(&mut m, p, base..base + 4 * G, &BAR).unwrap();
        assert_eq!(c, counts([16 + 512, 5, 1], 2));
    }

    /// `info registers` of QEMU 7.2 (TCG, x86-64, user mode), cut.
    const REGS: &str =
        "RAX=0000000000000000 RBX=00007ffd4c1c5e28 RCX=0000000000000001 RDX=0000000000000000
RIP=000055a1c0b0f1e2 RFL=00000246 [---Z-P-] CPL=3 II=0 A20=1 SMM=0 HLT=0
ES =0000 0000000000000000 00000000 00000000
CS =0033 0000000000000000 ffffffff 00a0fb00 DPL=3 CS64 [-RA]
GDT=     fffffe0000001000 0000007f
IDT=     fffffe0000000000 00000fff
CR0=80050033 CR2=00007f2330c48000 CR3=0000000102e4a005 CR4=00350ef0
DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000
DR6=00000000ffff0ff0 DR7=0000000000000400
EFER=0000000000000d01
";

    #[test]
    fn reads_control_registers() {
        let r = Regs::parse(REGS).unwrap();
        assert_eq!(r.cr0, 0x8005_0033);
        assert_eq!(r.cr3, 0x1_02e4_a005);
        assert_eq!(r.efer, 0xd01);
        // The low bits (flags, or the PCID with CR4.PCIDE) are not the
        // address.
        assert_eq!(
            r.paging().unwrap(),
            Paging {
                root: 0x1_02e4_a000,
                levels: 4
            }
        );
        let la57 = Regs {
            cr4: r.cr4 | 1 << 12,
            ..r
        };
        assert_eq!(la57.paging().unwrap().levels, 5);
        let real = Regs { cr0: 0x10, ..r };
        assert!(real.paging().is_err());
        let e = Regs::parse("CR0=80050033 CR3=0").unwrap_err();
        assert!(e.to_string().contains("no CR4"), "{e}");
    }

    #[test]
    fn only_the_askers_page_tables_are_counted() {
        let (mut m, base) = image();
        // The asker maps the BAR's first 4 GiB from `base`; its answer
        // slot is in the 1 GiB leaf.
        let w = PtWalk {
            cpu: 0,
            va: base,
            len: 4 * G,
            phys: BAR.start,
            offset: G + 0x1000,
            nonce: 1,
        };
        assert_eq!(
            askers_walk(&mut m, paging(), &w, &BAR).unwrap(),
            Ok(counts([528, 5, 1], 2))
        );
        // Another process: nothing at the slot.
        let other = Paging {
            root: 0x8000,
            levels: 4,
        };
        m.set(0x8000, 0, 0);
        let why = askers_walk(&mut m, other, &w, &BAR).unwrap().unwrap_err();
        assert!(why.contains("maps to None"), "{why}");
        // Or something other than the BAR's page there.
        let shifted = PtWalk {
            phys: BAR.start + G,
            ..w
        };
        let why = askers_walk(&mut m, paging(), &shifted, &BAR)
            .unwrap()
            .unwrap_err();
        assert!(why.contains("not 0x1080001000"), "{why}");
    }

    #[test]
    fn a_stopped_guest_always_runs_again() {
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::net::UnixStream;
        let (client, mut server) = UnixStream::pair().unwrap();
        let mut heard = BufReader::new(server.try_clone().unwrap());
        // Greeting, then the replies to qmp_capabilities, stop, pmemsave
        // (an error), cont.
        server
            .write_all(
                b"{\"QMP\": {}}\n{\"return\": {}}\n{\"return\": {}}\n\
                  {\"error\": {\"desc\": \"bad address\"}}\n{\"return\": {}}\n",
            )
            .unwrap();
        let mut q = Qmp::handshake(client).unwrap();
        let e = stopped(&mut q, |q| q.execute("pmemsave", json!({}))).unwrap_err();
        assert!(format!("{e:#}").contains("bad address"), "{e:#}");
        let cmds: Vec<String> = (0..4)
            .map(|_| {
                let mut l = String::new();
                heard.read_line(&mut l).unwrap();
                serde_json::from_str::<Value>(&l).unwrap()["execute"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(cmds, ["qmp_capabilities", "stop", "pmemsave", "cont"]);
    }

    #[test]
    fn finds_the_device_by_its_bar() {
        let pci = json!([{ "bus": 0, "devices": [
            { "qdev_id": "", "regions": [] },
            { "qdev_id": "", "regions": [], "pci_bridge": { "bus": { "devices": [
                { "qdev_id": "shm0", "regions": [
                    { "bar": 0, "type": "memory", "address": 0xfe00_0000u64, "size": 256 },
                    { "bar": 2, "type": "memory", "address": 0x4_0000_0000u64, "size": 4u64 << 20 },
                ] },
            ] } } },
            { "qdev_id": "shm1", "regions": [
                { "bar": 2, "type": "memory", "address": 0x8_0000_0000u64, "size": 8u64 << 20 },
            ] },
        ] }]);
        assert_eq!(
            bar2_device(&pci, 0x4_0000_0000),
            Some(("shm0".into(), 4 << 20))
        );
        assert_eq!(
            bar2_device(&pci, 0x8_0000_0000),
            Some(("shm1".into(), 8 << 20))
        );
        assert_eq!(bar2_device(&pci, 0xfe00_0000), None);
    }
}
