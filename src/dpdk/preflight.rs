//! Before the EAL starts: does this process have what its DPDK devices need?
//!
//! A DPDK virtual device whose driver lacks a permission does not stop
//! `rte_eal_init`: the vdev bus logs the probe failure and carries on, and the
//! daemon only finds later that the port does not exist. In a container that
//! reads as a configuration mistake (`no DPDK port named "net_af_packet0"`)
//! when the real cause is a missing `--cap-add`. This module reads the EAL
//! arguments, works out what each device needs, and compares that with what
//! the process has (effective capabilities, device nodes, hugetlbfs mounts,
//! free hugepages), so rvsd can name the missing permission and how to grant
//! it before touching DPDK.
//!
//! What each driver needs, from DPDK 22.11's sources:
//! - `net_af_packet` (drivers/net/af_packet/rte_eth_af_packet.c,
//!   `rte_pmd_init_internals`): `socket(AF_PACKET, SOCK_RAW, ...)`, which the
//!   kernel allows only with CAP_NET_RAW (net/packet/af_packet.c,
//!   `packet_create`); starting the port restores its MAC address and
//!   promiscuous mode (lib/ethdev/rte_ethdev.c, `eth_dev_config_restore`),
//!   `SIOCSIFHWADDR`/`SIOCSIFFLAGS` ioctls that need CAP_NET_ADMIN
//!   (net/core/dev_ioctl.c): without it `rte_eth_dev_start` fails with EPERM
//!   (seen with dpdk-testpmd under `setpriv --bounding-set -all,+net_raw`).
//! - `net_tap`/`net_tun` (drivers/net/tap/rte_eth_tap.c, `tun_alloc`): opens
//!   /dev/net/tun and creates the interface with `TUNSETIFF`, which needs
//!   CAP_NET_ADMIN (drivers/net/tun.c, `tun_set_iff`), then brings it up.
//! - `net_pcap` on an interface (`iface=`, `rx_iface=`...): a libpcap live
//!   capture, an AF_PACKET socket again (CAP_NET_RAW).
//! - EAL memory (lib/eal/linux/eal_hugepage_info.c, `hugepage_info_init`):
//!   without `--no-huge` the EAL needs free hugepages, and without
//!   `--in-memory` also a mounted hugetlbfs (`--huge-dir` names which).
//! - PCI devices bound to vfio-pci: /dev/vfio/vfio and the device's group.
//!
//! Pure reading of /proc, /sys and /dev: no DPDK, no unsafe.

use std::fmt;
use std::path::{Path, PathBuf};

/// Capability numbers (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;

/// What the host gives this process, as far as DPDK devices care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Effective capability set (`CapEff` in /proc/self/status); `None` when
    /// unreadable, and then capabilities are not judged.
    pub cap_eff: Option<u64>,
    /// Mount points of hugetlbfs file systems.
    pub hugetlbfs: Vec<PathBuf>,
    /// Free hugepages summed over every page size; `None` when /sys is not
    /// readable.
    pub free_hugepages: Option<u64>,
    /// Opening /dev/net/tun read-write: `Ok` or the error's text.
    pub tun: Result<(), String>,
    /// Whether /dev/vfio/vfio exists.
    pub vfio: bool,
}

impl Host {
    /// Reads this process's view of the machine.
    pub fn probe() -> Host {
        let cap_eff = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| parse_cap_eff(&s));
        let hugetlbfs = std::fs::read_to_string("/proc/self/mounts")
            .map(|m| parse_hugetlbfs_mounts(&m))
            .unwrap_or_default();
        let free_hugepages = free_hugepages(Path::new("/sys/kernel/mm/hugepages"));
        let tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map(drop)
            .map_err(|e| e.to_string());
        let vfio = Path::new("/dev/vfio/vfio").exists();
        Host {
            cap_eff,
            hugetlbfs,
            free_hugepages,
            tun,
            vfio,
        }
    }

    /// Whether capability `cap` is effective (true when unknown: never
    /// complain about what cannot be read).
    pub fn has_cap(&self, cap: u32) -> bool {
        self.cap_eff.is_none_or(|c| c & (1u64 << cap) != 0)
    }
}

