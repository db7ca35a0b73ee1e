//! IPVS schedulers: one small file per algorithm behind one trait.
//!
//! A scheduler instance lives as long as its service and scheduler name, as
//! the kernel's `svc->sched_data` does (`init_service` when the service is
//! created or its scheduler changed, `done_service` when it goes): the
//! control plane keeps it across snapshots (see
//! `service::StateRegistry`) and tells it about each change of the server
//! list through the kernel's `ip_vs_scheduler` hooks, [`Scheduler::add_dest`],
//! [`Scheduler::del_dest`] and [`Scheduler::upd_dest`], never rebuilding it
//! because something else changed. State that moves between picks (the rr
//! cursor, wrr's current weight, lblc's bindings) lives inside the instance
//! behind a small lock, as the kernel keeps it under `svc->sched_lock`; it is
//! touched once per new connection, never per packet.
//!
//! State that names a server names it by identity ([`DestState::id`],
//! what the kernel's `struct ip_vs_dest *` is), never by its position alone:
//! a worker may still schedule on the previous snapshot's list for a moment
//! after the control thread updated the instance, and `locate` finds the
//! server there too.
//!
//! Adding an algorithm = one file plus one line in [`REGISTRY`].
//!
//! [`DestState::id`]: crate::live::DestState::id

mod dh;
mod fo;
mod lblc;
mod lblcr;
mod lc;
mod mh;
mod nq;
mod ovf;
mod rr;
mod sed;
mod sh;
mod wlc;
mod wrr;

use std::net::IpAddr;

use crate::flow::FlowKey;
use crate::live::Dest;

/// Picks a real server for a new flow.
pub trait Scheduler: Send + Sync {
    /// The ipvsadm name (`rr`, `wlc`, ...).
    fn name(&self) -> &'static str;
    /// Index into `dests` (the same list the scheduler was built for), or
    /// None when no server can take the flow. `now_ms` is the data path's
    /// clock, for schedulers whose state expires (lblc, lblcr).
    fn pick(&self, dests: &[Dest], flow: &FlowKey, now_ms: u64) -> Option<usize>;
    /// The kernel's `add_dest` hook: `dests` is the list after `dests[i]`
    /// was added (the newest, so the kernel's list head).
    fn add_dest(&self, _dests: &[Dest], _i: usize) {}
    /// The kernel's `del_dest` hook: `before[i]` was removed, `after` is
    /// the list without it.
    fn del_dest(&self, _before: &[Dest], _i: usize, _after: &[Dest]) {}
    /// The kernel's `upd_dest` hook: `dests[i]` was edited (`-e`: weight,
    /// thresholds or forwarding method; a health check's quiesce).
    fn upd_dest(&self, _dests: &[Dest], _i: usize) {}
    /// The service's scheduler flags (`-b`) changed; the kernel reads
    /// `svc->flags` at every pick and keeps the scheduler.
    fn set_flags(&self, _flags: SchedFlags) {}
}

/// Where the server with id `id` is in `dests`: at `hint` (where it was
/// when the state was last updated), else wherever it is now (a worker on
/// the previous snapshot), else nowhere (deleted: the kernel's trash, not
/// IP_VS_DEST_F_AVAILABLE).
#[inline]
pub(crate) fn locate(dests: &[Dest], hint: usize, id: u32) -> Option<usize> {
    match dests.get(hint) {
        Some(d) if d.state.id == id => Some(hint),
        _ => dests.iter().position(|d| d.state.id == id),
    }
}

/// The ids of `dests`, in order: what a table built for that list refers to.
pub(crate) fn ids(dests: &[Dest]) -> Box<[u32]> {
    dests.iter().map(|d| d.state.id).collect()
}

/// Scheduler flags of a service (ipvsadm `-b`): `flag-1` is sh-fallback /
/// mh-fallback, `flag-2` is sh-port / mh-port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedFlags {
    /// When the hashed server is unavailable, try the next ones.
    pub fallback: bool,
    /// Hash the source port too.
    pub port: bool,
    /// `flag-3` (IP_VS_SVC_F_SCHED3): no scheduler reads it, but ipvsadm
    /// and the kernel keep it on the service and list it, so rvs does too.
    pub flag3: bool,
}

