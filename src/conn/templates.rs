//! Persistence templates (the kernel's `ip_vs_conn` templates of
//! `ip_vs_sched_persist`), kept beside the connections.

use super::*;

/// The key of a persistence template: the kernel's
/// `<protocol, caddr & netmask, 0, vaddr, vport>` (`ip_vs_sched_persist`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    /// The service's protocol; None is the kernel's IPPROTO_IP of a fwmark
    /// service's template, which every protocol of the client shares.
    pub proto: Option<Proto>,
    /// The client's network (source address masked by the service netmask).
    pub cnet: IpAddr,
    /// The VIP, or for a fwmark service the mark written as an address
    /// (the kernel's `{ .ip = htonl(svc->fwmark) }`).
    pub vaddr: IpAddr,
    /// The virtual port; 0 for port-zero and fwmark services.
    pub vport: u16,
}

impl TemplateKey {
    /// The key of a fwmark service's template:
    /// `<IPPROTO_IP, cnet, 0, fwmark, 0>`.
    pub fn fwmark(cnet: IpAddr, mark: u32) -> TemplateKey {
        TemplateKey {
            proto: None,
            cnet,
            vaddr: IpAddr::V4(Ipv4Addr::from(mark)),
            vport: 0,
        }
    }
    /// The protocol as `ipvsadm -L -c` names it ("IP" for fwmark templates).
    pub fn proto_name(&self) -> &'static str {
        self.proto.map_or("IP", Proto::upper)
    }
    /// The key as a flow key, to pick its shard with the table's hash.
    pub(super) fn flow_key(&self) -> FlowKey {
        FlowKey {
            proto: self.proto.unwrap_or(Proto::Tcp),
            src: self.cnet,
            dst: self.vaddr,
            // Only spreads fwmark templates over shards differently: the
            // map itself compares whole keys.
            sport: self.proto.is_none() as u16,
            dport: self.vport,
        }
    }
}

/// A persistence template (kernel IP_VS_CONN_F_TEMPLATE): "clients of this
/// network go to that real server", keyed by [`TemplateKey`].
#[derive(Debug)]
pub struct Template {
    pub key: TemplateKey,
    pub dip: IpAddr,
    pub dport: u16,
    pub dest: Arc<DestState>,
    pub(super) timeout_ms: u64,
    pub(super) expires: AtomicU64,
    /// Live connections this template controls (kernel `n_control`).
    pub(super) controlled: AtomicU32,
    pub(super) dead: AtomicU8,
}

impl Template {
    pub fn new(
        key: TemplateKey,
        dip: IpAddr,
        dport: u16,
        dest: Arc<DestState>,
        timeout_s: u32,
        now_ms: u64,
    ) -> Self {
        let timeout_ms = timeout_s as u64 * 1000;
        Template {
            key,
            dip,
            dport,
            dest,
            timeout_ms,
            expires: AtomicU64::new(now_ms + timeout_ms),
            controlled: AtomicU32::new(0),
            dead: AtomicU8::new(0),
        }
    }
    /// A new connection used the template: re-arm it (kernel
    /// `ip_vs_conn_put(ct)` in `ip_vs_sched_persist`).
    pub fn touch(&self, now_ms: u64) {
        self.expires.store(now_ms + self.timeout_ms, Relaxed);
    }
    pub fn expires_ms(&self) -> u64 {
        self.expires.load(Relaxed)
    }
    pub fn controlled(&self) -> u32 {
        self.controlled.load(Relaxed)
    }
    pub(super) fn kill(&self) -> bool {
        if self.dead.swap(1, Relaxed) != 0 {
            return false;
        }
        self.dest.persist.fetch_sub(1, Relaxed);
        self.dest.check_overload_on_unbind();
        true
    }
}

/// A template that still controls connections when it times out is kept
/// another minute (kernel `ip_vs_conn_expire`).
pub const TEMPLATE_RETRY_MS: u64 = 60_000;

impl ConnTable {
    /// The live persistence template under `key`.
    pub fn template(&self, key: &TemplateKey) -> Option<Arc<Template>> {
        let s = self.templates[self.template_shard(key)].read();
        s.get(key).filter(|t| t.dead.load(Relaxed) == 0).cloned()
    }

    pub(super) fn template_shard(&self, key: &TemplateKey) -> usize {
        // IPv6 templates spread over the shards too (an IPv4-only hash
        // put them all in shard 0, behind one lock).
        match self.key_hash(&key.flow_key()) {
            Some(h) => (h >> 20) as usize % self.templates.len(),
            None => 0,
        }
    }

    /// Add a template, replacing (and ending) one with the same key whose
    /// real server is gone.
    pub fn insert_template(&self, t: Template) -> Result<Arc<Template>, InsertError> {
        if self.count.fetch_add(1, Relaxed) >= self.max {
            self.count.fetch_sub(1, Relaxed);
            return Err(InsertError::Full);
        }
        let t = Arc::new(t);
        let old = self.templates[self.template_shard(&t.key)]
            .write()
            .insert(t.key, t.clone());
        if let Some(old) = old {
            if old.kill() {
                self.count.fetch_sub(1, Relaxed);
            }
        }
        t.dest.persist.fetch_add(1, Relaxed);
        t.dest.check_overload_on_bind();
        Ok(t)
    }

    /// Visit every live persistence template.
    pub fn for_each_template(&self, mut f: impl FnMut(&Template)) {
        for s in self.templates.iter() {
            for t in s.read().values() {
                f(t);
            }
        }
    }

    /// Expire what is due in one template shard (workers take one per
    /// millisecond). Returns how many templates ended.
    pub fn expire_templates(&self, shard: usize, now_ms: u64) -> usize {
        let mut dead = Vec::new();
        {
            let mut s = self.templates[shard % self.templates.len()].write();
            s.retain(|_, t| {
                if t.expires_ms() > now_ms {
                    return true;
                }
                if t.controlled() > 0 && now_ms != u64::MAX {
                    t.expires.store(now_ms + TEMPLATE_RETRY_MS, Relaxed);
                    return true;
                }
                dead.push(t.clone());
                false
            });
        }
        let mut n = 0;
        for t in dead {
            if t.kill() {
                self.count.fetch_sub(1, Relaxed);
                n += 1;
            }
        }
        n
    }
}
