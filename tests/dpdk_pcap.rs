//! Real DPDK end to end through `net_pcap`: frames read from a capture go
//! through `DpdkIo` rx_burst -> tx and must come out byte for byte, with
//! every mbuf back in its pool afterwards.
//!
//! One EAL per process: this binary holds a single #[test].

mod common;

use std::path::PathBuf;

use rvs::dpdk::{
    self, DpdkError, DpdkIo, Eal, Mempool, Port, MBUF_DEFAULT_DATA_ROOM, MBUF_HEADROOM,
};
use rvs::io::{Frame, PortIo};

const N: usize = 200;

/// Deterministic frames of varied sizes, 60 to 1514 bytes, each unique.
fn frames() -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| {
            let len = 60 + (i * 977) % (1514 - 60 + 1);
            let mut f = vec![0u8; len];
            f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
            f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
            f[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
            f[14..16].copy_from_slice(&(i as u16).to_be_bytes());
            for (j, b) in f[16..].iter_mut().enumerate() {
                *b = (i + j) as u8;
            }
            f
        })
        .collect()
}

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pcap_frames_pass_through_dpdk_unchanged() {
    let dir = TempDir(std::env::temp_dir().join(format!("rvs-dpdk-pcap-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let (inp, out) = (dir.0.join("in.pcap"), dir.0.join("out.pcap"));
    let input = frames();
    common::pcap::write(&inp, &input).unwrap();
    assert_eq!(
        common::pcap::read(&inp).unwrap(),
        input,
        "pcap helper round trip"
    );

    assert!(matches!(
        Mempool::new("too_early", 64, 0, MBUF_DEFAULT_DATA_ROOM),
        Err(DpdkError::NotInitialized)
    ));
    // EAL still creates an (empty) runtime directory named after the prefix.
    let prefix = format!("rvs-test-{}", std::process::id());
    let _runtime_dir = TempDir(PathBuf::from("/var/run/dpdk").join(&prefix));
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
        &format!(
            "net_pcap0,rx_pcap={},tx_pcap={}",
            inp.display(),
            out.display()
        ),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let eal = Eal::init(&args).expect("EAL init");
    assert!(matches!(
        Eal::init(&args),
        Err(DpdkError::AlreadyInitialized)
    ));

    assert_eq!(dpdk::lcore_id(), Some(0), "the EAL main thread is lcore 0");
    let worker_lcore = std::thread::spawn(|| {
        (
            dpdk::lcore_id(),
            dpdk::register_thread(),
            dpdk::register_thread(),
        )
    })
    .join()
    .unwrap();
    assert_eq!(worker_lcore.0, None);
    let id = worker_lcore.1.expect("register_thread");
    assert_ne!(id, 0);
    assert_eq!(
        worker_lcore.2.unwrap(),
        id,
        "registering twice keeps the lcore"
    );

    let pool = Mempool::new("rvs_test", 1023, 32, MBUF_DEFAULT_DATA_ROOM).unwrap();
    assert!(matches!(
        Mempool::new("rvs_test", 63, 0, MBUF_DEFAULT_DATA_ROOM),
        Err(DpdkError::Rte { .. })
    ));
    let base_in_use = pool.in_use();
    assert_eq!(base_in_use, 0);
    assert_eq!(pool.available(), 1023);

    assert!(matches!(
        Port::by_name("net_nope0"),
        Err(DpdkError::NoSuchPort(_))
    ));
    let port_id = Port::by_name("net_pcap0").unwrap();
    let mut port = Port::configure(port_id, 1, 1, 512, 512, &pool).unwrap();
    assert!(matches!(
        Port::configure(port_id, 1, 1, 512, 512, &pool),
        Err(DpdkError::PortInUse(_))
    ));
    let info = port.info().unwrap();
    assert_eq!(info.driver, "net_pcap");
    assert!(!port.rss_enabled());
    println!(
        "{info:?} mac={:02x?} mtu={:?}",
        port.mac().unwrap(),
        port.mtu()
    );
    port.start().unwrap();
    let _ = port.set_promiscuous(true); // net_pcap may not support it; must not fail hard
    let _ = port.link_up().unwrap();

    let mut io = DpdkIo::new(&pool, &[(&port, 0, 0)]).unwrap();
    assert!(matches!(
        DpdkIo::new(&pool, &[(&port, 0, 0)]),
        Err(DpdkError::QueueUnavailable { .. })
    ));
    assert!(matches!(
        DpdkIo::new(&pool, &[(&port, 1, 0)]),
        Err(DpdkError::QueueUnavailable { .. })
    ));

    // A real mbuf grows and shrinks like VecFrame, keeping pkt_len == data_len.
    {
        let mut m = io.alloc().expect("alloc");
        assert_eq!(
            (m.data().len(), m.nb_segs(), m.headroom()),
            (0, 1, MBUF_HEADROOM)
        );
        assert!(m.append(10));
        m.data_mut().copy_from_slice(&[7; 10]);
        assert!(m.prepend(14));
        assert_eq!(m.data().len(), 24);
        assert_eq!(m.pkt_len(), 24);
        assert_eq!(&m.data()[14..], &[7; 10]);
        assert!(
            !m.prepend(MBUF_HEADROOM - 13),
            "only 114 bytes of headroom left"
        );
        assert!(m.adj(14));
        assert_eq!(m.data(), &[7; 10]);
        assert!(!m.adj(11));
        m.truncate(4);
        assert_eq!((m.data(), m.pkt_len()), (&[7u8; 4][..], 4));
        let tail = m.tailroom();
        assert!(!m.append(tail + 1));
        assert!(m.append(tail));
        assert_eq!(m.pkt_len() as usize, 4 + tail);
        assert_eq!(pool.in_use(), base_in_use + 1);
    }
    assert_eq!(
        pool.in_use(),
        base_in_use,
        "a dropped Mbuf goes back to the pool"
    );

    let mut rx = Vec::with_capacity(rvs::io::BURST);
    let mut received = 0;
    for _ in 0..100_000 {
        if received == N {
            break;
        }
        received += io.rx_burst(0, &mut rx);
        for f in rx.drain(..) {
            io.tx(0, f);
        }
        io.flush();
    }
    assert_eq!(received, N, "all frames received");
    assert_eq!(io.rx_chained_dropped(), 0);
    assert_eq!(io.tx_dropped(), 0);
    let st = port.stats().unwrap();
    assert_eq!((st.ipackets, st.opackets), (N as u64, N as u64), "{st:?}");

    assert!(
        matches!(port.close(), Err(DpdkError::PortBusy(_))),
        "no close under a worker"
    );
    drop(io);
    port.close().expect("close flushes the pcap");
    assert!(matches!(port.mac(), Err(DpdkError::PortClosed(_))));
    assert_eq!(
        pool.in_use(),
        base_in_use,
        "every mbuf returned to the pool"
    );

    let output = common::pcap::read(&out).unwrap();
    assert_eq!(output.len(), N);
    for (i, (a, b)) in input.iter().zip(&output).enumerate() {
        assert_eq!(a, b, "frame {i} differs");
    }

    drop(port);
    drop(pool);
    drop(eal);
    assert!(matches!(
        Mempool::new("too_late", 64, 0, MBUF_DEFAULT_DATA_ROOM),
        Err(DpdkError::NotInitialized)
    ));
}
