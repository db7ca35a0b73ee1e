//! What the control plane shows: the `list`, `stats` and `connections`
//! replies.

use super::*;

impl Control {
    /// The configuration (configured weights) with live counters, each real
    /// server's health, and what the snapshot does with it: `in_service`
    /// (false: removed after a failed check) and `effective_weight` (0 when
    /// quiesced). The sorry server is listed per service, with `in_service`.
    pub fn list(&self) -> ListReply {
        let m = self.master.lock();
        let t = self.table.load();
        let services = m
            .confs
            .iter()
            .map(|c| {
                let key = c.key();
                let snap = t.get(&key);
                let dests = c
                    .dests
                    .iter()
                    .map(|d| {
                        let live = snap.and_then(|s| {
                            s.dests.iter().find(|x| x.ip == d.ip && x.port == d.port)
                        });
                        let check = c.check_for(d);
                        let rec = m.health.get(&(key, d.ip, d.port));
                        let r = rec.cloned().unwrap_or_default();
                        let tun = (d.fwd == Forward::Tun).then(|| d.tunnel());
                        let mut v = DestView {
                            ip: d.ip,
                            port: d.port,
                            fwd: d.fwd,
                            weight: d.weight,
                            u_threshold: d.u_threshold,
                            l_threshold: d.l_threshold,
                            in_service: live.is_some(),
                            effective_weight: live.map_or(0, |x| x.weight),
                            health: Some(match (check, rec) {
                                (None, _) => HealthState::Unchecked,
                                (Some(_), Some(r)) if r.down => HealthState::Down,
                                (Some(_), _) => HealthState::Up,
                            }),
                            check: check.map(|h| h.kind),
                            health_counters: Some(HealthCounters {
                                checks: r.checks,
                                failures: r.failures,
                                transitions: r.transitions,
                            }),
                            last_error: r.last_error,
                            health_check: d.health.clone(),
                            tun_type: tun.map(|t| t.kind),
                            tun_port: tun.filter(|t| t.kind == TunType::Gue).map(|t| t.port),
                            tun_csum: tun.filter(|t| t.kind != TunType::Ipip).map(|t| t.csum),
                            ..DestView::idle(d.ip, d.port, d.fwd)
                        };
                        live_counters(&m, &mut v, key);
                        v
                    })
                    .collect();
                let state = m.registry.service_state(&key);
                let (proto, vip, port, fwmark, af) = if key.fwmark != 0 {
                    let af = key.vip.is_ipv6().then(|| "inet6".to_string());
                    (None, None, None, Some(key.fwmark), af)
                } else {
                    (Some(key.proto), Some(key.vip), Some(key.port), None, None)
                };
                ServiceView {
                    proto,
                    vip,
                    port,
                    fwmark,
                    af,
                    sched: c.sched.clone(),
                    persistent: c.persistent,
                    netmask: c.netmask,
                    sched_flags: c.sched_flags.clone(),
                    laddrs: c.laddrs.clone(),
                    client_addr: c.client_addr,
                    synproxy: c.synproxy,
                    ops: c.ops,
                    stats: state.as_ref().map(|s| s.traffic.read()).unwrap_or_default(),
                    rates: state.map(|s| s.est.read()).unwrap_or_default(),
                    dests,
                    health_check: c.health.clone(),
                    sorry_server: c.sorry_server.as_ref().zip(c.sorry_addr()).map(
                        |(sorry, (ip, port))| {
                            let mut v = DestView {
                                in_service: snap.is_some_and(|s| s.sorry_in_service()),
                                ..DestView::idle(ip, port, sorry.fwd)
                            };
                            live_counters(&m, &mut v, key);
                            v
                        },
                    ),
                }
            })
            .collect();
        ListReply {
            ok: true,
            services,
            conn_table: self.conn_table(),
        }
    }

    fn conn_table(&self) -> ConnTableView {
        ConnTableView {
            count: self.conns.len(),
            capacity: self.conns.capacity(),
            adopted: *self.adopted.lock(),
        }
    }

