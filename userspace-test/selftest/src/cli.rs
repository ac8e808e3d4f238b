//! Selftests of the `ivshmem` command (`userspace/ivshmem-cli`): the real
//! binary, run as a user would, checked against the device through the
//! library (INFO, mmap, rings) and against what the host wrote.

use crate::data;
use crate::fixture::{Bell, bell_with, expect_events, find, monotonic_ns};
use crate::{Failure, TestResult, check, fail, skip};
use guest_sys::{self as sys, Loaded};
use ivshmem::{CacheMode, Device, Info};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the command may be: the runner's initramfs, a Debian install.
const PLACES: [&str; 2] = ["/bin/ivshmem", "/usr/bin/ivshmem"];
const PAT_LIST: &str = "/sys/kernel/debug/x86/pat_memtype_list";

fn binary() -> Result<&'static str, Failure> {
    match PLACES.iter().find(|p| Path::new(p).exists()) {
        Some(p) => Ok(p),
        None => skip!("no ivshmem command in this guest (vmrun --cli, IVSHMEM_CLI)"),
    }
}

/// How a run of the command ended.
struct Run {
    code: i32,
    out: Vec<u8>,
    err: String,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }
}

/// Runs `ivshmem ARGS` (as `uid` if given), with `input` on stdin, and
/// shows the run in the KTAP diagnostics.
fn run_as(args: &[&str], input: Option<&[u8]>, uid: Option<u32>) -> Result<Run, Failure> {
    let run = match uid {
        Some(uid) => run_unprivileged(args, uid)?,
        None => {
            let mut child = Command::new(binary()?)
                .args(args)
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(bytes) = input {
                let mut stdin = child.stdin.take().expect("piped");
                // The command may refuse early and close its end: not our error.
                let _ = stdin.write_all(bytes);
            }
            let out = child.wait_with_output()?;
            let Some(code) = out.status.code() else {
                fail!("`ivshmem {}` died: {}", args.join(" "), out.status);
            };
            Run {
                code,
                out: out.stdout,
                err: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }
    };
    let who = uid.map(|u| format!(" (uid {u})")).unwrap_or_default();
    println!("# $ ivshmem {}{who}: exit {}", args.join(" "), run.code);
    // KTAP is text: control characters (a --raw dump's NULs) are escaped.
    for l in run.text().lines().take(12) {
        let shown: String = l
            .chars()
            .map(|c| {
                if c.is_control() && c != '\t' {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        println!("#   {shown}");
    }
    for l in run.err.lines().take(12) {
        println!("#   stderr: {l}");
    }
    Ok(run)
}

/// Runs `ivshmem ARGS` as user and group `uid`, its output in files.
/// By hand: in the guest, std's fork-and-exec path (`Command::uid`, and
/// `pre_exec` alone) failed with ENOSYS before running the closures; the
/// plain fork below works.
fn run_unprivileged(args: &[&str], uid: u32) -> Result<Run, Failure> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    let cstr = |s: &str| CString::new(s).map_err(|e| Failure::Fail(e.to_string()));
    let bin = cstr(binary()?)?;
    let argv_c = std::iter::once("ivshmem")
        .chain(args.iter().copied())
        .map(cstr)
        .collect::<Result<Vec<_>, _>>()?;
    let argv: Vec<*const libc::c_char> = argv_c
        .iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (out_path, err_path) = ("/tmp/ivshmem-cli.out", "/tmp/ivshmem-cli.err");
    let out = std::fs::File::create(out_path)?;
    let err = std::fs::File::create(err_path)?;
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: The child only makes async-signal-safe system calls (dup2,
    // setgid, setuid, execv, _exit) on the files, C strings and argv array made
    // before the fork, which the child's copy of memory still holds; it never
    // returns into Rust code that could touch a lock held by another thread.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: In the child, between fork and exec: `null`, `out` and `err`
        // are files open in the parent and so in the child; `bin` and `argv`
        // (NUL-terminated, pointing into `argv_c`) were built before the fork
        // and are alive; execv or _exit ends this path, so it never returns.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(out.as_raw_fd(), 1);
            libc::dup2(err.as_raw_fd(), 2);
            if libc::setgid(uid) != 0 || libc::setuid(uid) != 0 {
                libc::_exit(126);
            }
            libc::execv(bin.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: The `pid` is the child this function just forked and has not
    // reaped yet; `status` is a local int the call writes.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        fail!("waitpid: {}", std::io::Error::last_os_error());
    }
    check!(
        libc::WIFEXITED(status),
        "`ivshmem {}` as uid {uid} died (status {status:#x})",
        args.join(" ")
    );
    let code = libc::WEXITSTATUS(status);
    check!(
        code != 126 && code != 127,
        "could not run ivshmem as uid {uid} (exit {code})"
    );
    Ok(Run {
        code,
        out: std::fs::read(out_path)?,
        err: String::from_utf8_lossy(&std::fs::read(err_path)?).into_owned(),
    })
}

/// Runs the command and requires exit status `code`.
fn expect_as(
    args: &[&str],
    input: Option<&[u8]>,
    uid: Option<u32>,
    code: i32,
) -> Result<Run, Failure> {
    let r = run_as(args, input, uid)?;
    check!(
        r.code == code,
        "`ivshmem {}` exited {}, want {code} (stderr: {:?})",
        args.join(" "),
        r.code,
        r.err
    );
    Ok(r)
}

fn expect(args: &[&str], code: i32) -> Result<Run, Failure> {
    expect_as(args, None, None, code)
}

fn json(r: &Run) -> Result<Value, Failure> {
    serde_json::from_slice(&r.out)
        .map_err(|e| Failure::Fail(format!("not JSON ({e}): {:?}", r.text())))
}

fn pci(info: &Info) -> String {
    let (d, b, s, f) = info.pci;
    format!("{d:04x}:{b:02x}:{s:02x}.{f:x}")
}

/// The features as the driver names them in sysfs (the command must say
/// the same).
fn features(info: &Info) -> String {
    sys::read_trim(format!("/sys/class/misc/ivshmem{}/features", info.index)).unwrap_or_default()
}

/// The module: loaded by the test, or already by udev on the Debian root.
fn load() -> Result<Loaded, Failure> {
    Ok(Loaded::ensure()?.0)
}

fn infos() -> Result<Vec<Info>, Failure> {
    let n = sys::ivshmem_devices()?.len() as u32;
    (0..n).map(|i| Ok(Device::open(i)?.info()?)).collect()
}

/// Checks `ivshmem list` against INFO, with `caches[i]` the expected cache
/// column of device i.
fn check_list(infos: &[Info], caches: &[&str]) -> TestResult {
    let r = expect(&["list"], 0)?;
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    check!(
        lines.len() == infos.len() + 1,
        "list printed {} lines for {} devices",
        lines.len(),
        infos.len()
    );
    let head: Vec<&str> = lines[0].split_whitespace().collect();
    check!(
        head == [
            "DEVICE",
            "PCI",
            "SIZE",
            "IVPOSITION",
            "VECTORS",
            "CACHE",
            "FEATURES"
        ],
        "list header {head:?}"
    );
    for (i, (line, info)) in lines[1..].iter().zip(infos).enumerate() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let ivpos = info.ivposition.map_or("-".into(), |p| p.to_string());
        let want = [
            format!("/dev/ivshmem{i}"),
            pci(info),
            info.size.to_string(),
            ivpos,
            info.vectors.to_string(),
            caches[i].to_string(),
        ];
        check!(
            cols.len() > 6 && cols[..6] == want,
            "list line {i}: {cols:?}, INFO says {want:?}"
        );
        check!(
            cols[6..].join(" ") == features(info),
            "list line {i}: features {:?}, want {:?}",
            cols[6..].join(" "),
            features(info)
        );
    }
    Ok(())
}

/// `list` (table and JSON) matches INFO for every device, needs no access
/// to the nodes, and its cache column follows the device's mappings.
pub fn cli_list() -> TestResult {
    binary()?;
    let devs = sys::ivshmem_devices()?;
    if devs.is_empty() {
        skip!("this guest has no ivshmem device");
    }
    if sys::module_loaded()? {
        println!("# the module was loaded already (udev): listing without it not tried");
    } else {
        let r = expect(&["list"], 0)?;
        check!(
            r.out.is_empty(),
            "list without the module printed {:?}",
            r.text()
        );
        let r = expect(&["list", "--json"], 0)?;
        check!(
            r.text().trim() == "[]",
            "list --json without the module: {:?}",
            r.text()
        );
    }

    let _m = load()?;
    let infos = infos()?;
    let pat = Path::new(PAT_LIST).exists();
    // The driver reserves BAR2 write-back at bind (uncached-minus where an
    // MTRR marks it uncachable).
    let mut wb_long = Vec::new();
    for d in &devs {
        wb_long.push(if pat {
            crate::fixture::mtrr_wb_name(d)?
        } else {
            "?"
        });
    }
    let short = |long: &str| {
        match long {
            "write-back" => "wb",
            "uncached-minus" => "uc-",
            other => other,
        }
        .to_string()
    };
    let idle: Vec<String> = wb_long.iter().map(|l| short(l)).collect();
    let idle: Vec<&str> = idle.iter().map(String::as_str).collect();
    if !pat {
        println!("# no {PAT_LIST}: the cache column reads '?'");
    }
    check_list(&infos, &idle)?;
    for (info, d) in infos.iter().zip(&devs) {
        check!(
            pci(info) == d.address(),
            "INFO of ivshmem{} says {}, sysfs order says {}",
            info.index,
            pci(info),
            d.address()
        );
    }

    let v = json(&expect(&["list", "--json"], 0)?)?;
    let arr = v
        .as_array()
        .ok_or(Failure::Fail("list --json: not an array".into()))?;
    check!(
        arr.len() == infos.len(),
        "list --json: {} entries",
        arr.len()
    );
    for (e, info) in arr.iter().zip(&infos) {
        let want = serde_json::json!({
            "device": format!("/dev/ivshmem{}", info.index),
            "index": info.index,
            "pci": pci(info),
            "size": info.size,
            "ivposition": info.ivposition,
            "vectors": info.vectors,
            "features": features(info),
            "cache": if pat { Value::from(wb_long[info.index as usize]) } else { Value::Null },
        });
        check!(*e == want, "list --json entry {e}, want {want}");
    }

    // Anyone may list: sysfs, not the nodes (mode 0600 here).
    let r = expect_as(&["list"], None, Some(65534), 0)?;
    check!(
        r.text().lines().count() == infos.len() + 1 && r.text().contains("/dev/ivshmem0"),
        "list as nobody: {:?}",
        r.text()
    );

    // The cache column shows the mode of the current mappings, and with
    // none, the last one (kept for the next mapping).
    if pat {
        let dev = Device::open(0)?;
        let map = dev.map(0, 4096, CacheMode::WriteCombining)?;
        let mut caches = idle.clone();
        caches[0] = "wc";
        check_list(&infos, &caches)?;
        let v = json(&expect(&["list", "--json"], 0)?)?;
        check!(
            v[0]["cache"] == "write-combining",
            "list --json while mapped WC: {}",
            v[0]
        );
        drop(map);
        check_list(&infos, &caches)?;
        // A first mapping in another mode replaces it.
        drop(dev.map(0, 4096, CacheMode::WriteBack)?);
        check_list(&infos, &idle)?;
    }
    Ok(())
}

/// `key: value` lines of `info`.
fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Bytes the test puts across the boundary of the second page.
const DUMP_AT: usize = 0x1ff8;
const DUMP_BYTES: &[u8] = b"ivshmem\x00\x01\x02\x7f\x80\xff dump!\n";
/// What `hexdump -C -s 0x1ff8 -n 20` prints for them.
const DUMP_TEXT: &str = "\
00001ff8  69 76 73 68 6d 65 6d 00  01 02 7f 80 ff 20 64 75  |ivshmem...... du|
00002008  6d 70 21 0a                                       |mp!.|
0000200c
";

/// `info` matches INFO, by index, node and link; `dump` shows what was
/// written through mmap and what the host wrote; `write` (argument and
/// stdin) lands in the memory, all or nothing, within the device.
pub fn cli_info_dump_write() -> TestResult {
    binary()?;
    let _m = load()?;
    let (_, Some(p)) = find()? else {
        skip!("no ivshmem-plain device");
    };
    let ps = p.to_string();
    let node = format!("/dev/ivshmem{p}");
    let dev = Device::open(p)?;
    let info = dev.info()?;
    let size = info.size;

    // info
    let f = fields(&expect(&["info", &ps], 0)?.text());
    for (k, want) in [
        ("device", node.clone()),
        ("index", p.to_string()),
        ("pci", pci(&info)),
        ("ivposition", "0".into()),
        ("vectors", "0".into()),
        ("features", "plain".into()),
        ("revision", info.revision.to_string()),
        (
            "subsystem",
            format!("{:04x}:{:04x}", info.subsystem.0, info.subsystem.1),
        ),
    ] {
        check!(
            f.get(k) == Some(&want),
            "info {k}: {:?}, want {want:?}",
            f.get(k)
        );
    }
    let size_field = f.get("size").cloned().unwrap_or_default();
    check!(
        size_field.split_whitespace().next() == Some(&size.to_string()),
        "info size: {size_field:?}, INFO says {size}"
    );
    // By path, and by udev's /dev/ivshmem/by-path/ link, or one like it
    // where there is no udev.
    let udev_link = format!("/dev/ivshmem/by-path/pci-{}", pci(&info));
    let link = if Path::new(&udev_link).exists() {
        println!("# udev made {udev_link}");
        udev_link
    } else {
        let dir = "/tmp/ivshmem-by-path";
        let _ = std::fs::create_dir(dir);
        let link = format!("{dir}/pci-{}", pci(&info));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&node, &link)?;
        link
    };
    for name in [&node, &link] {
        let v = json(&expect(&["info", "--json", name], 0)?)?;
        let want = serde_json::json!({
            "device": name, "index": p, "pci": pci(&info), "size": size,
            "ivposition": 0, "ready": true, "vectors": 0, "features": "plain",
            "revision": info.revision, "subsystem_vendor": info.subsystem.0,
            "subsystem_device": info.subsystem.1,
        });
        let mut got = v.clone();
        if let Some(o) = got.as_object_mut() {
            o.remove("cache");
        }
        check!(got == want, "info --json {name}: {v}, want {want}");
    }

    // dump: bytes written through mmap, across a page boundary.
    let map = dev.map(0, size as usize, CacheMode::WriteBack)?;
    map.write_slice(DUMP_AT, DUMP_BYTES)?;
    let at = format!("{DUMP_AT:#x}");
    let n = DUMP_BYTES.len().to_string();
    let r = expect(&["dump", &ps, &at, &n], 0)?;
    check!(
        r.text() == DUMP_TEXT,
        "dump: {:?}, want {DUMP_TEXT:?}",
        r.text()
    );
    let r = expect(&["dump", &link, &at, &n, "--raw"], 0)?;
    check!(r.out == DUMP_BYTES, "dump --raw: {:?}", r.out);
    // Equal lines are squeezed, unless -v.
    map.write_slice(0x3000, &[0u8; 64])?;
    let r = expect(&["dump", &ps, "0x3000", "64"], 0)?;
    let want = "00003000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|\n*\n00003040\n";
    check!(r.text() == want, "dump of zeros: {:?}", r.text());
    let r = expect(&["dump", "-v", &ps, "0x3000", "64"], 0)?;
    check!(
        r.text().lines().count() == 5 && !r.text().contains('*'),
        "dump -v of zeros: {:?}",
        r.text()
    );
    // What the host wrote into the backing file before boot.
    if sys::setting("cli_host").is_some() {
        let at = format!("{:#x}", data::CLI_HOST_AT);
        let n = data::CLI_HOST_TEXT.len().to_string();
        let r = expect(&["dump", &ps, &at, &n, "--raw"], 0)?;
        check!(
            r.out == data::CLI_HOST_TEXT,
            "the host's text at {at}: the command read {:?}",
            r.text()
        );
    } else {
        println!("# the host wrote no text in this scenario (no ivt_cli_host)");
    }

    // write: an argument, with no newline added.
    let at = data::CLI_GUEST_AT as usize;
    let text = data::CLI_GUEST_TEXT;
    map.write_slice(at, &[0xee; 64])?;
    let ats = format!("{at:#x}");
    expect(
        &[
            "write",
            &ps,
            &ats,
            std::str::from_utf8(text).expect("ASCII"),
        ],
        0,
    )?;
    let mut got = vec![0u8; text.len() + 1];
    map.read_slice(at, &mut got)?;
    check!(
        got[..text.len()] == *text && got[text.len()] == 0xee,
        "after write: {got:?}"
    );
    // write -: standard input, any bytes.
    let input: Vec<u8> = (0..=255u8).chain(*b"\n").collect();
    map.write_slice(0x6000, &vec![0xee; input.len() + 1])?;
    expect_as(&["write", &ps, "0x6000", "-"], Some(&input), None, 0)?;
    let mut got = vec![0u8; input.len() + 1];
    map.read_slice(0x6000, &mut got)?;
    check!(
        got[..input.len()] == input[..] && got[input.len()] == 0xee,
        "after write - : {got:?}"
    );
    // At the end of the device: what fits is written, what does not is
    // refused and leaves the memory alone.
    let end3 = (size - 3).to_string();
    expect(&["write", &ps, &end3, "abc"], 0)?;
    let tail = |m: &ivshmem::Mapping| -> Result<Vec<u8>, Failure> {
        let mut b = [0u8; 3];
        m.read_slice(size as usize - 3, &mut b)?;
        Ok(b.to_vec())
    };
    check!(tail(&map)? == b"abc", "write at the end: {:?}", tail(&map)?);
    for (args, input) in [
        (vec!["write", &ps, &end3, "wxyz"], None),
        (vec!["write", &ps, &end3, "-"], Some(&b"wxyz"[..])),
    ] {
        let r = expect_as(&args, input, None, 1)?;
        check!(r.err.contains("do not fit"), "{args:?}: {:?}", r.err);
        check!(
            tail(&map)? == b"abc",
            "{args:?} changed the memory: {:?}",
            tail(&map)?
        );
    }
    let past = (size + 1).to_string();
    expect(&["write", &ps, &past, "x"], 1)?;
    // dump ranges, overflow included.
    let end8 = (size - 8).to_string();
    for (o, l) in [
        (end8.as_str(), "16"),
        ("0xffffffffffffffff", "2"),
        ("1", "0xffffffffffffffff"),
    ] {
        let r = expect(&["dump", &ps, o, l], 1)?;
        check!(
            r.err.starts_with(&format!("ivshmem: {node}: ")) && r.err.contains("do not fit"),
            "dump {o} {l}: {:?}",
            r.err
        );
        check!(r.out.is_empty(), "dump {o} {l} printed {:?}", r.text());
    }
    let r = expect(&["dump", &ps, &size.to_string(), "0"], 0)?;
    check!(r.out.is_empty(), "dump of 0 bytes printed {:?}", r.text());
    let r = expect(&["dump", &ps, &end3, "3", "--raw"], 0)?;
    check!(r.out == b"abc", "dump of the last bytes: {:?}", r.out);
    drop(map);

    // The cache mode: auto follows the device's mappings; a clash fails.
    let wc = dev.map(0, 4096, CacheMode::WriteCombining)?;
    let r = expect(&["dump", &ps, &format!("{DUMP_AT:#x}"), "20", "--raw"], 0)?;
    check!(r.out == DUMP_BYTES, "dump while mapped WC: {:?}", r.out);
    let r = expect(&["dump", "--cache", "wb", &ps, "0", "16"], 1)?;
    check!(
        r.err.contains("Device or resource busy"),
        "dump --cache wb while mapped WC: {:?}",
        r.err
    );
    if Path::new(PAT_LIST).exists() {
        let f = fields(&expect(&["info", &ps], 0)?.text());
        check!(
            f.get("cache").map(String::as_str) == Some("write-combining"),
            "info while mapped WC: cache {:?}",
            f.get("cache")
        );
    }
    drop(wc);
    Ok(())
}

/// A child `ivshmem wait`, killed if the test gives up on it.
struct Waiter(Option<Child>);

impl Waiter {
    /// Starts `ivshmem ARGS` and returns once it has the device open:
    /// from then on it sees every ring.
    fn start(args: &[&str], node: &str) -> Result<Self, Failure> {
        println!("# $ ivshmem {} &", args.join(" "));
        let child = Command::new(binary()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let fds = format!("/proc/{}/fd", child.id());
        let w = Self(Some(child));
        let open = || {
            std::fs::read_dir(&fds).is_ok_and(|d| {
                d.flatten()
                    .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l == Path::new(node)))
            })
        };
        check!(
            sys::wait_for(10, open),
            "`ivshmem {}` did not open {node} within 10 s",
            args.join(" ")
        );
        Ok(w)
    }

    fn finish(mut self) -> Result<Run, Failure> {
        let out = self.0.take().expect("running").wait_with_output()?;
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            out: out.stdout,
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        println!(
            "# ivshmem wait: exit {}: {:?} {:?}",
            run.code,
            run.text(),
            run.err
        );
        Ok(run)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `ring` reaches this guest's own device (seen by the library); `wait`
/// wakes on the vectors it was told, in text and JSON, and times out with
/// 124.
pub fn cli_ring_wait() -> TestResult {
    binary()?;
    let Bell {
        _m,
        index: b,
        dev,
        info,
        me,
        ..
    } = bell_with(load()?)?;
    let bs = b.to_string();
    let node = format!("/dev/ivshmem{b}");
    let mes = me.to_string();
    check!(
        info.vectors >= 4,
        "the test needs 4 vectors, the device has {}",
        info.vectors
    );

    // ring, heard by another open file.
    let watcher = Device::open(b)?;
    expect(&["ring", &bs, &mes, "1"], 0)?;
    expect_events(&watcher, &[(1, 1)], "ivshmem ring, vector 1")?;
    expect(&["ring", &node, &mes, "3"], 0)?;
    expect_events(&watcher, &[(3, 1)], "ivshmem ring, vector 3")?;

    // wait --vector: a ring on another vector does not wake it.
    let before = monotonic_ns();
    let w = Waiter::start(
        &["wait", &bs, "--vector", "2", "--timeout", "30", "--json"],
        &node,
    )?;
    dev.ring(me, 1)?;
    dev.ring(me, 2)?;
    let r = w.finish()?;
    check!(
        r.code == 0,
        "wait --vector 2 exited {}: {:?}",
        r.code,
        r.err
    );
    let v = json(&r)?;
    let evs = v["events"]
        .as_array()
        .ok_or(Failure::Fail(format!("wait --json: {v}")))?;
    check!(
        v["device"] == node.as_str(),
        "wait --json device: {}",
        v["device"]
    );
    check!(
        evs.len() == 1 && evs[0]["vector"] == 2 && evs[0]["count"] == 1,
        "wait --vector 2 reported {v}"
    );
    let ts = evs[0]["timestamp_ns"].as_u64().unwrap_or(0);
    check!(
        ts >= before && ts <= monotonic_ns(),
        "timestamp {ts} outside the test's window"
    );
    expect_events(&watcher, &[(1, 1), (2, 1)], "the library saw both")?;

    // wait, text, woken by ivshmem ring.
    let w = Waiter::start(&["wait", &node, "--timeout", "30"], &node)?;
    expect(&["ring", &bs, &mes, "3"], 0)?;
    let r = w.finish()?;
    check!(r.code == 0, "wait exited {}: {:?}", r.code, r.err);
    let text = r.text();
    let words: Vec<&str> = text.split_whitespace().collect();
    check!(
        words.len() == 3
            && words[0] == "vector=3"
            && words[1] == "count=1"
            && words[2]
                .strip_prefix("timestamp_ns=")
                .is_some_and(|t| t.parse::<u64>().is_ok()),
        "wait printed {text:?}"
    );
    expect_events(&watcher, &[(3, 1)], "ivshmem ring, vector 3, again")?;

    // Nothing rings: 124 after the timeout, nothing printed.
    let t = Instant::now();
    let r = expect(&["wait", &bs, "--timeout", "0.5"], 124)?;
    let took = t.elapsed();
    check!(r.out.is_empty(), "a timed-out wait printed {:?}", r.text());
    check!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(10),
        "a 0.5 s wait took {took:?}"
    );
    Ok(())
}

/// Errors as coreutils users expect: `ivshmem: PATH: message`, exit 1;
/// usage errors exit 2; permissions (read is enough for info, not for
/// ring); doorbell operations on a plain device.
pub fn cli_errors() -> TestResult {
    binary()?;
    let _m = load()?;
    check!(!sys::node_exists(7), "this guest has an ivshmem7");
    let r = expect(&["info", "7"], 1)?;
    check!(
        r.err == "ivshmem: /dev/ivshmem7: No such file or directory\n" && r.out.is_empty(),
        "info 7: {:?}",
        r.err
    );
    let r = expect(&["dump", "/dev/ivshmem/by-path/pci-none", "0", "1"], 1)?;
    check!(
        r.err == "ivshmem: /dev/ivshmem/by-path/pci-none: No such file or directory\n",
        "dump of a missing link: {:?}",
        r.err
    );
    let r = expect(&["info", "/dev/null"], 1)?;
    check!(
        r.err == "ivshmem: /dev/null: Inappropriate ioctl for device\n",
        "info /dev/null: {:?}",
        r.err
    );
    for args in [
        &[][..],
        &["list", "extra"],
        &["info"],
        &["frobnicate"],
        &["ring", "0", "1", "256"],
        &["ring", "0", "65536", "0"],
        &["dump", "0", "12x", "1"],
        &["dump", "0", "0x10000000000000000", "1"],
        &["wait", "0", "--timeout", "soon"],
        &["wait", "0", "--vector", "256"],
    ] {
        let r = expect(args, 2)?;
        check!(
            r.out.is_empty() && (r.err.starts_with("error: ") || r.err.contains("Usage: ivshmem")),
            "`ivshmem {}`: stdout {:?}, stderr {:?}",
            args.join(" "),
            r.text(),
            r.err
        );
    }
    let r = expect(&["--version"], 0)?;
    check!(
        r.text().trim() == format!("ivshmem {}", env!("CARGO_PKG_VERSION")),
        "--version: {:?}",
        r.text()
    );
    let r = expect(&["--help"], 0)?;
    check!(
        r.text().contains("Exit status") && r.err.is_empty(),
        "--help: {:?}",
        r.text()
    );

    // The node is root's (mode 0600 without udev): others get EACCES.
    let r = expect_as(&["info", "0"], None, Some(65534), 1)?;
    check!(
        r.err == "ivshmem: /dev/ivshmem0: Permission denied\n",
        "info as nobody: {:?}",
        r.err
    );

    // Read permission is enough for info (opened read-only), not for
    // ring (which needs the node writable).
    {
        use std::os::unix::fs::PermissionsExt;
        let node = "/dev/ivshmem0";
        let mode = std::fs::metadata(node)?.permissions().mode();
        std::fs::set_permissions(node, std::fs::Permissions::from_mode(mode | 0o004))?;
        let info = expect_as(&["info", "0"], None, Some(65534), 0);
        let ring = expect_as(&["ring", "0", "0", "0"], None, Some(65534), 1);
        std::fs::set_permissions(node, std::fs::Permissions::from_mode(mode))?;
        let (info, ring) = (info?, ring?);
        check!(
            fields(&info.text()).get("index").map(String::as_str) == Some("0"),
            "info as nobody with read permission: {:?}",
            info.text()
        );
        check!(
            ring.err == "ivshmem: /dev/ivshmem0: Permission denied\n",
            "ring as nobody with read permission only: {:?}",
            ring.err
        );
    }

    let (bell, plain) = find()?;
    if let Some(p) = plain {
        let ps = p.to_string();
        let r = expect(&["ring", &ps, "0", "0"], 1)?;
        check!(
            r.err
                == format!(
                    "ivshmem: /dev/ivshmem{p}: cannot ring peer 0 on vector 0: Operation not supported\n"
                ),
            "ring on a plain device: {:?}",
            r.err
        );
        let r = expect(&["wait", &ps, "--timeout", "1"], 1)?;
        check!(
            r.err.contains("no doorbells"),
            "wait on a plain device: {:?}",
            r.err
        );
    } else {
        println!("# no plain device: ring and wait on one not tried");
    }
    if let Some(b) = bell {
        let bs = b.to_string();
        let n = Device::open(b)?.info()?.vectors;
        let r = expect(
            &["wait", &bs, "--vector", &n.to_string(), "--timeout", "1"],
            1,
        )?;
        check!(
            r.err.contains(&format!("no vector {n}")),
            "wait on vector {n} of {n}: {:?}",
            r.err
        );
    } else {
        println!("# no doorbell device: wait on a missing vector not tried");
    }
    Ok(())
}