impl SchedFlags {
    /// Parse ipvsadm's flag names for scheduler `sched`.
    pub fn parse(sched: &str, names: &[String]) -> Result<SchedFlags, String> {
        let mut f = SchedFlags::default();
        for n in names {
            match n.as_str() {
                "flag-1" => f.fallback = true,
                "flag-2" => f.port = true,
                "flag-3" => f.flag3 = true,
                "sh-fallback" | "mh-fallback" if n.starts_with(sched) => f.fallback = true,
                "sh-port" | "mh-port" if n.starts_with(sched) => f.port = true,
                "sh-fallback" | "mh-fallback" | "sh-port" | "mh-port" => {
                    return Err(format!("incompatible scheduler flag `{n}'"))
                }
                _ => return Err(format!("invalid scheduler flag `{n}'")),
            }
        }
        Ok(f)
    }
}

impl SchedFlags {
    /// Packed into a byte, for schedulers that keep their flags in an atomic.
    pub(crate) fn bits(self) -> u8 {
        self.fallback as u8 | (self.port as u8) << 1 | (self.flag3 as u8) << 2
    }
    pub(crate) fn from_bits(b: u8) -> SchedFlags {
        SchedFlags {
            fallback: b & 1 != 0,
            port: b & 2 != 0,
            flag3: b & 4 != 0,
        }
    }

    /// The flags as ipvsadm prints them for scheduler `sched`
    /// (`sh-fallback,sh-port`, or `flag-1,flag-2` for others).
    pub fn names(&self, sched: &str) -> Vec<String> {
        let (fb, port) = match sched {
            "sh" | "mh" => (format!("{sched}-fallback"), format!("{sched}-port")),
            _ => ("flag-1".to_string(), "flag-2".to_string()),
        };
        let mut v = Vec::new();
        if self.fallback {
            v.push(fb);
        }
        if self.port {
            v.push(port);
        }
        if self.flag3 {
            v.push("flag-3".to_string());
        }
        v
    }
}

type Ctor = fn(&[Dest], SchedFlags) -> Box<dyn Scheduler>;

/// Every scheduler this build knows, by ipvsadm name.
const REGISTRY: &[(&str, Ctor)] = &[
    ("rr", rr::new),
    ("wrr", wrr::new),
    ("lc", lc::new),
    ("wlc", wlc::new),
    ("sed", sed::new),
    ("nq", nq::new),
    ("sh", sh::new),
    ("dh", dh::new),
    ("lblc", lblc::new),
    ("lblcr", lblcr::new),
    ("mh", mh::new),
    ("fo", fo::new),
    ("ovf", ovf::new),
];

/// The names accepted by `-s`.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|(n, _)| *n)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown scheduler {name:?} (known: {known})")]
pub struct UnknownScheduler {
    pub name: String,
    pub known: String,
}

/// The kernel's `init_service`: a scheduler `name` for a service whose
/// servers are `dests` now (none for a new service: the kernel binds the
/// scheduler before any `-a`; the current list when `-E -s` changes it).
pub fn build(
    name: &str,
    dests: &[Dest],
    flags: SchedFlags,
) -> Result<Box<dyn Scheduler>, UnknownScheduler> {
    REGISTRY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ctor)| ctor(dests, flags))
        .ok_or_else(|| UnknownScheduler {
            name: name.to_string(),
            known: names().collect::<Vec<_>>().join(" "),
        })
}

pub fn is_known(name: &str) -> bool {
    REGISTRY.iter().any(|(n, _)| *n == name)
}

/// Shared by wlc, sed and nq: walk the servers keeping the one with the least
/// `overhead / weight`, compared by cross-multiplication as the kernel does
/// (`loh * dest.weight > doh * least.weight`), first one winning ties.
pub(crate) fn least_weighted(dests: &[Dest], overhead: impl Fn(&Dest) -> u64) -> Option<usize> {
    least_weighted_in(dests, kernel_order(dests.len()), overhead)
}

/// [`least_weighted`] visiting only `order` (indices into `dests`), in that
/// order: the kernel's list walk for lblc/lblcr (all servers in
/// [`kernel_order`]) and lblcr's per-destination server set.
pub(crate) fn least_weighted_in(
    dests: &[Dest],
    order: impl IntoIterator<Item = usize>,
    overhead: impl Fn(&Dest) -> u64,
) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for i in order {
        let Some(d) = dests.get(i) else { continue };
        if !d.available() {
            continue;
        }
        let doh = overhead(d);
        match least {
            None => least = Some((i, doh)),
            Some((li, loh)) => {
                if (loh as u128) * (d.weight as u128) > (doh as u128) * (dests[li].weight as u128) {
                    least = Some((i, doh));
                }
            }
        }
    }
    least.map(|(i, _)| i)
}

