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

#[path = "fuzz/src/tables.rs"]
mod tables;

use std::path::Path;

/// Run `f` on every file of tests/fuzz/{seeds,regressions}/<target>/;
/// returns how many there were.
fn replay(target: &str, mut f: impl FnMut(&[u8])) -> usize {
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

/// The fuzz target reuses connection tables across inputs
/// (`ConnTable::reset`, `Session::recycle`). A table that ran an input,
/// was reset, ran another and was reset again must answer the first input
/// exactly as it did when new: the same frames, counters and connections.
/// (The same table, not two new ones: each table draws its own hash seed,
/// and which persistence templates a sparse poll expires depends on the
/// shard their hash puts them in.) Every seed and finding, each with a
/// different one in between.
#[test]
fn a_reset_connection_table_answers_as_a_new_one() {
    use harness::{DatapathInput, Session};
    use rvs::conn::ConnTable;
    let mut inputs = Vec::new();
    replay("datapath", |d| {
        inputs.push(DatapathInput::decode(d).unwrap())
    });
    let run = |input: &DatapathInput, table: ConnTable| {
        let mut s = Session::on_table(input.config, table);
        let sent = s.run(input.records.clone());
        // Without `expires_ms`: the listing counts it from the real clock.
        let mut conns: serde_json::Value =
            serde_json::from_str(&s.rig.ctl.handle_line(r#"{"cmd":"connections"}"#)).unwrap();
        for c in conns["connections"].as_array_mut().unwrap() {
            c.as_object_mut().unwrap().remove("expires_ms");
        }
        let stats = s.rig.stats();
        (
            sent,
            stats,
            conns,
            s.into_table().expect("table held by nobody"),
        )
    };
    for (k, x) in inputs.iter().enumerate() {
        let max = if x.config.small_table() { 4 } else { 1000 };
        let (sent_new, stats_new, conns_new, table) = run(x, ConnTable::new(max, 1));
        // Another input, with x's table size, in between.
        let mut y = inputs[(k + 1) % inputs.len()].clone();
        y.config.0 = y.config.0 & !0x40 | x.config.0 & 0x40;
        let (_, between, _, table) = run(&y, table);
        assert!(between.rx_packets > 0);
        let (sent_again, stats_again, conns_again, _) = run(x, table);
        assert_eq!(sent_again, sent_new, "input {k}: frames sent");
        assert_eq!(stats_again, stats_new, "input {k}: counters");
        assert_eq!(conns_again, conns_new, "input {k}: connections");
    }
    assert!(inputs.len() >= 20);
}

#[test]
fn sync_corpus() {
    assert!(replay("sync", tables::sync) >= 4);
}

#[test]
fn region_corpus() {
    assert!(
        replay("region", |d| {
            let _ = tables::region(d);
        }) >= 3
    );
    // The seed cut from a real table file: both connections taken over.
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds/region/two-nat-established");
    let r = tables::region(&std::fs::read(seed).unwrap());
    assert_eq!((r.adopted, r.no_dest), (2, 0), "{r:?}");
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

/// Found by the datapath target: the director answered ARP requests and
/// pings from zero, broadcast, multicast or its own source MACs, so the
/// answer went to that address (a reflection, or a loop to itself).
/// Reproducer: tests/fuzz/regressions/datapath/arp-reply-to-zero-sender-hw.
#[test]
fn arp_and_pings_from_odd_macs_are_dropped_unanswered() {
    use rig::*;
    use rvs::wire::{MacAddr, PacketBuilder};
    let mut s = harness::Session::new(harness::Config::new(0, 0, true, false, false));
    let odd = [
        MacAddr::ZERO,
        MacAddr::BROADCAST,
        MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        DIR0_MAC,
        DIR1_MAC,
    ];
    for (i, &m) in odd.iter().enumerate() {
        let arp = PacketBuilder::new().arp_request(m, client(), vip()).build();
        assert!(s.frame(0, false, 1, &arp).is_empty(), "ARP from {m}");
        let ping = PacketBuilder::new()
            .eth(m, DIR0_MAC)
            .ipv4(client(), vip())
            .icmp_echo(7, i as u16, b"x")
            .build();
        assert!(s.frame(0, false, 1, &ping).is_empty(), "ping from {m}");
        assert_eq!(s.rig.drops("bad_source_mac"), 2 * (i as u64 + 1));
    }
    // A sane Ethernet source with an odd ARP sender address: the reply
    // would go to the ARP sender, so it is refused too.
    for (i, &m) in odd.iter().enumerate() {
        let mut arp = PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), vip())
            .build();
        arp[22..28].copy_from_slice(&m.0);
        assert!(s.frame(0, false, 1, &arp).is_empty(), "ARP sender {m}");
        assert_eq!(s.rig.drops("arp_bad_sender"), i as u64 + 1);
    }
    // The same from a sane client is answered.
    let arp = PacketBuilder::new()
        .arp_request(CLIENT_MAC, client(), vip())
        .build();
    let out = s.frame(0, false, 1, &arp);
    assert_eq!(out.len(), 1);
    assert_eq!(macs(&out[0].1), (CLIENT_MAC, DIR0_MAC));
    s.finish();
}

/// Found by the datapath target: the neighbour table learnt from any ARP
/// operation and from a zero or own sender MAC, so one forged ARP naming a
/// real server sent its traffic to 00:00:00:00:00:00 (or back to the
/// director). Reproducer:
/// tests/fuzz/regressions/datapath/neighbour-learnt-as-zero-mac.
#[test]
fn forged_arp_does_not_poison_a_real_servers_entry() {
    use rig::*;
    use rvs::wire::{MacAddr, PacketBuilder, TcpFlags};
    let mut s = harness::Session::new(harness::Config::new(0, 0, true, false, false));
    let evil = MacAddr([0x02, 0x66, 0x66, 0x66, 0x66, 0x66]);
    for (rs_mac, rs) in [(RS1_MAC, rs1()), (RS2_MAC, rs2())] {
        for sha in [MacAddr::ZERO, DIR1_MAC] {
            let reply = PacketBuilder::new()
                .arp_reply(rs_mac, rs, DIR1_MAC, dir1())
                .build();
            let mut reply = reply;
            reply[22..28].copy_from_slice(&sha.0);
            assert!(s.frame(1, false, 1, &reply).is_empty());
        }
        // An ARP operation other than request/reply (3, RARP request),
        // from a plausible MAC, is not learnt from either.
        let mut rarp = PacketBuilder::new().arp_request(evil, rs, dir1()).build();
        rarp[20..22].copy_from_slice(&3u16.to_be_bytes());
        assert!(s.frame(1, false, 1, &rarp).is_empty());
    }
    assert_eq!(s.rig.drops("arp_bad_sender"), 4);
    // New connections to both servers still go to their real MACs.
    let mut seen = std::collections::HashSet::new();
    for sport in 40000..40004 {
        let out = s.frame(
            0,
            false,
            1,
            &client_tcp(sport, TcpFlags::SYN, b"", DIR0_MAC),
        );
        assert_eq!(out.len(), 1, "SYN {sport} forwarded");
        let (dst, _) = macs(&out[0].1);
        let (_, _, rip, _, _) = endpoints(&out[0].1);
        let want = if rip == rs1() { RS1_MAC } else { RS2_MAC };
        assert_eq!(dst, want, "to {rip}");
        seen.insert(rip);
    }
    assert_eq!(seen.len(), 2, "both servers used");
    s.finish();
}

/// Found by the datapath target: in DR and TUN (which do not route, so do
/// not decrement the TTL) a TTL-0 packet from a client went out with TTL 0.
/// It is dropped as `ttl_exceeded`; TTL 1 still goes through, as with IPVS.
/// Reproducer: tests/fuzz/regressions/datapath/tun-forwards-ttl-0.
#[test]
fn ttl_0_is_not_forwarded_in_dr_or_tun() {
    use rig::*;
    use rvs::wire::{PacketBuilder, TcpFlags};
    for mode in [1, 2] {
        let mut s = harness::Session::new(harness::Config::new(mode, 0, true, false, false));
        let seg = |ttl: u8, flags: TcpFlags| {
            PacketBuilder::new()
                .eth(CLIENT_MAC, DIR0_MAC)
                .ipv4(client(), vip())
                .ttl(ttl)
                .tcp(40000, 80)
                .flags(flags)
                .seq(1000)
                .build()
        };
        assert_eq!(s.frame(0, false, 1, &seg(64, TcpFlags::SYN)).len(), 1);
        assert!(s.frame(0, false, 1, &seg(0, TcpFlags::ACK)).is_empty());
        assert_eq!(s.rig.drops("ttl_exceeded"), 1, "mode {mode}");
        assert_eq!(s.frame(0, false, 1, &seg(1, TcpFlags::ACK)).len(), 1);
        s.finish();
    }
}
