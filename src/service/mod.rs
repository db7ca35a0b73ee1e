//! Virtual services and their real servers.
//!
//! Two layers: the control plane edits [`ServiceConf`] values (plain data,
//! validated whole), and from them builds an immutable [`ServiceTable`]
//! snapshot that workers read without locks. Counters live in `Arc`s that
//! survive snapshot rebuilds, so edits never reset ActiveConn/InActConn or
//! traffic statistics, and connections keep counting against the real server
//! they were bound to even after it is deleted (the kernel's "trash" dests).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::flow::{DestKey, Proto, ServiceKey, Tunnel};
use crate::sched::{self, Scheduler};

pub mod conf;

pub use crate::live::rates::{Estimator, Rates, TrafficCounters, TrafficStats, INTERVAL};
pub use crate::live::{Dest, DestState, IdVec, Ids, ServiceState, MAX_IDS};
pub use conf::*;

/// A virtual service in a snapshot, with its scheduler (shared by every
/// snapshot since the service got it, and kept up to date with `dests`).
pub struct Service {
    pub conf: ServiceConf,
    /// Real servers in the order they joined the list (oldest first; the
    /// kernel's list is this reversed, see `sched::kernel_order`).
    pub dests: Vec<Dest>,
    pub sched: Arc<dyn Scheduler>,
    pub state: Arc<ServiceState>,
}

impl Service {
    /// Whether the sorry server is standing in (no real server available).
    pub fn sorry_in_service(&self) -> bool {
        self.conf
            .sorry_addr()
            .is_some_and(|(ip, port)| self.dests.iter().any(|d| d.ip == ip && d.port == port))
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("key", &self.conf.key())
            .field("sched", &self.sched.name())
            .field("dests", &self.dests.len())
            .finish()
    }
}

/// Counter state kept by the control plane across snapshot rebuilds: the
/// configured services and real servers, out of [`Ids`], and each
/// service's scheduler instance.
#[derive(Default, Debug)]
pub struct StateRegistry {
    ids: Arc<Ids>,
    services: HashMap<ServiceKey, Arc<ServiceState>>,
    dests: HashMap<(ServiceKey, IpAddr, u16), Arc<DestState>>,
    scheds: HashMap<ServiceKey, SchedEntry>,
}

/// A service's scheduler as the kernel keeps it in `svc->scheduler` and
/// `svc->sched_data`: created when the service is (or when `-E -s` changes
/// the scheduler), told about every change of the server list through its
/// hooks, dropped with the service.
struct SchedEntry {
    name: String,
    flags: sched::SchedFlags,
    inst: Arc<dyn Scheduler>,
    /// The list the instance was last told about.
    dests: Vec<Dest>,
}

impl fmt::Debug for SchedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedEntry")
            .field("name", &self.name)
            .field("dests", &self.dests.len())
            .finish()
    }
}

/// What the kernel's `__ip_vs_update_dest` changes on `-e` (each edit calls
/// the `upd_dest` hook).
fn dest_edited(a: &Dest, b: &Dest) -> bool {
    (a.weight, a.fwd, a.u_threshold, a.l_threshold)
        != (b.weight, b.fwd, b.u_threshold, b.l_threshold)
}

impl SchedEntry {
    /// The kernel's `ip_vs_bind_scheduler` for a new service: `init_service`
    /// on an empty list, then one `add_dest` per server in the order they
    /// joined (the `-A` then `-a` ... of ipvsadm -R and keepalived).
    fn create(name: &str, flags: sched::SchedFlags, dests: &[Dest]) -> Result<SchedEntry, String> {
        let inst: Arc<dyn Scheduler> = sched::build(name, &[], flags)
            .map_err(|e| e.to_string())?
            .into();
        for k in 0..dests.len() {
            inst.add_dest(&dests[..=k], k);
        }
        Ok(SchedEntry {
            name: name.to_string(),
            flags,
            inst,
            dests: dests.to_vec(),
        })
    }

