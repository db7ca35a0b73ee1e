//! What the control plane shows: the `list`, `stats` and `connections`
//! replies.

use super::*;

impl Control {
    /// The configuration (configured weights) with live counters, each real
    /// server's health, and what the snapshot does with it: `in_service`
    /// (false: removed after a failed check) and `effective_weight` (0 when
    /// quiesced). The sorry server is listed per service, with `in_service`.
    pub(super) fn list(&self) -> Value {
        let m = self.master.lock();
        let t = self.table.load();
        let load = |a: &std::sync::atomic::AtomicU32| a.load(Relaxed);
        let services: Vec<Value> = m
            .confs
            .iter()
            .map(|c| {
                let key = c.key();
                let snap = t.get(&key);
                let in_snap = |ip: IpAddr, port: u16| {
                    snap.and_then(|s| s.dests.iter().find(|d| d.ip == ip && d.port == port))
                };
                let counters = |v: &mut Value, ip: IpAddr, port: u16| {
                    if let Some(st) = m.registry.dest_state(&(key, ip, port)) {
                        v["active"] = json!(load(&st.active));
                        v["inactive"] = json!(load(&st.inactive));
                        v["persist"] = json!(load(&st.persist));
                        v["overloaded"] = json!(st.overloaded.load(Relaxed));
                        v["stats"] = json!(st.traffic.read());
                        v["rates"] = json!(st.est.read());
                    }
                };
                let dests: Vec<Value> = c
                    .dests
                    .iter()
                    .map(|d| {
                        let live = in_snap(d.ip, d.port);
                        let check = c.check_for(d);
                        let rec = m.health.get(&(key, d.ip, d.port));
                        let health = match (check, rec) {
                            (None, _) => "unchecked",
                            (Some(_), Some(r)) if r.down => "down",
                            (Some(_), _) => "up",
                        };
                        let r = rec.cloned().unwrap_or_default();
                        let mut v = json!({
                            "ip": d.ip, "port": d.port, "fwd": d.fwd, "weight": d.weight,
                            "u_threshold": d.u_threshold, "l_threshold": d.l_threshold,
                            "active": 0, "inactive": 0, "persist": 0, "overloaded": false,
                            "stats": crate::service::TrafficStats::default(),
                            "in_service": live.is_some(),
                            "effective_weight": live.map_or(0, |x| x.weight),
                            "health": health,
                            "check": check.map(|h| h.kind),
                            "health_counters": {"checks": r.checks, "failures": r.failures,
                                                "transitions": r.transitions},
                            "last_error": r.last_error,
                        });
                        if let Some(h) = &d.health {
                            v["health_check"] = json!(h);
                        }
                        tunnel_fields(&mut v, d);
                        counters(&mut v, d.ip, d.port);
                        v
                    })
                    .collect();
                let mut v = json!({
                    "sched": c.sched,
                    "persistent": c.persistent, "netmask": c.netmask, "sched_flags": c.sched_flags,
                    "laddrs": c.laddrs, "client_addr": c.client_addr, "synproxy": c.synproxy,
                    "stats": m.registry.service_state(&key).map(|s| s.traffic.read()).unwrap_or_default(),
                    "rates": m.registry.service_state(&key).map(|s| s.est.read()).unwrap_or_default(),
                    "dests": dests,
                });
                key_fields(&mut v, &key);
                if let Some(h) = &c.health {
                    v["health_check"] = json!(h);
                }
                if c.ops {
                    v["ops"] = json!(true);
                }
                if let (Some(sorry), Some((ip, port))) = (&c.sorry_server, c.sorry_addr()) {
                    let mut sv = json!({
                        "ip": ip, "port": port, "fwd": sorry.fwd,
                        "in_service": snap.is_some_and(|s| s.sorry_in_service()),
                        "weight": 1, "effective_weight": 1,
                        "u_threshold": 0, "l_threshold": 0,
                        "active": 0, "inactive": 0, "persist": 0, "overloaded": false,
                        "stats": crate::service::TrafficStats::default(),
                    });
                    counters(&mut sv, ip, port);
                    v["sorry_server"] = sv;
                }
                v
            })
            .collect();
        json!({"ok": true, "services": services,
               "conn_table": {"count": self.conns.len(), "capacity": self.conns.capacity()}})
    }

    pub(super) fn stats(&self) -> Value {
        let per: Vec<StatsSnapshot> = self.workers.iter().map(|w| w.snapshot()).collect();
        let mut total = StatsSnapshot::default();
        for w in self.workers.iter() {
            total.add(w);
        }
        let ports = self.ports.as_ref().map(|p| p.ports()).unwrap_or_default();
        let pools = self
            .ports
            .as_ref()
            .map(|p| p.mempools())
            .unwrap_or_default();
        let own = self
            .ports
            .as_ref()
            .map(|p| p.vip_ownership())
            .unwrap_or_default();
        json!({"ok": true, "total": total, "workers": per, "ports": ports, "mempools": pools,
               "vip_ownership": own, "local_twin": self.local_twin,
               "conn_table": {"count": self.conns.len(), "capacity": self.conns.capacity()}})
    }

    pub(super) fn connections(&self, limit: usize) -> Value {
        let now = crate::clock::now_ms();
        let mut out = Vec::new();
        self.conns.for_each(|c| {
            if out.len() < limit {
                out.push(json!({
                    "proto": c.proto, "state": c.state().name(),
                    "expires_ms": c.expires_ms().saturating_sub(now),
                    "cip": c.cip, "cport": c.cport, "vip": c.vip, "vport": c.vport,
                    "dip": c.dip, "dport": c.dport, "fwd": c.fwd,
                }));
            }
        });
        self.conns.for_each_template(|t| {
            if out.len() < limit {
                // A fwmark template is the kernel's <IPPROTO_IP, cnet, 0,
                // fwmark, 0>: "proto": "ip", the mark as the "vip" address.
                let mut v = json!({
                    "proto": t.key.proto_name().to_ascii_lowercase(), "state": "NONE",
                    "template": true,
                    "expires_ms": t.expires_ms().saturating_sub(now),
                    "cip": t.key.cnet, "cport": 0, "vip": t.key.vaddr, "vport": t.key.vport,
                    "dip": t.dip, "dport": t.dport, "controls": t.controlled(),
                });
                if t.key.proto.is_none() {
                    if let IpAddr::V4(a) = t.key.vaddr {
                        v["fwmark"] = json!(u32::from(a));
                    }
                }
                out.push(v);
            }
        });
        json!({"ok": true, "connections": out})
    }
}
