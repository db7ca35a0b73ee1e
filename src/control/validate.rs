//! Validation: every check a request or a whole configuration must pass
//! before a new table is published (ipvsadm's and the kernel's refusals,
//! with libipvs's messages).

use super::*;

// Messages are libipvs's `ipvs_strerror` texts, which operators' scripts
// match; the JSON `code` is the stable, machine-readable part.
pub(super) fn not_found(_: ServiceKey) -> CtlError {
    CtlError::new(ErrorCode::NotFound, "No such service")
}

pub(super) fn find(c: &[ServiceConf], k: ServiceKey) -> Result<usize, CtlError> {
    c.iter()
        .position(|s| s.key() == k)
        .ok_or_else(|| not_found(k))
}

/// For real-server operations ipvsadm says "Service not defined".
pub(super) fn find_for_dest(c: &[ServiceConf], k: ServiceKey) -> Result<usize, CtlError> {
    c.iter()
        .position(|s| s.key() == k)
        .ok_or_else(|| CtlError::new(ErrorCode::NotFound, "Service not defined"))
}

pub(super) fn fmt_dest(d: &DestConf) -> String {
    format!("{}:{}", d.ip, d.port)
}

/// Addresses no service, real server or local address can have: 0.0.0.0,
/// multicast, loopback and the limited broadcast.
pub(super) fn unusable(ip: IpAddr) -> bool {
    ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_loopback()
        || ip == IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

/// The director's own addresses and whether it has a kernel twin.
pub struct Locals<'a> {
    pub ips: &'a [IpAddr],
    pub twin: bool,
}

impl Locals<'_> {
    pub(super) fn contains(&self, ip: &IpAddr) -> bool {
        self.ips.contains(ip)
    }
    /// The kernel's rule (`__ip_vs_update_dest`: an address of type
    /// RTN_LOCAL is LOCALNODE whatever the method asked): a loopback or own
    /// address is "Local", which needs a kernel twin here. A non-local
    /// address cannot be "Local".
    pub(super) fn forward(
        &self,
        ip: IpAddr,
        fwd: Forward,
        what: &str,
    ) -> Result<Forward, CtlError> {
        if ip.is_loopback() || self.contains(&ip) {
            if !self.twin {
                return Err(CtlError::invalid(format!(
                    "{what}{ip} is the director's own address: IPVS would deliver to the \
                     director's stack (Local), which needs a port with a kernel_twin \
                     (docs/ha.md)"
                )));
            }
            Ok(Forward::Local)
        } else if fwd == Forward::Local {
            Err(CtlError::invalid(format!(
                "{what}{ip}: local forwarding is for the director's own addresses"
            )))
        } else {
            Ok(fwd)
        }
    }
}

pub(super) fn check_service(s: &mut ServiceConf, local: &Locals) -> Result<(), CtlError> {
    if !sched::is_known(&s.sched) {
        let known: Vec<_> = sched::names().collect();
        return Err(CtlError::invalid(format!(
            "unknown scheduler {:?} (known: {})",
            s.sched,
            known.join(" ")
        )));
    }
    if s.vip.is_ipv6() {
        // A prefix length, held as the kernel holds it (the number in the
        // u32; 255.255.255.255 is /128): ip_vs_add_service refuses one
        // outside 1..128 for IPv6 (EINVAL).
        let m = u32::from(s.netmask);
        if s.netmask != std::net::Ipv4Addr::BROADCAST && !(1..=127).contains(&m) {
            return Err(CtlError::invalid(format!(
                "illegal ipv6 netmask {}: a prefix length 1..128",
                s.netmask
            )));
        }
    }
    if s.is_fwmark() && (s.port != 0 || !s.vip.is_unspecified() || s.proto != Proto::Tcp) {
        return Err(CtlError::invalid(
            "a fwmark service has no proto, vip or port of its own",
        ));
    }
    if !s.is_fwmark() && unusable(s.vip) {
        return Err(CtlError::invalid(format!(
            "{} is not a usable virtual address",
            s.vip
        )));
    }
    let flags = sched::SchedFlags::parse(&s.sched, &s.sched_flags).map_err(CtlError::invalid)?;
    s.sched_flags = flags.names(&s.sched);
    // ipvsadm: `!ce.svc.fwmark && !ce.svc.port && !persistent` fails.
    if s.port == 0 && s.persistent.is_none() && !s.is_fwmark() {
        return Err(CtlError::invalid(
            "zero port specified for non-persistent service",
        ));
    }
    // ipvsadm.c: "One-Packet Scheduling is only for UDP virtual services"
    // (the kernel itself applies the flag to UDP packets only).
    if s.ops && !s.is_fwmark() && s.proto != crate::flow::Proto::Udp {
        return Err(CtlError::invalid(
            "one-packet scheduling (ops) is only for UDP virtual services",
        ));
    }
    if s.persistent == Some(0) {
        return Err(CtlError::invalid(
            "persistence timeout must be at least 1 second",
        ));
    }
    // Any netmask, with or without -p: the kernel takes the one ipvsadm's
    // parse_netmask (inet_aton) read and only uses it for persistence
    // (ip_vs_ctl.c `ip_vs_add_service` checks IPv6 prefix lengths only).
    if let Some(h) = &s.health {
        check_health(h)?;
    }
    if let Some(sorry) = &mut s.sorry_server {
        if sorry.ip.is_ipv4() {
            sorry.fwd = local.forward(sorry.ip, sorry.fwd, "sorry server: ")?;
        }
    }
    // After local.forward: the method the address really gets.
    if let Some((ip, fwd)) = s.sorry_server.as_ref().map(|x| (x.ip, x.fwd)) {
        check_family(s, ip, fwd, "sorry server ")?;
    }
    if let Some(sorry) = &mut s.sorry_server {
        check_sorry(sorry, s.port, s.fwmark != 0)?;
    }
    Ok(())
}