    pub fn stats(&self) -> StatsReply {
        let workers: Vec<StatsSnapshot> = self.workers.iter().map(|w| w.snapshot()).collect();
        let mut total = StatsSnapshot::default();
        for w in self.workers.iter() {
            total.add(w);
        }
        let ports = self.ports.as_ref();
        StatsReply {
            ok: true,
            total,
            workers,
            ports: ports.map(|p| p.ports()).unwrap_or_default(),
            mempools: ports.map(|p| p.mempools()).unwrap_or_default(),
            vip_ownership: ports.and_then(|p| p.vip_ownership()),
            announce: ports.and_then(|p| p.announce()),
            local_twin: self.local_twin,
            conn_table: self.conn_table(),
        }
    }

    /// Up to `limit` connection entries, then persistence templates.
    pub fn connections(&self, limit: usize) -> ConnectionsReply {
        let now = crate::clock::now_ms();
        let mut out = Vec::new();
        self.conns.for_each(|c| {
            if out.len() < limit {
                out.push(ConnView {
                    proto: c.proto.name().to_string(),
                    state: c.state().name().to_string(),
                    expires_ms: c.expires_ms().saturating_sub(now),
                    cip: c.client(),
                    cport: c.cport,
                    vip: c.virt(),
                    vport: c.vport,
                    dip: c.real(),
                    dport: c.dport,
                    fwd: Some(c.fwd),
                    template: false,
                    controls: None,
                    fwmark: None,
                });
            }
        });
        self.conns.for_each_template(|t| {
            if out.len() < limit {
                // A fwmark template is the kernel's <IPPROTO_IP, cnet, 0,
                // fwmark, 0>: "proto": "ip", the mark as the "vip" address.
                let fwmark = match (t.key.proto, t.key.vaddr) {
                    (None, IpAddr::V4(a)) => Some(u32::from(a)),
                    _ => None,
                };
                out.push(ConnView {
                    proto: t.key.proto_name().to_ascii_lowercase(),
                    state: "NONE".to_string(),
                    expires_ms: t.expires_ms().saturating_sub(now),
                    cip: t.key.cnet,
                    cport: 0,
                    vip: t.key.vaddr,
                    vport: t.key.vport,
                    dip: t.dip,
                    dport: t.dport,
                    fwd: None,
                    template: true,
                    controls: Some(t.controlled()),
                    fwmark,
                });
            }
        });
        ConnectionsReply {
            ok: true,
            connections: out,
        }
    }

    /// Running sync daemons and the sync counters.
    pub fn daemon(&self) -> DaemonReply {
        DaemonReply {
            ok: true,
            daemons: self
                .sync
                .status()
                .into_iter()
                .map(|(state, c)| DaemonView {
                    state,
                    mcast_group: c.group(),
                    mcast_ifn: c.mcast_ifn,
                    syncid: c.syncid,
                    sync_maxlen: c.sync_maxlen,
                    mcast_port: c.mcast_port,
                    mcast_ttl: c.mcast_ttl,
                })
                .collect(),
            counters: self.sync.counters.read(),
        }
    }
}

/// A real server's (or the sorry server's) live counters, from the state
/// that outlives snapshots.
fn live_counters(m: &Master, v: &mut DestView, key: ServiceKey) {
    let load = |a: &std::sync::atomic::AtomicU32| a.load(Relaxed);
    if let Some(st) = m.registry.dest_state(&(key, v.ip, v.port)) {
        v.active = load(&st.active);
        v.inactive = load(&st.inactive);
        v.persist = load(&st.persist);
        v.overloaded = st.overloaded.load(Relaxed);
        v.stats = st.traffic.read();
        v.rates = st.est.read();
    }
}

impl Control {
    /// Every IPv4 VIP of a service, with whether some service on it has a
    /// real server the scheduler may pick (weight above 0 in the snapshot;
    /// a sorry server standing in does not count): what
    /// [`crate::announce`] announces.
    pub fn serving_vips(&self) -> std::collections::BTreeMap<std::net::Ipv4Addr, bool> {
        let mut out = std::collections::BTreeMap::new();
        for s in self.table.load().iter() {
            let key = s.conf.key();
            let IpAddr::V4(vip) = key.vip else { continue };
            if key.fwmark != 0 {
                continue;
            }
            let usable = !s.sorry_in_service() && s.dests.iter().any(|d| d.weight > 0);
            *out.entry(vip).or_insert(false) |= usable;
        }
        out
    }
}