/// `CapEff` from /proc/self/status text.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Mount points of the hugetlbfs entries in /proc/mounts text.
pub fn parse_hugetlbfs_mounts(mounts: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_src, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "hugetlbfs").then(|| PathBuf::from(unescape_mount(dir)))
        })
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Free hugepages over every `hugepages-*` directory under `dir`.
fn free_hugepages(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut total = 0u64;
    for e in entries.flatten() {
        if let Ok(s) = std::fs::read_to_string(e.path().join("free_hugepages")) {
            total += s.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(total)
}

/// One missing permission: which device needs it, what is missing, and how
/// a container grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The device (`net_af_packet0 (iface=lb0)`) or `EAL memory`.
    pub device: String,
    /// What is missing and why the device needs it.
    pub missing: String,
    /// How to grant it (docker/podman run flags or host steps).
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; fix: {}", self.device, self.missing, self.fix)
    }
}

/// The `--vdev` specifications in EAL arguments (`--vdev X` and `--vdev=X`).
pub fn vdevs(eal_args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        if a == "--vdev" {
            if let Some(v) = it.next() {
                out.push(v.as_str());
            }
        } else if let Some(v) = a.strip_prefix("--vdev=") {
            out.push(v);
        }
    }
    out
}

/// The value of EAL option `name` (`--name V` or `--name=V`), if present.
fn option<'a>(eal_args: &'a [String], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        if a == name {
            return it.next().map(String::as_str);
        }
        if let Some(v) = a.strip_prefix(&eq) {
            return Some(v);
        }
    }
    None
}

/// PCI addresses given with `-a`/`--allow` (or the old `-w`).
fn pci_devices(eal_args: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        let v = match a.as_str() {
            "-a" | "--allow" | "-w" | "--pci-whitelist" => it.next().map(String::as_str),
            _ => a
                .strip_prefix("--allow=")
                .or_else(|| a.strip_prefix("-a"))
                .filter(|v| !v.is_empty()),
        };
        if let Some(v) = v {
            // "0000:01:00.0,devargs": the address before the first comma.
            out.push(v.split(',').next().unwrap_or(v));
        }
    }
    out
}