    /// Bring the instance from its last list to `new` through the hooks, one
    /// kernel operation at a time: deletions (`-d`, a health check's
    /// removal), then edits (`-e`, a quiesce), then additions (`-a`, which
    /// `new` has last: see [`order_like`]).
    fn update(&mut self, new: &[Dest]) {
        let same = self.dests.len() == new.len()
            && self
                .dests
                .iter()
                .zip(new)
                .all(|(a, b)| a.state.id == b.state.id && !dest_edited(a, b));
        if same {
            // Nothing this service's scheduler sees changed (the common
            // case: another service was edited).
            self.dests = new.to_vec();
            return;
        }
        let in_new: HashMap<u32, &Dest> = new.iter().map(|d| (d.state.id, d)).collect();
        let mut cur = std::mem::take(&mut self.dests);
        let mut i = 0;
        while i < cur.len() {
            if in_new.contains_key(&cur[i].state.id) {
                i += 1;
                continue;
            }
            let before = cur.clone();
            cur.remove(i);
            self.inst.del_dest(&before, i, &cur);
        }
        for i in 0..cur.len() {
            let d = in_new[&cur[i].state.id];
            if dest_edited(&cur[i], d) {
                cur[i] = d.clone();
                self.inst.upd_dest(&cur, i);
            }
        }
        let in_cur: HashSet<u32> = cur.iter().map(|d| d.state.id).collect();
        for d in new {
            if !in_cur.contains(&d.state.id) {
                cur.push(d.clone());
                self.inst.add_dest(&cur, cur.len() - 1);
            }
        }
        debug_assert!(cur
            .iter()
            .map(|d| d.state.id)
            .eq(new.iter().map(|d| d.state.id)));
        self.dests = new.to_vec();
    }
}

/// `dests` in the order the kernel's list would have them: servers already
/// in `prev` keep their relative order, servers new to the list follow (in
/// configuration order), as `-a` puts them at the head of the kernel's list.
/// A server that a health check removed and restored therefore comes back
/// as the newest, as keepalived's `-d` then `-a` does on a kernel director.
fn order_like(prev: &[Dest], mut dests: Vec<Dest>) -> Vec<Dest> {
    if prev.len() == dests.len()
        && prev
            .iter()
            .zip(&dests)
            .all(|(p, d)| p.state.id == d.state.id)
    {
        return dests;
    }
    let rank: HashMap<u32, usize> = prev
        .iter()
        .enumerate()
        .map(|(i, p)| (p.state.id, i))
        .collect();
    dests.sort_by_key(|d| rank.get(&d.state.id).copied().unwrap_or(usize::MAX));
    dests
}

