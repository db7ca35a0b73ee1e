//! The fuzz targets' inputs as ordinary tests, on the stable toolchain and
//! without libFuzzer: every committed seed (tests/fuzz/seeds/<target>/) and
//! every past finding (tests/fuzz/regressions/<target>/) is run through the
//! same harness the fuzz targets use (tests/fuzz/src/harness.rs), with the
//! same invariants. A finding is fixed when its file passes here.

#[allow(dead_code)]
#[path = "common/rig.rs"]
mod rig;

#[allow(dead_code)]
#[path = "fuzz/src/harness.rs"]
mod harness;

use std::path::Path;

/// Run `f` on every file of tests/fuzz/{seeds,regressions}/<target>/;
/// returns how many there were.
fn replay(target: &str, f: impl Fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut n = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files {
            let data = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&data)));
            assert!(r.is_ok(), "{} fails", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn wire_corpus() {
    assert!(replay("wire", harness::wire) >= 10);
}

#[test]
fn datapath_corpus() {
    let n = replay("datapath", |d| {
        harness::datapath(d).expect("non-empty input");
    });
    assert!(n >= 20);
}

#[test]
fn control_corpus() {
    assert!(replay("control", harness::control) >= 5);
}

/// The seeds cover every forwarding mode and do real work: each sends
/// frames, and between them they create connections in every mode.
#[test]
fn datapath_seeds_exercise_every_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds/datapath");
    let mut conns = [0u64; harness::MODES.len()];
    for e in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        let mode = usize::from(data[0] & 7);
        let s = harness::datapath(&data).unwrap().rig.stats();
        assert!(s.tx_packets > 0);
        conns[mode] += s.conns_created;
    }
    for (m, n) in harness::MODES.iter().zip(conns) {
        assert!(n > 0, "no connection in mode {}", m.name);
    }
}

/// Found by the datapath target: the director answered a ping with id 0,
/// sequence 0 and zero data with an echo reply whose checksum was 0x0000
/// (invalid: the only valid one for an all-zero message is 0xFFFF).
/// Reproducer: tests/fuzz/regressions/datapath/echo-reply-all-zero-checksum.
#[test]
fn echo_reply_to_all_zero_ping_has_a_valid_checksum() {
    use rig::*;
    use rvs::wire::{Icmpv4Packet, Ipv4Packet, PacketBuilder};
    let mut s = harness::Session::new(harness::Config::new(0, 0, true, false, false));
    for data in [&[][..], &[0; 56][..]] {
        let ping = PacketBuilder::new()
            .eth(CLIENT_MAC, DIR0_MAC)
            .ipv4(client(), vip())
            .icmp_echo(0, 0, data)
            .build();
        let out = s.frame(0, false, 2, &ping);
        assert_eq!(out.len(), 1);
        let ip = Ipv4Packet::new_checked(&out[0].1[14..]).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), 0);
        assert!(icmp.verify_checksum());
    }
    s.finish();
}
