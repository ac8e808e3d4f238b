//! QEMU's own ivshmem-doorbell device as a peer of the server.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::ServerProc;
use ivshmem_proto::Event;

const QEMU: &str = "qemu-system-x86_64";

fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(QEMU))
        .find(|p| p.is_file())
}

/// Kills QEMU on drop and shows its stderr if the test failed.
struct Qemu(Option<Child>);

impl Qemu {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let _ = child.kill();
        let out = child.wait_with_output();
        if let (Ok(out), true) = (out, std::thread::panicking()) {
            eprintln!(
                "--- qemu stderr ---\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn qemu_ivshmem_doorbell_is_a_peer() {
    let Some(qemu) = find_qemu() else {
        eprintln!("SKIP: qemu_ivshmem_doorbell_is_a_peer: {QEMU} not found in PATH or /usr/bin");
        return;
    };
    let s = ServerProc::start(&["-n", "2"]);
    let mut observer = s.connect(2);
    assert_eq!(observer.id(), 0);

    let chardev = format!("socket,path={},id=ch", s.sock.display());
    let mut vm = Qemu(Some(
        Command::new(&qemu)
            .args([
                "-M",
                "pc",
                "-accel",
                "tcg",
                "-nodefaults",
                "-display",
                "none",
                "-S",
            ])
            .args(["-chardev", &chardev])
            .args(["-device", "ivshmem-doorbell,chardev=ch,vectors=2"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run qemu"),
    ));

    // QEMU realizes the device and reads the handshake: it joins as peer 1
    // with two vectors.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(Some(st)) = vm.child().try_wait() {
            panic!("qemu exited early with {st}");
        }
        match observer
            .next_event_timeout(Some(left.min(Duration::from_millis(200))))
            .unwrap()
        {
            Some(e) => seen.push(e),
            None if Instant::now() >= deadline => panic!("qemu never joined; got {seen:?}"),
            None => {}
        }
    }
    assert_eq!(
        seen,
        [
            Event::PeerVector { peer: 1, vector: 0 },
            Event::PeerVector { peer: 1, vector: 1 }
        ]
    );

    // A client connecting now sees QEMU among the peers, with 2 vectors.
    let late = s.connect(2);
    assert_eq!(late.peers().get(&1).map(Vec::len), Some(2));
    assert_eq!(late.peers().get(&0).map(Vec::len), Some(2));
    // Ringing QEMU's vectors is accepted (no guest runs to notice).
    late.ring(1, 0).unwrap();
    late.ring(1, 1).unwrap();
    drop(late);
    assert!(matches!(
        observer
            .next_event_timeout(Some(Duration::from_secs(5)))
            .unwrap(),
        Some(Event::PeerVector { peer: 2, .. })
    ));

    // QEMU dies: everyone hears that peer 1 left.
    vm.child().kill().unwrap();
    vm.child().wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match observer.next_event_timeout(Some(left)).unwrap() {
            Some(Event::PeerLeft { peer: 1, vectors }) => {
                assert_eq!(vectors, 2);
                break;
            }
            Some(_) => {} // peer 2's remaining join/leave messages
            None => panic!("no leave announcement for QEMU"),
        }
    }
    assert!(!observer.peers().contains_key(&1));
}