/// A real server (or sorry server) of the service's family, or an IPv4
/// one of an IPv6 service through FULLNAT: NAT64, as DPVS does it. The
/// kernel allows the other family only with tunnelling (`ip_vs_add_dest`:
/// "Mixed address family is only supported for tunnelling"), which rvs
/// does not do across families yet.
pub(super) fn check_family(
    s: &ServiceConf,
    ip: IpAddr,
    fwd: Forward,
    what: &str,
) -> Result<(), CtlError> {
    // Local delivery (the kernel twin) is IPv4's: the exception path
    // carries no IPv6 service traffic yet.
    if fwd == Forward::Local && (ip.is_ipv6() || s.vip.is_ipv6()) {
        return Err(CtlError::new(
            ErrorCode::Unsupported,
            format!("{what}{ip}: local delivery is not supported for IPv6 services yet"),
        ));
    }
    // A fwmark service's family is its placeholder address's (`-6`), and
    // its real servers follow the same rule (ip_vs_add_dest checks
    // `svc->af` against the dest's, marks or not).
    if ip.is_ipv6() == s.vip.is_ipv6() {
        return Ok(());
    }
    // NAT64, and tunnels either way (the kernel's "Mixed address family
    // is only supported for tunnelling", ip_vs_add_dest).
    if fwd == Forward::Tun || (s.vip.is_ipv6() && fwd == Forward::FullNat) {
        return Ok(());
    }
    Err(CtlError::new(
        ErrorCode::Unsupported,
        format!(
            "{what}{ip}: a real server of the other address family needs NAT64 (an IPv6 \
             service, IPv4 servers, --fullnat) or a tunnel (-i)"
        ),
    ))
}

pub(super) fn check_health(h: &HealthCheck) -> Result<(), CtlError> {
    h.validate()
        .map_err(|e| CtlError::invalid(format!("health check: {e}")))
}

/// A sorry server is a real server that stands in: the same address rules,
/// and DR/TUN use the service's port. Port 0 becomes the service port.
/// A fwmark service has no port, so any port goes (as for its real servers).
pub(super) fn check_sorry(
    sorry: &mut SorryServer,
    svc_port: u16,
    fwmark: bool,
) -> Result<(), CtlError> {
    if sorry.port == 0 {
        sorry.port = svc_port;
    }
    let ip = sorry.ip;
    if unusable(ip) && sorry.fwd != Forward::Local {
        return Err(CtlError::invalid(format!(
            "sorry server: {ip} is not a usable real server address"
        )));
    }
    // DR/TUN cannot map ports: they use the service's, as ipvsadm sets
    // `ce.dest.port = ce.svc.port` (ipvsadm.c `process_options`), except
    // for fwmark services ("Don't worry about this if fwmark is used").
    if matches!(sorry.fwd, Forward::Dr | Forward::Tun) && !fwmark {
        sorry.port = svc_port;
    }
    Ok(())
}