impl StateRegistry {
    /// A registry handing out ids from `ids` (the connection table's).
    pub fn new(ids: Arc<Ids>) -> Self {
        // Not `..Default::default()`: that would build (and drop) a second
        // registry of ids, two 1024-entry chunk tables.
        StateRegistry {
            ids,
            services: HashMap::new(),
            dests: HashMap::new(),
            scheds: HashMap::new(),
        }
    }
    fn service(&mut self, key: ServiceKey) -> Result<Arc<ServiceState>, String> {
        if let Some(s) = self.services.get(&key) {
            return Ok(s.clone());
        }
        let (s, fresh) = self
            .ids
            .service(key)
            .ok_or_else(|| format!("more than {MAX_IDS} distinct services since start"))?;
        if !fresh {
            s.est.zero_with(&s.traffic);
        }
        self.services.insert(key, s.clone());
        Ok(s)
    }
    fn dest(
        &mut self,
        key: ServiceKey,
        ip: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<Arc<DestState>, String> {
        let s = match self.dests.get(&(key, ip, port)) {
            Some(s) => s.clone(),
            None => {
                let (s, fresh) = self.ids.dest((key, ip, port)).ok_or_else(|| {
                    format!("more than {MAX_IDS} distinct real servers since start")
                })?;
                if !fresh {
                    // Back from the trash: a new server as far as traffic
                    // and weight go (connections it still has keep counting).
                    s.est.zero_with(&s.traffic);
                    s.last_weight.store(0, Relaxed);
                }
                self.dests.insert((key, ip, port), s.clone());
                s
            }
        };
        // __ip_vs_update_dest: `if (add || udest->weight != 0) last_weight = weight`
        // (a new entry starts at 0, so storing on add is the same as skipping 0).
        if weight != 0 {
            s.last_weight.store(weight, Relaxed);
        }
        Ok(s)
    }
    /// Forget state of services and dests no longer configured (connections
    /// still holding them keep their own `Arc`).
    fn retain(&mut self, confs: &[ServiceConf]) {
        let svc: HashSet<ServiceKey> = confs.iter().map(ServiceConf::key).collect();
        let dst: HashSet<DestKey> = confs
            .iter()
            .flat_map(|s| {
                s.dests
                    .iter()
                    .map(move |d| (s.key(), d.ip, d.port))
                    .chain(s.sorry_addr().map(|(ip, port)| (s.key(), ip, port)))
            })
            .collect();
        self.services.retain(|k, _| svc.contains(k));
        self.dests.retain(|k, _| dst.contains(k));
        // ip_vs_unbind_scheduler (done_service) with the service.
        self.scheds.retain(|k, _| svc.contains(k));
    }

    /// The scheduler of service `key` for the list `dests`: the instance
    /// the service already has, told about the changes, or a new one when
    /// the service is new or its scheduler changed (`-E -s`, which the
    /// kernel handles with `init_service` on the current list).
    fn scheduler(
        &mut self,
        key: ServiceKey,
        name: &str,
        flags: sched::SchedFlags,
        dests: &[Dest],
    ) -> Result<Arc<dyn Scheduler>, String> {
        match self.scheds.get_mut(&key) {
            Some(e) if e.name == name => {
                if e.flags != flags {
                    e.inst.set_flags(flags);
                    e.flags = flags;
                }
                e.update(dests);
                Ok(e.inst.clone())
            }
            Some(e) => {
                let inst: Arc<dyn Scheduler> = sched::build(name, dests, flags)
                    .map_err(|er| er.to_string())?
                    .into();
                *e = SchedEntry {
                    name: name.to_string(),
                    flags,
                    inst: inst.clone(),
                    dests: dests.to_vec(),
                };
                Ok(inst)
            }
            None => {
                let e = SchedEntry::create(name, flags, dests)?;
                let inst = e.inst.clone();
                self.scheds.insert(key, e);
                Ok(inst)
            }
        }
    }

    /// The order of the list service `key`'s scheduler last saw.
    fn sched_dests(&self, key: &ServiceKey) -> &[Dest] {
        self.scheds.get(key).map_or(&[], |e| &e.dests)
    }
    /// The live state of a configured real server (or sorry server), if any.
    pub fn dest_state(&self, key: &DestKey) -> Option<Arc<DestState>> {
        self.dests.get(key).cloned()
    }
    /// The live state of a configured service, if any.
    pub fn service_state(&self, key: &ServiceKey) -> Option<Arc<ServiceState>> {
        self.services.get(key).cloned()
    }
    /// Zero the traffic counters (ipvsadm -Z), of one service or all.
    pub fn zero(&self, only: Option<ServiceKey>) {
        for (k, s) in &self.services {
            if only.is_none_or(|o| o == *k) {
                s.est.zero_with(&s.traffic);
            }
        }
        for ((k, _, _), d) in &self.dests {
            if only.is_none_or(|o| o == *k) {
                d.est.zero_with(&d.traffic);
            }
        }
    }
}

/// The immutable service table workers read.
#[derive(Debug, Default)]
pub struct ServiceTable {
    // Looked up for every packet: foldhash rather than SipHash (keys are
    // the operator's, not the attacker's).
    services: HashMap<ServiceKey, Service, foldhash::fast::FixedState>,
    vips: HashSet<IpAddr, foldhash::fast::FixedState>,
    /// FULLNAT local addresses of every service.
    lips: HashSet<IpAddr, foldhash::fast::FixedState>,
    /// The fwmark classifier (see [`crate::fwmark`]); empty: no marks.
    fwmark: crate::fwmark::Classifier,
    /// Services in the order they were added (ipvsadm lists in its own hash
    /// order; we list in configuration order, which is stable).
    order: Vec<ServiceKey>,
}

impl ServiceTable {
    /// Build a snapshot from validated configuration. Schedulers are built
    /// here, on the control thread, so workers never do heavy set-up.
    pub fn build(confs: &[ServiceConf], reg: &mut StateRegistry) -> Result<ServiceTable, String> {
        Self::build_with_health(confs, reg, &HashSet::new())
    }

