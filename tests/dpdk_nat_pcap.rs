//! The real data path on real DPDK ports: two `net_pcap` vdevs (client side
//! and server side) feed captured frames through the worker, NAT rewrites
//! them, and the frames DPDK wrote out are checked field by field with
//! independently recomputed checksums. Also checks no mbuf is leaked.
//!
//! One EAL per process: this binary holds a single #[test].

mod common;

use std::path::PathBuf;

use common::rig::*;
use rvs::dpdk::{DpdkIo, Eal, Mempool, Port, MBUF_DEFAULT_DATA_ROOM};
use rvs::wire::{ArpOp, ArpPacket, Ipv4Packet, MacAddr, PacketBuilder, TcpFlags, TcpSegment};

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// net_pcap gives its ports locally administered MACs 02:70:63:61:70:NN
/// ("pcap" + index); frames for the director must carry them before the
/// EAL exists, so they are predicted here and checked after start.
fn pcap_mac(i: u8) -> MacAddr {
    MacAddr([0x02, 0x70, 0x63, 0x61, 0x70, i])
}

#[test]
fn nat_through_real_dpdk_ports() {
    let dir = TempDir(std::env::temp_dir().join(format!("rvs-dpdk-nat-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let p = |n: &str| dir.0.join(n);
    let (m0, m1) = (pcap_mac(0), pcap_mac(1));
    let client_side = vec![
        PacketBuilder::new()
            .arp_request(CLIENT_MAC, client(), vip())
            .pad60()
            .build(),
        client_tcp(40000, TcpFlags::SYN, b"", m0),
        client_tcp(
            40000,
            TcpFlags::ACK | TcpFlags::PSH,
            b"GET / HTTP/1.0\r\n\r\n",
            m0,
        ),
    ];
    let server_side = vec![
        PacketBuilder::new()
            .eth(RS1_MAC, m1)
            .arp_reply(RS1_MAC, rs1(), m1, dir1())
            .pad60()
            .build(),
        rs_tcp(RS1_MAC, rs1(), 40000, TcpFlags::SYN | TcpFlags::ACK, m1),
    ];
    common::pcap::write(&p("in0.pcap"), &client_side).unwrap();
    common::pcap::write(&p("in1.pcap"), &server_side).unwrap();

    let prefix = format!("rvs-nat-{}", std::process::id());
    let _runtime = TempDir(PathBuf::from("/var/run/dpdk").join(&prefix));
    let vdev = |i: u8| {
        format!(
            "net_pcap{i},rx_pcap={},tx_pcap={}",
            p(&format!("in{i}.pcap")).display(),
            p(&format!("out{i}.pcap")).display()
        )
    };
    let args: Vec<String> = [
        "-l",
        "0",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-shconf",
        "--no-telemetry",
        "--log-level",
        "lib.eal:warning",
        "--file-prefix",
        &prefix,
        "--vdev",
        &vdev(0),
        "--vdev",
        &vdev(1),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    let pool = Mempool::new("rvs_nat_test", 2047, 32, MBUF_DEFAULT_DATA_ROOM).unwrap();
    let mut ports: Vec<Port> = (0..2)
        .map(|i| {
            let id = Port::by_name(&format!("net_pcap{i}")).unwrap();
            let mut port = Port::configure(id, 1, 1, 256, 256, &pool).unwrap();
            port.start().unwrap();
            port
        })
        .collect();
    assert_eq!(MacAddr(ports[0].mac().unwrap()), m0, "predicted pcap MAC");
    assert_eq!(MacAddr(ports[1].mac().unwrap()), m1, "predicted pcap MAC");

    {
        let io = DpdkIo::new(&pool, &[(&ports[0], 0, 0), (&ports[1], 0, 0)]).unwrap();
        let mut rig = Rig::new(io, [m0, m1], 100);
        nat_service(&rig, "rr", 1, 0);
        // The pcap vdevs deliver everything at once; a few polls (with the
        // clock moving so chores run) drain them. Bounded, no sleeps.
        let mut received = 0;
        for _ in 0..100 {
            received += rig.step(1);
        }
        assert_eq!(received, client_side.len() + server_side.len());
        assert_eq!(rig.worker.held(), 0);
        let s = rig.stats();
        assert_eq!(s.total_drops(), 0, "{:?}", s.drops);
        // The worker (and its DpdkIo) goes away here, flushing TX.
    }
    for port in &mut ports {
        port.stop().unwrap();
        port.close().unwrap();
    }
    assert_eq!(pool.in_use(), 0, "every mbuf back in the pool");
    drop(ports);
    drop(pool);
    drop(eal);

    let out0 = common::pcap::read(&p("out0.pcap")).unwrap();
    let out1 = common::pcap::read(&p("out1.pcap")).unwrap();
    assert_eq!(out0.len(), 2, "client side: ARP reply, SYN-ACK");
    assert_eq!(out1.len(), 3, "server side: ARP request, SYN, data");

    // Client side 1: ARP reply for the VIP.
    let a = ArpPacket::new_checked(&out0[0][14..]).unwrap();
    assert_eq!(macs(&out0[0]), (CLIENT_MAC, m0));
    assert_eq!(
        (a.operation(), a.sender_hw(), a.sender_ip(), a.target_ip()),
        (ArpOp::REPLY, m0, vip(), client())
    );
    // Client side 2: SYN-ACK from the VIP.
    assert_eq!(macs(&out0[1]), (CLIENT_MAC, m0));
    assert_eq!(endpoints(&out0[1]), (vip(), 80, client(), 40000, 63));
    assert_checksums(&out0[1]);
    let ip = Ipv4Packet::new_checked(&out0[1][14..]).unwrap();
    let t = TcpSegment::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (t.flags(), t.seq(), t.ack()),
        (TcpFlags::SYN | TcpFlags::ACK, 5000, 1001),
        "TCP fields untouched"
    );

    // Server side 1: ARP request for rs1 from the director.
    let a = ArpPacket::new_checked(&out1[0][14..]).unwrap();
    assert_eq!(macs(&out1[0]), (MacAddr::BROADCAST, m1));
    assert_eq!(
        (a.operation(), a.sender_ip(), a.target_ip()),
        (ArpOp::REQUEST, dir1(), rs1())
    );
    // Server side 2 and 3: SYN and data rewritten to rs1.
    for (f, flags, payload) in [
        (&out1[1], TcpFlags::SYN, &b""[..]),
        (
            &out1[2],
            TcpFlags::ACK | TcpFlags::PSH,
            &b"GET / HTTP/1.0\r\n\r\n"[..],
        ),
    ] {
        assert_eq!(macs(f), (RS1_MAC, m1));
        assert_eq!(endpoints(f), (client(), 40000, rs1(), 80, 63));
        assert_checksums(f);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let t = TcpSegment::new_checked(ip.payload()).unwrap();
        assert_eq!((t.flags(), t.seq(), t.payload()), (flags, 1000, payload));
    }
}
