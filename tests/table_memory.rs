//! The connection table's resident memory: the slots and the index are
//! faulted in when the table is made (not on the first packets), and the
//! IPv6 address lines reserved for every slot are not, until IPv6
//! connections write them. An over-aligned zeroed allocation used to be
//! written with zeros by the allocator, which made those lines resident:
//! 64 bytes more per connection of `max` (163 instead of 99 bytes per
//! connection at 10 M in `rvs-tablebench memory`).

use rvs::conn::ConnTable;

/// Resident bytes of this process (`/proc/self/statm`'s second field, in
/// 4 KiB pages on x86_64).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .expect("resident pages in statm");
    pages * 4096
}

#[test]
fn a_new_table_holds_its_slots_and_index_but_not_its_ipv6_lines() {
    let max = 2_000_000u64;
    let before = rss_bytes();
    let t = ConnTable::new(max as usize, 1);
    let grew = rss_bytes().saturating_sub(before);
    let footprint = t.footprint() as u64;
    let lines = max * 64;
    // Faulted in: most of the slots and the index.
    assert!(
        grew >= footprint * 3 / 4,
        "grew {grew} bytes for a footprint of {footprint}"
    );
    // Not faulted in: the IPv6 lines (128 MB here).
    assert!(
        grew < footprint + lines / 4,
        "grew {grew} bytes: footprint {footprint} and IPv6 lines {lines}"
    );
}