/// The order in which the kernel walks `svc->destinations`: `ipvsadm -a`
/// inserts at the head (`list_add_rcu`), so the list is newest first, while
/// rvs keeps servers in configuration order (oldest first). Every scheduler
/// walks (and the hashing ones lay out their tables in) this order, so that
/// a director fed the same `ipvsadm -a` sequence as a kernel director makes
/// the same picks: with `-a rs1; -a rs2` and rr, the first pick is rs2.
pub(crate) fn kernel_order(n: usize) -> std::iter::Rev<std::ops::Range<usize>> {
    (0..n).rev()
}

/// `GOLDEN_RATIO_32` of `include/linux/hash.h`.
pub(crate) const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's `hash_32(val, bits)` (`hash_32_generic`, what every
/// architecture without its own `HAVE_ARCH_HASH_32` uses, x86 and arm64
/// included): `(val * GOLDEN_RATIO_32) >> (32 - bits)`, the top `bits` bits
/// of the product. sh, dh, lblc and lblcr hash with it; older kernels
/// used `(val * 2654435761) & mask` (the low bits), which rvs does not
/// offer.
#[inline]
pub(crate) fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// An address as the kernel's hashing schedulers see it: IPv4 in host
/// order (`ntohl(addr->ip)`), IPv6 folded as `ip6[0]^ip6[1]^ip6[2]^ip6[3]`
/// (the xor of the four big-endian words, then `ntohl`).
pub(crate) fn addr_fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            (0..4).fold(0, |acc, w| {
                acc ^ u32::from_be_bytes([o[4 * w], o[4 * w + 1], o[4 * w + 2], o[4 * w + 3]])
            })
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    use crate::flow::FlowKey;
    use crate::flow::{Forward, Proto};
    use crate::live::{Dest, DestState};

    /// Real servers 10.0.1.1.. with these weights and (active, inactive) counts.
    pub fn dests(spec: &[(u32, u32, u32)]) -> Vec<Dest> {
        spec.iter()
            .enumerate()
            .map(|(i, &(weight, active, inactive))| {
                let state = Arc::new(DestState {
                    id: i as u32,
                    ..Default::default()
                });
                state.active.store(active, Relaxed);
                state.inactive.store(inactive, Relaxed);
                Dest {
                    ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8)),
                    port: 80,
                    weight,
                    fwd: Forward::Nat,
                    u_threshold: 0,
                    l_threshold: 0,
                    state,
                }
            })
            .collect()
    }

    pub fn flow(client: u8) -> FlowKey {
        FlowKey::v4(
            Proto::Tcp,
            Ipv4Addr::new(192, 0, 2, client),
            40000,
            Ipv4Addr::new(10, 0, 0, 100),
            80,
        )
    }

    /// n picks as server numbers (1-based, 0 = none).
    pub fn picks(s: &dyn super::Scheduler, d: &[Dest], n: usize) -> Vec<usize> {
        (0..n)
            .map(|i| s.pick(d, &flow(i as u8), 0).map_or(0, |x| x + 1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheduler_is_a_clear_error() {
        let e = build("fastest", &[], SchedFlags::default()).err().unwrap();
        assert!(
            e.to_string().contains("unknown scheduler \"fastest\""),
            "{e}"
        );
        assert!(e.to_string().contains("rr"));
        assert!(is_known("wlc") && !is_known("WLC"));
    }

    #[test]
    fn flags_parse_like_ipvsadm() {
        let p = |s: &str, f: &[&str]| {
            SchedFlags::parse(s, &f.iter().map(|x| x.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            p("sh", &["sh-fallback", "sh-port"]),
            Ok(SchedFlags {
                fallback: true,
                port: true,
                flag3: false
            })
        );
        assert_eq!(
            p("mh", &["flag-1"]),
            Ok(SchedFlags {
                fallback: true,
                port: false,
                flag3: false
            })
        );
        assert_eq!(
            p("mh", &["sh-port"]).unwrap_err(),
            "incompatible scheduler flag `sh-port'"
        );
        // flag-3 is kept and listed, as ipvsadm and the kernel keep it.
        let f3 = p("rr", &["flag-3"]).unwrap();
        assert!(f3.flag3 && !f3.fallback && !f3.port);
        assert_eq!(f3.names("rr"), ["flag-3"]);
        assert_eq!(SchedFlags::from_bits(f3.bits()), f3);
        assert_eq!(
            p("rr", &["fast"]).unwrap_err(),
            "invalid scheduler flag `fast'"
        );
    }

    #[test]
    fn every_scheduler_returns_none_without_servers() {
        for n in names() {
            let s = build(n, &[], SchedFlags::default()).unwrap();
            assert_eq!(s.name(), n);
            assert_eq!(s.pick(&[], &testutil::flow(1), 0), None, "{n}");
        }
    }
}