pub(super) fn check_dest(
    s: &ServiceConf,
    mut d: DestConf,
    local: &Locals,
) -> Result<DestConf, CtlError> {
    if d.port == 0 {
        d.port = s.port;
    }
    d.fwd = local.forward(d.ip, d.fwd, "")?;
    check_family(s, d.ip, d.fwd, "real server ")?;
    if unusable(d.ip) && d.fwd != Forward::Local {
        return Err(CtlError::invalid(format!(
            "{} is not a usable real server address",
            d.ip
        )));
    }
    if let Some(h) = &d.health {
        check_health(h)?;
    }
    if d.weight > 65535 {
        return Err(CtlError::invalid(format!(
            "illegal weight specified: {} (0..65535)",
            d.weight
        )));
    }
    // The kernel refuses l > u even without an upper threshold
    // (ip_vs_ctl.c `ip_vs_add_dest`/`ip_vs_edit_dest`: -ERANGE).
    if d.l_threshold > d.u_threshold {
        return Err(CtlError::invalid(
            "lower threshold is above the upper threshold",
        ));
    }
    d.check_tunnel().map_err(CtlError::invalid)?;
    if d.ip.is_ipv4()
        && s.vip.is_ipv6()
        && d.fwd == Forward::Tun
        && d.tunnel().kind != TunType::Ipip
    {
        return Err(CtlError::new(
            ErrorCode::Unsupported,
            format!(
                "{}: an IPv4 real server of an IPv6 service takes --tun-type ipip (IPv6 in \
                 IPv4) only",
                d.ip
            ),
        ));
    }
    if d.ip.is_ipv6() && d.fwd == Forward::Tun && d.tunnel().kind != TunType::Ipip {
        return Err(CtlError::new(
            ErrorCode::Unsupported,
            format!(
                "{}: an IPv6 real server takes --tun-type ipip (IPv6 in IPv6) only so far",
                d.ip
            ),
        ));
    }
    // DR/TUN cannot map ports: a real server on another port is stored
    // with the service's, as ipvsadm sends it (`ce.dest.port =
    // ce.svc.port` in ipvsadm.c `process_options`), so a keepalived DR
    // real_server on another port imports as it runs under the kernel.
    // ipvsadm: "Don't worry about this if fwmark is used" (a fwmark
    // service has no port; DR/TUN forward the packet's own port).
    if matches!(d.fwd, Forward::Dr | Forward::Tun) && !s.is_fwmark() {
        d.port = s.port;
    }
    Ok(d)
}

pub(super) fn add_service(
    c: &mut Vec<ServiceConf>,
    mut s: ServiceConf,
    local: &Locals,
) -> Result<(), CtlError> {
    check_service(&mut s, local)?;
    if c.iter().any(|x| x.key() == s.key()) {
        return Err(CtlError::new(ErrorCode::Exists, "Service already exists"));
    }
    for z in s.laddrs.clone() {
        check_laddr(c, z, local.ips)?;
    }
    let dests = std::mem::take(&mut s.dests);
    for d in dests {
        let d = check_dest(&s, d, local)?;
        if s.dests.iter().any(|x| x.ip == d.ip && x.port == d.port) {
            return Err(CtlError::new(
                ErrorCode::Exists,
                format!("destination {} listed twice", fmt_dest(&d)),
            ));
        }
        s.dests.push(d);
    }
    c.push(s);
    Ok(())
}

/// `t` with the non-zero values of `c` applied.
pub fn apply_timeouts(mut t: Timeouts, c: &TimeoutConf) -> Timeouts {
    for (v, s) in [
        (c.tcp, State::Established),
        (c.tcpfin, State::FinWait),
        (c.udp, State::Udp),
        (c.syn_recv, State::SynRecv),
        (c.time_wait, State::TimeWait),
        (c.close, State::Close),
        (c.close_wait, State::CloseWait),
        (c.last_ack, State::LastAck),
    ] {
        if v > 0 {
            t.0[s as usize] = v;
        }
    }
    t
}

/// A FULLNAT local address must be the director's to use: not a port
/// address, a VIP or a real server.
pub(super) fn check_laddr(c: &[ServiceConf], ip: IpAddr, local: &[IpAddr]) -> Result<(), CtlError> {
    if unusable(ip) {
        return Err(CtlError::invalid(format!(
            "{ip} is not a usable local address"
        )));
    }
    if local.contains(&ip) {
        return Err(CtlError::invalid(format!(
            "{ip} is a port address; a local address must be an extra one"
        )));
    }
    if c.iter()
        .any(|s| s.vip == ip || s.dests.iter().any(|d| d.ip == ip))
    {
        return Err(CtlError::invalid(format!(
            "{ip} is a virtual or real server address"
        )));
    }
    Ok(())
}

