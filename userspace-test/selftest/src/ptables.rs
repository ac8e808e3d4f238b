//! The page tables themselves, read through the kernel's page table dump
//! (`CONFIG_PTDUMP_DEBUGFS`: `/sys/kernel/debug/page_tables/current_kernel`,
//! the calling process's tables, user half included): which entries map a
//! range, at which level (`pte`, `pmd`, `pud`) and with which cache bits.
//! What the driver's own fault counter cannot say for sure, these do.

use crate::fixture::{bar_size, faults, load, mtrr_wb_name};
use crate::{Failure, TestResult, check, fail, skip};
use ivshmem::{CacheMode, Device, Mapping};

const PAGE: usize = 4096;
const PMD: usize = 2 << 20;
const PUD: usize = 1 << 30;
const DUMP: &str = "/sys/kernel/debug/page_tables/current_kernel";

/// A run of like entries, as the dump prints it.
#[derive(Debug, Clone)]
struct Run {
    start: usize,
    end: usize,
    /// `USR`, `RW`, `PWT`, `PCD`, `PSE`, `PAT`, ...; empty when not present.
    flags: Vec<String>,
    /// `pte`, `pmd`, `pud`, ...
    level: String,
}

impl Run {
    fn present(&self) -> bool {
        !self.flags.is_empty()
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// The cache bits: PWT, PCD and PAT, those set.
    fn cache_bits(&self) -> Vec<&str> {
        ["PWT", "PCD", "PAT"]
            .into_iter()
            .filter(|b| self.has(b))
            .collect()
    }
}

/// Parses one dump line: `0x...-0x...  SIZE  FLAGS... LEVEL`.
fn parse(line: &str) -> Option<Run> {
    let mut w = line.split_whitespace();
    let (a, b) = w.next()?.split_once('-')?;
    let hex = |s: &str| usize::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    let (start, end) = (hex(a)?, hex(b)?);
    let _size = w.next()?;
    let mut rest: Vec<String> = w.map(str::to_string).collect();
    let level = rest.pop()?;
    // Executable entries print "x" where others print "NX".
    rest.retain(|f| f != "x");
    Some(Run {
        start,
        end,
        flags: rest,
        level,
    })
}

/// The runs of entries of this process within `[start, start + len)`,
/// clipped to it. Skips the test when the kernel has no page table dump.
fn runs(start: usize, len: usize) -> Result<Vec<Run>, Failure> {
    let text = match std::fs::read_to_string(DUMP) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            skip!("{DUMP} is missing: the kernel has no CONFIG_PTDUMP_DEBUGFS")
        }
        Err(e) => fail!("reading {DUMP}: {e}"),
    };
    let end = start + len;
    Ok(text
        .lines()
        .filter_map(parse)
        .filter(|r| r.end > start && r.start < end)
        .map(|mut r| {
            r.start = r.start.max(start);
            r.end = r.end.min(end);
            r
        })
        .collect())
}

/// Checks that present entries of `level` alone map all of
/// `[start, start + len)`, and returns them.
fn all_present_at(start: usize, len: usize, level: &str) -> Result<Vec<Run>, Failure> {
    let runs = runs(start, len)?;
    let mut at = start;
    for r in &runs {
        check!(
            r.start == at,
            "{:#x}..{:#x} is not mapped (next entry at {:#x})",
            at,
            r.start,
            r.start
        );
        check!(
            r.present(),
            "{:#x}..{:#x} is not present after a touch of every page",
            r.start,
            r.end
        );
        check!(
            r.level == level,
            "{:#x}..{:#x} is mapped by {} entries, want {level}",
            r.start,
            r.end,
            r.level
        );
        check!(
            r.has("USR") && r.has("RW"),
            "{:#x}..{:#x}: flags {:?}, want USR RW",
            r.start,
            r.end,
            r.flags
        );
        at = r.end;
    }
    check!(
        at == start + len,
        "{at:#x}..{:#x} is not mapped",
        start + len
    );
    Ok(runs)
}

/// Writes `v` at `off` of `map` and reads it back.
fn poke(map: &Mapping, off: usize, v: u64) -> TestResult {
    map.write_volatile(off, v)?;
    let got: u64 = map.read_volatile(off)?;
    check!(got == v, "read back {got:#x} at {off:#x}, wrote {v:#x}");
    Ok(())
}