    /// [`ServiceTable::build`] with health state applied: a real server in
    /// `down` that has a health check is left out (`on_failure: remove`) or
    /// given weight 0 (`quiesce`); a service with no real server of positive
    /// weight gets its sorry server (weight 1) as an extra, last real server.
    /// The configuration itself (`confs`, what `list`/`-S` show) is untouched.
    ///
    /// Each service keeps its scheduler instance: only a service whose
    /// server list changed has its scheduler told (through the kernel's
    /// hooks), and that happens only once the whole table has built, so a
    /// refused change leaves every scheduler as it was.
    pub fn build_with_health(
        confs: &[ServiceConf],
        reg: &mut StateRegistry,
        down: &HashSet<DestKey>,
    ) -> Result<ServiceTable, String> {
        Self::build_with_health_weights(confs, reg, down, &HashMap::new())
    }

    /// [`ServiceTable::build_with_health`] with the weights health checks
    /// set (keepalived `misc_dynamic`) in place of the configured ones.
    pub fn build_with_health_weights(
        confs: &[ServiceConf],
        reg: &mut StateRegistry,
        down: &HashSet<DestKey>,
        weights: &HashMap<DestKey, u32>,
    ) -> Result<ServiceTable, String> {
        let mut t = ServiceTable::default();
        let mut built = Vec::with_capacity(confs.len());
        for c in confs {
            let key = c.key();
            let mut dests: Vec<Dest> = Vec::with_capacity(c.dests.len() + 1);
            for d in &c.dests {
                let port = if d.port == 0 { c.port } else { d.port };
                let mut weight = weights.get(&(key, d.ip, port)).copied().unwrap_or(d.weight);
                if down.contains(&(key, d.ip, port)) {
                    match c.check_for(d).map(|h| h.on_failure) {
                        Some(OnFailure::Remove) => continue,
                        Some(OnFailure::Quiesce) => weight = 0,
                        None => {}
                    }
                }
                let state = reg.dest(key, d.ip, port, weight)?;
                state.set_thresholds(d.u_threshold, d.l_threshold);
                state.set_tunnel(d.tunnel());
                dests.push(Dest {
                    ip: d.ip,
                    port,
                    weight,
                    fwd: d.fwd,
                    u_threshold: d.u_threshold,
                    l_threshold: d.l_threshold,
                    state,
                });
            }
            if let (Some(sorry), Some((ip, port))) = (&c.sorry_server, c.sorry_addr()) {
                if !dests.iter().any(|d| d.weight > 0) {
                    let state = reg.dest(key, ip, port, 1)?;
                    state.set_thresholds(0, 0);
                    state.set_tunnel(Tunnel::default());
                    dests.push(Dest {
                        ip,
                        port,
                        weight: 1,
                        fwd: sorry.fwd,
                        u_threshold: 0,
                        l_threshold: 0,
                        state,
                    });
                }
            }
            let flags = sched::SchedFlags::parse(&c.sched, &c.sched_flags)?;
            if !sched::is_known(&c.sched) {
                return Err(sched::build(&c.sched, &[], flags)
                    .err()
                    .map_or_else(String::new, |e| e.to_string()));
            }
            let dests = order_like(reg.sched_dests(&key), dests);
            let state = reg.service(key)?;
            built.push((c, dests, flags, state));
        }
        for (c, dests, flags, state) in built {
            let key = c.key();
            let sched = reg.scheduler(key, &c.sched, flags, &dests)?;
            if !c.is_fwmark() {
                t.vips.insert(c.vip);
            }
            t.lips.extend(c.laddrs.iter().copied());
            t.order.push(key);
            t.services.insert(
                key,
                Service {
                    conf: c.clone(),
                    dests,
                    sched,
                    state,
                },
            );
        }
        reg.retain(confs);
        Ok(t)
    }