/// A vdev's driver name: "net_af_packet0,iface=lb0" -> "net_af_packet".
fn driver_of(spec: &str) -> &str {
    let name = spec.split(',').next().unwrap_or(spec);
    name.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// The `key=value` arguments of a vdev specification.
fn devargs(spec: &str) -> impl Iterator<Item = (&str, &str)> {
    spec.split(',').skip(1).filter_map(|kv| kv.split_once('='))
}

/// A readable name for a vdev: its name and interface argument, if any.
fn describe(spec: &str) -> String {
    let name = spec.split(',').next().unwrap_or(spec);
    let iface: Vec<String> = devargs(spec)
        .filter(|(k, _)| k.ends_with("iface"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if iface.is_empty() {
        name.to_owned()
    } else {
        format!("{name} ({})", iface.join(", "))
    }
}

const CAP_FIX: &str = "docker/podman run";

/// What the devices in `eal_args` need that `host` does not give. Empty when
/// everything needed is there (or cannot be judged).
pub fn check(eal_args: &[String], host: &Host) -> Vec<Problem> {
    let mut problems = Vec::new();
    let need_cap = |problems: &mut Vec<Problem>, dev: &str, cap: u32, why: &str| {
        if !host.has_cap(cap) {
            let (name, flag) = match cap {
                CAP_NET_RAW => ("CAP_NET_RAW", "NET_RAW"),
                _ => ("CAP_NET_ADMIN", "NET_ADMIN"),
            };
            problems.push(Problem {
                device: dev.to_owned(),
                missing: format!("missing capability {name} ({why})"),
                fix: format!("{CAP_FIX} --cap-add {flag}"),
            });
        }
    };
    for spec in vdevs(eal_args) {
        let dev = describe(spec);
        match driver_of(spec) {
            "net_af_packet" | "eth_af_packet" => {
                need_cap(
                    &mut problems,
                    &dev,
                    CAP_NET_RAW,
                    "the driver opens an AF_PACKET socket",
                );
                need_cap(
                    &mut problems,
                    &dev,
                    CAP_NET_ADMIN,
                    "starting the port sets the interface's MAC address and flags",
                );
            }
            "net_tap" | "net_tun" => {
                if let Err(e) = &host.tun {
                    problems.push(Problem {
                        device: dev.clone(),
                        missing: format!("cannot open /dev/net/tun: {e}"),
                        fix: format!("{CAP_FIX} --device /dev/net/tun"),
                    });
                }
                need_cap(
                    &mut problems,
                    &dev,
                    CAP_NET_ADMIN,
                    "the driver creates and configures the TAP interface",
                );
            }
            "net_pcap" | "eth_pcap" if devargs(spec).any(|(k, _)| k.ends_with("iface")) => {
                need_cap(
                    &mut problems,
                    &dev,
                    CAP_NET_RAW,
                    "a live capture on an interface opens an AF_PACKET socket",
                );
            }
            _ => {}
        }
    }

    let no_huge = eal_args.iter().any(|a| a == "--no-huge");
    let in_memory = eal_args.iter().any(|a| a == "--in-memory");
    if !no_huge {
        let mem = "EAL memory (hugepages)".to_owned();
        if !in_memory {
            match option(eal_args, "--huge-dir") {
                Some(dir) if !host.hugetlbfs.iter().any(|m| m == Path::new(dir)) => {
                    problems.push(Problem {
                        device: mem.clone(),
                        missing: format!("--huge-dir {dir} is not a hugetlbfs mount point"),
                        fix: format!(
                            "mount hugetlbfs there ({CAP_FIX} -v /dev/hugepages:{dir} \
                             when the host has it at /dev/hugepages)"
                        ),
                    });
                }
                None if host.hugetlbfs.is_empty() => problems.push(Problem {
                    device: mem.clone(),
                    missing: "no hugetlbfs is mounted".to_owned(),
                    fix: format!(
                        "{CAP_FIX} -v /dev/hugepages:/dev/hugepages (the host's hugetlbfs), \
                         or put --in-memory (hugepages without a mount) or \
                         --no-huge -m 512 (no hugepages) in eal_args"
                    ),
                }),
                _ => {}
            }
        }
        if host.free_hugepages == Some(0) {
            problems.push(Problem {
                device: mem,
                missing: "no free hugepages (every /sys/kernel/mm/hugepages/*/free_hugepages is 0)"
                    .to_owned(),
                fix: "reserve them on the host (echo 512 > \
                      /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) \
                      or put --no-huge -m 512 in eal_args"
                    .to_owned(),
            });
        }
    }

    if !eal_args.iter().any(|a| a == "--no-pci") && !host.vfio {
        for pci in pci_devices(eal_args) {
            problems.push(Problem {
                device: format!("PCI device {pci}"),
                missing: "no /dev/vfio/vfio (the NIC must be bound to vfio-pci)".to_owned(),
                fix: format!(
                    "{CAP_FIX} --device /dev/vfio/vfio --device /dev/vfio/GROUP \
                     (GROUP: basename of /sys/bus/pci/devices/{pci}/iommu_group) \
                     --ulimit memlock=-1"
                ),
            });
        }
    }
    problems
}

/// The text rvsd prints for `problems` (one line each under a heading).
pub fn report(problems: &[Problem]) -> String {
    let mut s =
        String::from("missing permissions for the configured DPDK devices (DPDK was not started):");
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s.push_str("\n(docs/containers.md lists what each kind of device needs)");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    /// Everything granted: root with all capabilities, a mount, free pages.
    fn full() -> Host {
        Host {
            cap_eff: Some(0x1ff_ffff_ffff),
            hugetlbfs: vec![PathBuf::from("/dev/hugepages")],
            free_hugepages: Some(512),
            tun: Ok(()),
            vfio: true,
        }
    }

    fn without(cap: u32) -> Host {
        Host {
            cap_eff: Some(0x1ff_ffff_ffff & !(1u64 << cap)),
            ..full()
        }
    }

    #[test]
    fn cap_eff_and_mounts_parse() {
        let status = "Name:\trvsd\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000003000\n";
        assert_eq!(parse_cap_eff(status), Some(0x3000));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
        let mounts = "sysfs /sys sysfs rw 0 0\n\
                      hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n\
                      none /mnt/huge\\0401G hugetlbfs rw,pagesize=1024M 0 0\n";
        assert_eq!(
            parse_hugetlbfs_mounts(mounts),
            vec![
                PathBuf::from("/dev/hugepages"),
                PathBuf::from("/mnt/huge 1G")
            ]
        );
    }

    #[test]
    fn vdev_forms_and_drivers() {
        let a = args("--no-pci --vdev net_af_packet0,iface=lb0 --vdev=net_tap1,iface=t1 -l 0");
        assert_eq!(
            vdevs(&a),
            vec!["net_af_packet0,iface=lb0", "net_tap1,iface=t1"]
        );
        assert_eq!(driver_of("net_af_packet12,iface=x"), "net_af_packet");
        assert_eq!(driver_of("net_null0"), "net_null");
        assert_eq!(
            describe("net_af_packet0,iface=lb0,qpairs=2"),
            "net_af_packet0 (iface=lb0)"
        );
    }

    #[test]
    fn nothing_missing_with_full_privileges() {
        let a = args(
            "--in-memory --vdev net_af_packet0,iface=lb0 --vdev net_tap0,iface=t0 \
             --vdev net_pcap0,iface=x -a 0000:01:00.0",
        );
        assert_eq!(check(&a, &full()), vec![]);
    }

    #[test]
    fn af_packet_names_both_capabilities() {
        let a = args("--no-pci --in-memory --vdev net_af_packet0,iface=lb0");
        let p = check(&a, &without(CAP_NET_RAW));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].device, "net_af_packet0 (iface=lb0)");
        assert!(p[0].missing.contains("CAP_NET_RAW"), "{p:?}");
        assert!(p[0].fix.contains("--cap-add NET_RAW"), "{p:?}");
        let p = check(&a, &without(CAP_NET_ADMIN));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].fix.contains("--cap-add NET_ADMIN"), "{p:?}");
    }

    #[test]
    fn tap_needs_the_device_node_and_net_admin() {
        let a = args("--no-pci --no-huge -m 256 --vdev net_tap0,iface=rvs0");
        // CAP_NET_RAW is not needed for a TAP device.
        assert_eq!(check(&a, &without(CAP_NET_RAW)), vec![]);
        let p = check(&a, &without(CAP_NET_ADMIN));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].missing.contains("CAP_NET_ADMIN"), "{p:?}");
        let host = Host {
            tun: Err("No such file or directory (os error 2)".into()),
            ..full()
        };
        let p = check(&a, &host);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].missing.contains("/dev/net/tun"), "{p:?}");
        assert!(p[0].fix.contains("--device /dev/net/tun"), "{p:?}");
    }

    #[test]
    fn pcap_needs_net_raw_only_on_an_interface() {
        let files = args("--no-huge --vdev net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap");
        assert_eq!(check(&files, &without(CAP_NET_RAW)), vec![]);
        let live = args("--no-huge --vdev net_pcap0,iface=eth0");
        assert_eq!(check(&live, &without(CAP_NET_RAW)).len(), 1);
    }

    #[test]
    fn memory_needs_by_mode() {
        let unmounted = Host {
            hugetlbfs: vec![],
            ..full()
        };
        let plain = args("--no-pci --vdev net_null0");
        let p = check(&plain, &unmounted);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].missing.contains("hugetlbfs"), "{p:?}");
        assert!(
            p[0].fix.contains("-v /dev/hugepages:/dev/hugepages"),
            "{p:?}"
        );
        // --in-memory takes hugepages without a mount; --no-huge none at all.
        assert_eq!(
            check(&args("--in-memory --vdev net_null0"), &unmounted),
            vec![]
        );
        assert_eq!(check(&args("--no-huge -m 64"), &unmounted), vec![]);
        // --huge-dir must be one of the mounts.
        let p = check(&args("--huge-dir /mnt/huge"), &full());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(check(&args("--huge-dir=/dev/hugepages"), &full()), vec![]);
        // No free pages: only --no-huge gets by.
        let empty = Host {
            free_hugepages: Some(0),
            ..full()
        };
        assert_eq!(check(&args("--in-memory"), &empty).len(), 1);
        assert_eq!(check(&args("--no-huge"), &empty), vec![]);
        // Unreadable /sys or /proc: no verdict rather than a false one.
        let unknown = Host {
            cap_eff: None,
            free_hugepages: None,
            ..full()
        };
        assert_eq!(
            check(&args("--in-memory --vdev net_af_packet0,iface=x"), &unknown),
            vec![]
        );
    }

    #[test]
    fn pci_devices_need_vfio() {
        let host = Host {
            vfio: false,
            ..full()
        };
        let a = args("--in-memory -a 0000:01:00.0,rx_queues=2 --allow=0000:02:00.0");
        let p = check(&a, &host);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].device.contains("0000:01:00.0"), "{p:?}");
        assert!(p[0].fix.contains("--device /dev/vfio/vfio"), "{p:?}");
        assert_eq!(check(&args("--in-memory --no-pci"), &host), vec![]);
    }
}