/// Each cache mode's bits in the page table entries of a mapping: none
/// for write-back, PWT for write-combining, PCD for uncached-minus (the
/// kernel's PAT layout: WB, WC, UC-, UC, ...).
pub fn pat_page_tables() -> TestResult {
    let (dev_path, size) = bar_size()?;
    let _m = load()?;
    let wb_bits: &[&str] = match mtrr_wb_name(&dev_path)? {
        "write-back" => &[],
        _ => &["PCD"],
    };
    let len = size.min(4 * PMD);
    for (mode, want) in [
        (CacheMode::WriteBack, wb_bits),
        (CacheMode::WriteCombining, &["PWT"][..]),
        (CacheMode::Uncached, &["PCD"][..]),
    ] {
        let dev = Device::open(0)?;
        let map = dev.map_aligned(0, len, mode, PMD)?;
        for off in (0..len).step_by(PAGE) {
            poke(&map, off, off as u64)?;
        }
        let level = if len >= PMD { "pmd" } else { "pte" };
        let runs = all_present_at(map.as_ptr() as usize, len, level)?;
        for r in &runs {
            check!(
                r.cache_bits() == want,
                "{mode:?}: entries {:#x}..{:#x} have cache bits {:?}, want {want:?}",
                r.start,
                r.end,
                r.cache_bits()
            );
        }
        println!(
            "# {mode:?}: {len} bytes in {} run(s) of {level} entries, cache bits {want:?}",
            runs.len()
        );
    }
    Ok(())
}

/// The entry sizes in the page tables: a 2 MiB-aligned mapping is mapped
/// by PMD entries only, one off by a page by PTEs only; on a BAR of 2 GiB
/// or more, a 1 GiB-aligned mapping by PUD entries.
pub fn huge_entries() -> TestResult {
    let (_, size) = bar_size()?;
    let _m = load()?;
    if size < PMD {
        skip!("BAR2 ({size} bytes) cannot hold a 2 MiB entry");
    }
    let dev = Device::open(0)?;
    // PMDs: the first 4 MiB (or all), every page touched.
    let len = size.min(2 * PMD);
    let map = dev.map_aligned(0, len, CacheMode::WriteBack, PMD)?;
    for off in (0..len).step_by(PAGE) {
        poke(&map, off, off as u64)?;
    }
    all_present_at(map.as_ptr() as usize, len, "pmd")?;
    drop(map);
    // One page off: no 2 MiB block lines up, so 4 KiB entries only.
    let map = dev.map_aligned(PAGE as u64, PMD, CacheMode::WriteBack, PMD)?;
    for off in (0..PMD).step_by(PAGE) {
        poke(&map, off, off as u64)?;
    }
    all_present_at(map.as_ptr() as usize, PMD, "pte")?;
    drop(map);
    println!("# 2 MiB-aligned: pmd entries only; one page off: pte entries only");
    if size >= 2 * PUD {
        // PUDs: one write per GiB is enough, each fault maps a whole GiB.
        let len = 2 * PUD;
        let map = dev.map_aligned(0, len, CacheMode::WriteBack, PUD)?;
        for off in (0..len).step_by(PUD) {
            poke(&map, off + PAGE, off as u64)?;
        }
        all_present_at(map.as_ptr() as usize, len, "pud")?;
        println!("# 1 GiB-aligned mapping of 2 GiB: pud entries only");
    }
    Ok(())
}

/// A 1 GiB-aligned mapping of a BAR of 2 GiB or more is populated with
/// 1 GiB (PUD) entries: two touches, two PUD faults, data right.
pub fn huge_pud() -> TestResult {
    let (_, size) = bar_size()?;
    if size < 2 * PUD {
        skip!("BAR2 ({size} bytes) is smaller than 2 GiB");
    }
    let _m = load()?;
    let dev = Device::open(0)?;
    let len = 2 * PUD;
    let map = dev.map_aligned(0, len, CacheMode::WriteBack, PUD)?;
    let before = faults()?;
    for off in (0..len).step_by(PUD) {
        poke(&map, off + PAGE, 0x5055_4400 + (off / PUD) as u64)?;
    }
    let after = faults()?;
    let d = [after.0 - before.0, after.1 - before.1, after.2 - before.2];
    println!(
        "# two touches 1 GiB apart: {} PTE, {} PMD, {} PUD faults",
        d[0], d[1], d[2]
    );
    check!(
        d == [0, 0, 2],
        "want 2 PUD faults and nothing else, got {d:?}"
    );
    // The rest of each GiB is mapped too: no further fault.
    poke(&map, PUD - PAGE, 1)?;
    poke(&map, 2 * PUD - PAGE, 2)?;
    let again = faults()?;
    check!(
        again == after,
        "touching inside the 1 GiB entries faulted: {after:?} -> {again:?}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dump_lines() {
        let r = parse("0x00007f0000000000-0x00007f0000400000           4M     USR RW     PCD PSE         NX pmd").unwrap();
        assert_eq!(
            (r.start, r.end, r.level.as_str()),
            (0x7f00_0000_0000, 0x7f00_0040_0000, "pmd")
        );
        assert!(r.present() && r.has("PSE"));
        assert_eq!(r.cache_bits(), ["PCD"]);
        let r = parse(
            "0x0000000000000000-0x0000000000400000           4M                               pte",
        )
        .unwrap();
        assert!(!r.present());
        let r = parse("0x0000555555554000-0x0000555555556000           8K     USR ro                     x  pte").unwrap();
        assert_eq!(r.flags, ["USR", "ro"]);
        assert!(parse("---[ User Space ]---").is_none());
    }
}