    #[inline]
    pub fn get(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key)
    }
    /// Attach the fwmark classifier. The single addresses of its rules
    /// (/32, /128) whose mark has a fwmark service of their family become
    /// VIPs: the director answers ARP, NS and pings for them. Wider
    /// prefixes must be routed to the director (it answers no ARP or NS
    /// for a whole range).
    pub fn set_fwmark(&mut self, c: crate::fwmark::Classifier) {
        for (ip, mark) in c.hosts() {
            if self
                .services
                .contains_key(&ServiceKey::fwmark(mark, ip.is_ipv6()))
            {
                self.vips.insert(ip);
            }
        }
        self.fwmark = c;
    }
    /// The fwmark classifier of this snapshot.
    #[inline]
    pub fn fwmark_rules(&self) -> &crate::fwmark::Classifier {
        &self.fwmark
    }
    /// The service a new IPv4 flow to `dst:dport` belongs to, as the
    /// kernel's `ip_vs_service_find`: the fwmark service of the packet's
    /// mark (from the classifier) first, then, if `dst` is a VIP, the
    /// `<proto, vip, port>` service and the port-zero one ([`Self::find`]).
    /// A mark without a fwmark service falls through, as in the kernel.
    #[inline]
    pub fn find_new(&self, proto: Proto, dst: Ipv4Addr, dport: u16, vip: bool) -> Option<&Service> {
        if !self.fwmark.is_empty() {
            let mark = self.fwmark.classify(proto, dst, dport);
            if mark != 0 {
                if let Some(s) = self.services.get(&ServiceKey::fwmark(mark, false)) {
                    return Some(s);
                }
            }
        }
        if vip {
            self.find(proto, IpAddr::V4(dst), dport)
        } else {
            None
        }
    }
    /// [`Self::find_new`] for an IPv6 flow: the IPv6 rules' mark selects
    /// an IPv6 fwmark service (`ipvsadm -A -f N -6`).
    #[inline]
    pub fn find_new6(
        &self,
        proto: Proto,
        dst: std::net::Ipv6Addr,
        dport: u16,
        vip: bool,
    ) -> Option<&Service> {
        if self.fwmark.has_v6() {
            let mark = self.fwmark.classify6(proto, dst, dport);
            if mark != 0 {
                if let Some(s) = self.services.get(&ServiceKey::fwmark(mark, true)) {
                    return Some(s);
                }
            }
        }
        if vip {
            self.find(proto, IpAddr::V6(dst), dport)
        } else {
            None
        }
    }
    #[inline]
    pub fn is_vip(&self, ip: IpAddr) -> bool {
        self.vips.contains(&ip)
    }
    /// A FULLNAT local address (the director answers ARP for it).
    #[inline]
    pub fn is_lip(&self, ip: IpAddr) -> bool {
        self.lips.contains(&ip)
    }
    /// Services in configuration order.
    /// The service a packet to vip:port belongs to: the exact one, else a
    /// persistent port-zero service on that address (all ports).
    #[inline]
    pub fn find(&self, proto: Proto, vip: IpAddr, port: u16) -> Option<&Service> {
        self.services
            .get(&ServiceKey::new(proto, vip, port))
            .or_else(|| {
                self.services
                    .get(&ServiceKey::new(proto, vip, 0))
                    .filter(|s| s.conf.persistent.is_some())
            })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.order.iter().filter_map(|k| self.services.get(k))
    }
    pub fn len(&self) -> usize {
        self.services.len()
    }
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// Tick the estimator of every service and real server in `table`.
pub fn tick_rates(table: &ServiceTable) {
    for s in table.iter() {
        s.state.est.tick(&s.state.traffic);
        for d in &s.dests {
            d.state.est.tick(&d.state.traffic);
        }
    }
}

/// A thread that ticks the estimators of the current snapshot every
/// [`INTERVAL`] until `stop` is set (checked every 100 ms).
pub fn spawn_estimator(
    table: Arc<ArcSwap<ServiceTable>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("rvs-est".into())
        .spawn(move || {
            let mut next = Instant::now() + INTERVAL;
            while !stop.load(Relaxed) {
                let now = Instant::now();
                if now >= next {
                    tick_rates(&table.load());
                    next += INTERVAL;
                    // After a long stall, skip missed ticks rather than
                    // running them back to back (the kernel's timer does too).
                    if next <= now {
                        next = now + INTERVAL;
                    }
                    continue;
                }
                std::thread::sleep((next - now).min(Duration::from_millis(100)));
            }
        })
}

#[cfg(test)]
mod tests {
    use super::conf::default_netmask;
    use super::*;
    use crate::flow::{ClientAddr, Forward};

