//! Fuzz targets for connection-table state that comes from outside the
//! data path: IPVS sync datagrams (`sync`) and a previous rvsd's table file
//! (`region`), each applied to a small director.

use std::sync::OnceLock;

/// The connection-sync parser (`rvs::sync::proto`) over arbitrary bytes:
/// the first byte is the backup's syncid, the rest one datagram. Whatever
/// parses must be consistent with the header (never more connections than
/// it announces, the syncid filter held) and survive a build/parse round
/// trip unchanged; then it is applied to a small director's table.
pub fn sync(data: &[u8]) {
    use rvs::sync::proto::{self, Builder};
    let Some((&want, msg)) = data.split_first() else {
        return;
    };
    let Ok(p) = proto::parse(msg, want) else {
        return;
    };
    assert!(want == 0 || p.syncid == want);
    let announced = if p.version == 1 { msg[4] } else { msg[0] } as usize;
    assert!(p.conns.len() + p.skipped.len() <= announced);
    if p.version == 1 {
        for c in &p.conns {
            let mut b = Builder::new(p.syncid, 65535);
            assert!(b.push(c));
            let again = proto::parse(&b.finish(), p.syncid).expect("own message parses");
            assert_eq!(again.conns.len(), 1);
            assert_eq!(&again.conns[0], c);
        }
    }
    static DIRECTOR: OnceLock<rvs::control::Control> = OnceLock::new();
    let ctl = DIRECTOR.get_or_init(|| small_director(64));
    let table = ctl.table.load();
    for c in &p.conns {
        let _ = rvs::sync::apply(&ctl.conns, &table, c, 1_000);
    }
    assert!(ctl.conns.len() <= ctl.conns.capacity());
}

/// A previous rvsd's connection table file (`conn::persist`) whose slots
/// are arbitrary bytes, under a valid header: reading it must never panic,
/// and taking it over into a small director must account for every slot it
/// reads (taken, expired, without a real server, unfinished, no room) and
/// never overfill the table. (Header checks: unit tests in conn::persist.)
pub fn region(data: &[u8]) -> rvs::sync::Adopted {
    let prev = rvs::conn::Previous::from_slot_bytes(data);
    let mut read = 0u64;
    prev.for_each(|c, left| {
        read += 1;
        let _ = (c.in_key(), c.out_key(), c.state(), left);
    });
    assert!(read as usize <= prev.capacity());
    let ctl = small_director(8);
    let r = ctl.adopt(&prev);
    assert_eq!(
        r.adopted + r.expired + r.no_dest + r.unfinished + r.full,
        read,
        "{r:?}"
    );
    assert!(ctl.conns.len() <= 8 && ctl.conns.len() as u64 <= r.adopted);
    r
}

/// A control plane with a table of `cap` entries and one NAT service,
/// TCP 10.0.0.100:80 -> 10.0.1.11:80 (the sync and region targets).
fn small_director(cap: usize) -> rvs::control::Control {
    let workers = std::sync::Arc::from(vec![crossbeam_utils::CachePadded::new(
        rvs::stats::WorkerStats::default(),
    )]);
    let c = rvs::control::Control::new(
        std::sync::Arc::new(rvs::conn::ConnTable::new(cap, 1)),
        workers,
        vec![],
    );
    for line in [
        r#"{"cmd":"add_service","service":{"proto":"tcp","vip":"10.0.0.100","port":80}}"#,
        r#"{"cmd":"add_dest","service":{"proto":"tcp","vip":"10.0.0.100","port":80},"dest":{"ip":"10.0.1.11","port":80,"fwd":"nat"}}"#,
    ] {
        let _ = c.handle_line(line);
    }
    c
}
