//! Prints a datapath fuzz input (a seed, a corpus entry or a crash
//! artifact) record by record, runs it and prints what the director sent
//! after each poll, then the counters. For triage:
//!
//!     cargo run --manifest-path tests/fuzz/Cargo.toml --example show -- FILE
//!
//! A violated invariant panics at the record that caused it, like the fuzz
//! target does.

use rvs_fuzz::harness::{advance_ms, control_menu, describe, DatapathInput, Record, Session};

fn main() {
    let path = std::env::args().nth(1).expect("usage: show FILE");
    let data = std::fs::read(&path).expect("read input");
    let input = DatapathInput::decode(&data).expect("empty input");
    let c = input.config;
    println!(
        "config {:#04x}: mode {} sched {} learn {} small_table {} persistent {}",
        c.0,
        c.mode().name,
        c.sched(),
        c.learn(),
        c.small_table(),
        c.persistent()
    );
    let menu = control_menu(c);
    let mut s = Session::new(c);
    for (i, r) in input.records.iter().enumerate() {
        let out = match r {
            Record::Frame {
                port,
                fix,
                adv,
                bytes,
            } => {
                println!(
                    "#{i} port {port}{} +{}ms: {}",
                    if *fix { " fixed" } else { "" },
                    advance_ms(*adv),
                    describe(bytes)
                );
                s.frame(*port, *fix, *adv, bytes)
            }
            Record::Control { index, adv } => {
                let req = &menu[usize::from(*index) % menu.len()];
                println!("#{i} control +{}ms: {}", advance_ms(*adv), req.join(" ; "));
                s.control(*index, *adv)
            }
        };
        for (port, f) in out {
            println!("    sent on {port}: {}", describe(&f));
        }
    }
    s.finish();
    let st = s.rig.stats();
    let drops: Vec<String> = st
        .drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    println!(
        "rx {} tx {} consumed {} arp requests {} conns {} drops [{}]",
        st.rx_packets,
        st.tx_packets,
        st.consumed,
        st.arp_requests_sent,
        st.conns_created,
        drops.join(" ")
    );
}