    #[test]
    fn last_weight_keeps_the_latest_non_zero_weight() {
        let conf = |w: u32| {
            vec![ServiceConf {
                proto: Proto::Tcp,
                vip: "10.0.0.100".parse().unwrap(),
                port: 80,
                fwmark: 0,
                sched: "mh".into(),
                persistent: None,
                netmask: default_netmask(),
                sched_flags: vec![],
                laddrs: vec![],
                client_addr: ClientAddr::None,
                synproxy: false,
                ops: false,
                health: None,
                sorry_server: None,
                dests: vec![DestConf {
                    ip: "10.0.1.1".parse().unwrap(),
                    port: 80,
                    weight: w,
                    fwd: Forward::Nat,
                    u_threshold: 0,
                    l_threshold: 0,
                    health: None,
                    tun_type: None,
                    tun_port: None,
                    tun_csum: None,
                }],
            }]
        };
        let mut reg = StateRegistry::default();
        let lw = |t: &ServiceTable| {
            t.iter().next().unwrap().dests[0]
                .state
                .last_weight
                .load(Relaxed)
        };
        assert_eq!(lw(&ServiceTable::build(&conf(0), &mut reg).unwrap()), 0);
        assert_eq!(lw(&ServiceTable::build(&conf(3), &mut reg).unwrap()), 3);
        assert_eq!(lw(&ServiceTable::build(&conf(0), &mut reg).unwrap()), 3);
        assert_eq!(lw(&ServiceTable::build(&conf(5), &mut reg).unwrap()), 5);
    }

    #[test]
    fn tick_table_updates_services_and_dests() {
        use std::sync::atomic::Ordering::Relaxed;
        let conf: ServiceConf = serde_json::from_str(
            r#"{"proto":"tcp","vip":"10.0.0.100","port":80,"sched":"rr",
                "dests":[{"ip":"10.0.1.11","fwd":"nat"}]}"#,
        )
        .unwrap();
        let t = ServiceTable::build(&[conf], &mut StateRegistry::default()).unwrap();
        let s = t.iter().next().unwrap();
        s.state.traffic.conns.store(40, Relaxed);
        s.dests[0].state.traffic.conns.store(40, Relaxed);
        tick_rates(&t);
        // 40 << 9 = 20480; >> 2 = 5120; (5120 + 511) >> 10 = 5.
        assert_eq!(s.state.est.read().cps, 5);
        assert_eq!(s.dests[0].state.est.read().cps, 5);
    }
}
