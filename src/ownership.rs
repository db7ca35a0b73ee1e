//! The exception path's shared state and VIP ownership.
//!
//! [`Exception`] tells the data path which ports have a kernel twin and,
//! with `vip_ownership: "kernel"`, which VIPs this director owns now: the
//! IPv4 and IPv6 addresses configured on the twins. keepalived's VRRP adds its
//! `virtual_ipaddress` to the interface of its `vrrp_instance` on MASTER
//! and removes it on BACKUP/FAULT, so an unmodified keepalived with the
//! twin as its interface drives rvs.
//!
//! [`watch`] learns the addresses from rtnetlink through iproute2: it runs
//! `ip -o monitor address` (a subscription to RTNLGRP_IPV4_IFADDR and
//! RTNLGRP_IPV6_IFADDR) and, on every event, reads the twins' addresses
//! again with `ip -o addr show` (so a missed or reordered event cannot
//! leave a stale set). Using
//! the `ip` program keeps `unsafe` netlink socket code out of the daemon;
//! the price is one short-lived process per address change.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Owned addresses and the data port whose twin carries each.
pub type Owned = HashMap<IpAddr, u16>;

/// Gratuitous ARPs sent on gaining an IPv4 VIP (keepalived's
/// `vrrp_garp_master_repeat` default is 5). An IPv6 VIP's unsolicited
/// Neighbor Advertisements are keepalived's, through the twin.
pub const GARP_REPEAT: u32 = 5;

/// What the data path reads about the exception path.
#[derive(Default)]
pub struct Exception {
    /// Per data port: whether it has a kernel twin.
    pub twin: Vec<bool>,
    /// `None`: own every VIP (`vip_ownership: "always"`). `Some`: only the
    /// addresses configured on a twin.
    pub owned: Option<Arc<OwnedSet>>,
}

/// The owned-address set, published to workers like the service table.
#[derive(Default)]
pub struct OwnedSet {
    pub set: ArcSwap<Owned>,
    /// Bumped on every change (workers compare it to send gratuitous ARPs).
    pub generation: AtomicU64,
}

impl OwnedSet {
    pub fn publish(&self, owned: Owned) {
        if **self.set.load() == owned {
            return;
        }
        self.set.store(Arc::new(owned));
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl Exception {
    /// Whether `port` hands unowned frames to a kernel twin.
    #[inline]
    pub fn has_twin(&self, port: u16) -> bool {
        self.twin.get(port as usize).copied().unwrap_or(false)
    }
    /// The data port whose twin carries `ip` now (vip_ownership
    /// "kernel" only): an address keepalived put there.
    #[inline]
    pub fn on_twin(&self, ip: IpAddr) -> Option<u16> {
        self.owned.as_ref()?.set.load().get(&ip).copied()
    }
    /// Whether this director answers for `vip` now.
    #[inline]
    pub fn owns(&self, vip: IpAddr) -> bool {
        match &self.owned {
            None => true,
            Some(o) => o.set.load().contains_key(&vip),
        }
    }
}

/// Parse `ip -o addr show` output: the IPv4 and IPv6 addresses of the
/// interfaces named in `twins` (name, data port).
pub fn parse_addrs(text: &str, twins: &[(String, u16)]) -> Owned {
    let mut out = Owned::new();
    for line in text.lines() {
        // "7: rvs0    inet 10.0.0.100/32 scope global rvs0\       valid_lft ..."
        let mut words = line.split_whitespace();
        let (Some(_idx), Some(ifname), Some("inet" | "inet6"), Some(addr)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        // An interface with a link master shows as "name@peer".
        let ifname = ifname.split('@').next().unwrap_or(ifname);
        let Some(&(_, port)) = twins.iter().find(|(n, _)| n == ifname) else {
            continue;
        };
        let ip = addr.split('/').next().unwrap_or(addr);
        // A link-local address is the twin's own (from its MAC), never a
        // VIP or a floating address.
        match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) if a.segments()[0] & 0xffc0 == 0xfe80 => {}
            Ok(ip) => {
                out.insert(ip, port);
            }
            Err(_) => {}
        }
    }
    out
}

/// Read the twins' addresses now.
pub fn read_addrs(twins: &[(String, u16)]) -> std::io::Result<Owned> {
    let o = Command::new("ip")
        .args(["-o", "addr", "show"])
        .stderr(Stdio::null())
        .output()?;
    if !o.status.success() {
        return Err(std::io::Error::other("ip -o addr show failed"));
    }
    Ok(parse_addrs(&String::from_utf8_lossy(&o.stdout), twins))
}

/// Follow address events on the twins and publish the owned set until
/// `stop` is set. The monitor starts before the first read, so no change
/// falls between the two.
pub fn watch(
    twins: Vec<(String, u16)>,
    owned: Arc<OwnedSet>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut child = Command::new("ip")
        .args(["-o", "monitor", "address"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    owned.publish(read_addrs(&twins)?);
    log_owned(&owned);
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("rvs-ownership-rd".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if line.is_err() || tx.send(()).is_err() {
                    break;
                }
            }
        })?;
    std::thread::Builder::new()
        .name("rvs-ownership".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                    Ok(()) => {
                        while rx.try_recv().is_ok() {}
                        match read_addrs(&twins) {
                            Ok(o) => {
                                owned.publish(o);
                                log_owned(&owned);
                            }
                            Err(e) => log::warn!("vip ownership: {e}"),
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(_) => {
                        log::error!("vip ownership: ip monitor ended; ownership frozen");
                        break;
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        })
}

fn log_owned(owned: &OwnedSet) {
    let mut v: Vec<_> = owned.set.load().keys().copied().collect();
    v.sort();
    log::info!("kernel twins carry {v:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_twins_addresses() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
            7: rvs0    inet 10.0.0.1/24 scope global rvs0\\       valid_lft forever\n\
            7: rvs0    inet 10.0.0.100/32 scope global rvs0\\       valid_lft forever\n\
            9: eth0@if3    inet 10.0.0.100/24 scope global eth0\n\
            8: rvs1    inet 10.0.1.1/24 scope global rvs1\n\
            7: rvs0    inet6 2001:db8::100/128 scope global nodad \\       valid_lft forever\n\
            9: eth0@if3    inet6 2001:db8::200/64 scope global\n\
            7: rvs0    inet6 fe80::1/64 scope link \\       valid_lft forever\n";
        let twins = vec![("rvs0".to_string(), 0), ("rvs1".to_string(), 1)];
        let o = parse_addrs(text, &twins);
        assert_eq!(o.len(), 4);
        assert_eq!(o[&"2001:db8::100".parse().unwrap()], 0);
        assert!(!o.contains_key(&"2001:db8::200".parse().unwrap()));
        assert_eq!(o[&"10.0.0.100".parse().unwrap()], 0);
        assert_eq!(o[&"10.0.1.1".parse().unwrap()], 1);
        assert!(!o.contains_key(&"127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn generation_moves_only_on_change() {
        let s = OwnedSet::default();
        let mut o = Owned::new();
        o.insert(IpAddr::from([10, 0, 0, 100]), 0);
        s.publish(o.clone());
        s.publish(o);
        assert_eq!(s.generation.load(Ordering::Relaxed), 1);
        let e = Exception {
            twin: vec![true],
            owned: Some(Arc::new(s)),
        };
        assert!(e.owns(IpAddr::from([10, 0, 0, 100])));
        assert!(!e.owns(IpAddr::from([10, 0, 0, 101])));
        assert!(Exception::default().owns(IpAddr::from([10, 0, 0, 101])));
    }
}
