//! A hex dump in the format of `hexdump -C`, fed in pieces.

use std::io::{self, Write};

const LINE: usize = 16;

/// Writes bytes fed to it as `hexdump -C` would print them, with offsets
/// counted from `start`: 16 bytes a line in hex and as ASCII, a line equal
/// to the previous one squeezed into `*` (unless told not to), and the end
/// offset on the last line.
#[derive(Debug)]
pub struct HexDump<W: Write> {
    out: W,
    squeeze: bool,
    /// Offset of the first byte of `line`.
    offset: u64,
    line: [u8; LINE],
    filled: usize,
    /// The previous full line, if one was printed or squeezed.
    prev: Option<[u8; LINE]>,
    /// Whether `*` was printed for the current run of equal lines.
    starred: bool,
    /// Whether anything was fed.
    any: bool,
}

impl<W: Write> HexDump<W> {
    /// A dump whose first byte is at `start`; `squeeze` as hexdump's
    /// default (no `-v`).
    pub fn new(out: W, start: u64, squeeze: bool) -> Self {
        Self {
            out,
            squeeze,
            offset: start,
            line: [0; LINE],
            filled: 0,
            prev: None,
            starred: false,
            any: false,
        }
    }

    /// Dumps `bytes`, the ones after those fed before.
    pub fn feed(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        self.any |= !bytes.is_empty();
        while !bytes.is_empty() {
            let n = (LINE - self.filled).min(bytes.len());
            self.line[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == LINE {
                self.full_line()?;
            }
        }
        Ok(())
    }

    fn full_line(&mut self) -> io::Result<()> {
        if self.squeeze && self.prev == Some(self.line) {
            if !self.starred {
                writeln!(self.out, "*")?;
                self.starred = true;
            }
        } else {
            let line = self.line;
            self.print(&line)?;
            self.prev = Some(line);
            self.starred = false;
        }
        self.offset += LINE as u64;
        self.filled = 0;
        Ok(())
    }

    fn print(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = format!("{:08x} ", self.offset);
        for i in 0..LINE {
            if i % 8 == 0 {
                s.push(' ');
            }
            match bytes.get(i) {
                Some(b) => s.push_str(&format!("{b:02x} ")),
                None => s.push_str("   "),
            }
        }
        s.push_str(" |");
        s.extend(bytes.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        s.push('|');
        writeln!(self.out, "{s}")
    }

    /// Prints the last, partial line and the end offset; returns the
    /// writer. Nothing at all is printed for no bytes.
    pub fn finish(mut self) -> io::Result<W> {
        if self.filled > 0 {
            let line = self.line;
            self.print(&line[..self.filled])?;
            self.offset += self.filled as u64;
        }
        if self.any {
            writeln!(self.out, "{:08x}", self.offset)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(start: u64, squeeze: bool, pieces: &[&[u8]]) -> String {
        let mut d = HexDump::new(Vec::new(), start, squeeze);
        for p in pieces {
            d.feed(p).unwrap();
        }
        String::from_utf8(d.finish().unwrap()).unwrap()
    }

    #[test]
    fn format_of_hexdump_c() {
        assert_eq!(
            dump(0, true, &[b"hello, ivshmem\n", b"\x00\x01\x7f\x80 ~"]),
            "00000000  68 65 6c 6c 6f 2c 20 69  76 73 68 6d 65 6d 0a 00  |hello, ivshmem..|\n\
             00000010  01 7f 80 20 7e                                    |... ~|\n\
             00000015\n"
        );
    }

    #[test]
    fn squeezes_repeated_lines() {
        let zeros = [0u8; 64];
        let want = "00001000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n\
                    *\n\
                    00001040  61                                                |a|\n\
                    00001041\n";
        assert_eq!(dump(0x1000, true, &[&zeros[..5], &zeros[5..], b"a"]), want);
        let all = dump(0x1000, false, &[&zeros]);
        assert_eq!(all.lines().count(), 5, "{all}");
        assert!(!all.contains('*'));
    }

    #[test]
    fn nothing_for_nothing() {
        assert_eq!(dump(16, true, &[]), "");
    }

    #[test]
    fn large_offsets_widen() {
        assert!(dump(0x2_0000_0000, true, &[b"x"]).starts_with("200000000  78 "));
    }
}