/// The fwmark rules compiled, or every problem with them in one error. A
/// single-address rule must not be one of the director's own addresses
/// (its traffic is never classified: see the data path).
pub(super) fn check_rules(rules: &[FwmarkRule], local: &[IpAddr]) -> Result<Classifier, CtlError> {
    let mut errs: Vec<String> = match Classifier::build(rules) {
        Ok(c) => {
            let own: Vec<String> = c
                .hosts()
                .filter(|(ip, _)| local.contains(ip))
                .map(|(ip, _)| format!("fwmark_rules: {ip} is the director's own address"))
                .collect();
            if own.is_empty() {
                return Ok(c);
            }
            own
        }
        Err(e) => e.iter().map(ToString::to_string).collect(),
    };
    errs.dedup();
    Err(CtlError::invalid(errs.join("; ")))
}

/// Rules that span a whole service: FULLNAT servers need a local address;
/// client-address delivery is TCP only.
pub(super) fn check_whole(c: &[ServiceConf]) -> Result<(), CtlError> {
    for s in c {
        // An IPv6 service may have IPv4 local addresses (NAT64); an IPv4
        // one no IPv6 local address.
        if let Some(l) = s.laddrs.iter().find(|l| l.is_ipv6() && s.vip.is_ipv4()) {
            return Err(CtlError::new(
                ErrorCode::Unsupported,
                format!(
                    "{}: local address {l} is IPv6 (an IPv4 service reaches IPv4 servers only)",
                    s.key()
                ),
            ));
        }
        if let Some(d) = s.dests.iter().find(|d| {
            d.fwd == Forward::FullNat && !s.laddrs.iter().any(|l| l.is_ipv6() == d.ip.is_ipv6())
        }) {
            return Err(CtlError::invalid(format!(
                "{}: FULLNAT real servers need a local address of their family ({} has none: \
                 rvsadm --add-laddr -z LIP)",
                s.key(),
                d.ip
            )));
        }
        if s.proto == Proto::Udp && s.client_addr != ClientAddr::None {
            return Err(CtlError::invalid(
                "TOA and the PROXY protocol are for TCP services only",
            ));
        }
        if s.synproxy {
            if s.proto != Proto::Tcp {
                return Err(CtlError::invalid(format!(
                    "{}: the SYN proxy is for TCP services only",
                    s.key()
                )));
            }
            if s.client_addr == ClientAddr::ProxyV2 {
                return Err(CtlError::invalid(format!(
                    "{}: the SYN proxy and the PROXY protocol cannot be combined",
                    s.key()
                )));
            }
            // NAT64: the proxy writes its segments in the client's family
            // and the translation would have to follow them.
            let ips = s
                .dests
                .iter()
                .map(|d| d.ip)
                .chain(s.sorry_server.as_ref().map(|x| x.ip));
            if let Some(ip) = ips.into_iter().find(|ip| ip.is_ipv6() != s.vip.is_ipv6()) {
                return Err(CtlError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "{}: the SYN proxy is not supported through NAT64 ({ip}) yet",
                        s.key()
                    ),
                ));
            }
            let fwds = s
                .dests
                .iter()
                .map(|d| d.fwd)
                .chain(s.sorry_server.as_ref().map(|x| x.fwd));
            if let Some(f) = fwds
                .into_iter()
                .find(|f| !matches!(f, Forward::Nat | Forward::FullNat))
            {
                return Err(CtlError::invalid(format!(
                    "{}: the SYN proxy needs NAT or FULLNAT real servers (it must see the replies), not {}",
                    s.key(),
                    f.ipvsadm_name()
                )));
            }
        }
        if let Some(d) = s
            .dests
            .iter()
            .find(|d| d.port == 0 && s.check_for(d).is_some_and(|h| h.port.is_none()))
        {
            return Err(CtlError::invalid(format!(
                "{}: real server {} has port 0 (all ports): its health check needs a port",
                s.key(),
                d.ip
            )));
        }
        if let (Some(sorry), Some((ip, port))) = (&s.sorry_server, s.sorry_addr()) {
            if s.dests.iter().any(|d| d.ip == ip && d.port == port) {
                return Err(CtlError::invalid(format!(
                    "{}: the sorry server {ip}:{port} is also a real server",
                    s.key()
                )));
            }
            if sorry.fwd == Forward::FullNat
                && !s.laddrs.iter().any(|l| l.is_ipv6() == sorry.ip.is_ipv6())
            {
                return Err(CtlError::invalid(format!(
                    "{}: a FULLNAT sorry server needs a local address of its family",
                    s.key()
                )));
            }
        }
    }
    Ok(())
}

/// Timeouts from the config file's form.
pub fn timeouts_from(c: &TimeoutConf) -> Timeouts {
    apply_timeouts(Timeouts::default(), c)
}
