//! End to end, IPv6 to the director: a kernel client in its namespace
//! resolves rvsd's port addresses with Neighbor Discovery and pings them
//! (rvsd on an af_packet port). rvs does not forward IPv6 yet.

mod common;

use common::topo::{ns_exec, ns_exec_ok, Rvsd, Topology};

/// fe80:: and `mac` as a modified EUI-64, as the kernel forms it.
fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    format!(
        "fe80::{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([b[0] ^ 2, b[1]]),
        u16::from_be_bytes([b[2], 0xff]),
        u16::from_be_bytes([0xfe, b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

fn ping6(ns: &str, dst: &str) {
    let out = ns_exec(ns, &["ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", dst]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("3 received"),
        "ping -6 {dst}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_kernel_client_resolves_and_pings_both_port_addresses() {
    let topo = Topology::up_unique();
    let mut config = topo.default_config();
    config["ports"][0]["ipv6"] = "2001:db8::1/64".into();
    let rvsd = Rvsd::start(&topo, &config);

    // The topology keeps IPv6 off everywhere; turn it on for the client's
    // link to the director only (no DAD: its addresses are usable at once).
    let c = topo.client_ns();
    for s in [
        "net.ipv6.conf.eth0.accept_dad=0",
        "net.ipv6.conf.eth0.disable_ipv6=0",
    ] {
        ns_exec_ok(&c, &["sysctl", "-qw", s]);
    }
    ns_exec_ok(
        &c,
        &[
            "ip",
            "addr",
            "add",
            "2001:db8::2/64",
            "dev",
            "eth0",
            "nodad",
        ],
    );

    ping6(&c, "2001:db8::1");
    // The client learnt rvsd's port MAC from its Neighbor Advertisement.
    let lb0_mac = ns_exec_ok(&topo.lb_ns(), &["cat", "/sys/class/net/lb0/address"]);
    let lb0_mac = lb0_mac.trim();
    let neigh = ns_exec_ok(&c, &["ip", "-6", "neigh", "show", "2001:db8::1"]);
    assert!(neigh.contains(&format!("lladdr {lb0_mac}")), "{neigh}");

    // The port's link-local address, from the client's link-local one. The
    // formula above is the kernel's: it gave the client's eth0 the same.
    let c_mac = ns_exec_ok(&c, &["cat", "/sys/class/net/eth0/address"]);
    let c_ll = ns_exec_ok(
        &c,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
        ],
    );
    assert!(
        c_ll.contains(&format!("{}/64", link_local(c_mac.trim()))),
        "{c_ll}"
    );
    ping6(&c, &format!("{}%eth0", link_local(lb0_mac)));

    assert!(rvsd.counter("nd_adverts_sent") >= 2);
    assert!(rvsd.counter("icmpv6_echo_replies") >= 6);
    // The client's own IPv6 chatter (router solicitations, MLD reports) is
    // not for the director and is counted, not answered.
    let log = rvsd.log();
    assert!(!log.contains("panicked"), "{log}");
}
