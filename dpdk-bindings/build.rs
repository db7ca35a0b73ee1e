//! Builds the C shim and the bindgen bindings against the system DPDK.
//!
//! pkg-config runs as a plain command on purpose: the `pkg-config` crate
//! drops `-march=corei7` from the cflags, and DPDK's headers refuse to compile
//! without the SSE4.2 it implies.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(arg: &str) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args([arg, "libdpdk"])
        .output()
        .unwrap_or_else(|e| {
            panic!("running pkg-config {arg} libdpdk: {e} (apt-get install pkg-config dpdk-dev)")
        });
    if !out.status.success() {
        panic!(
            "pkg-config {arg} libdpdk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout)
        .expect("pkg-config output is not UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    for f in ["build.rs", "shim.c", "shim.h", "wrapper.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let cflags = pkg_config("--cflags");
    let libs = pkg_config("--libs");

    let mut cc = cc::Build::new();
    cc.file("shim.c").include(".").opt_level(3);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("rvs_dpdk_shim");

    // Debian ships shared DPDK: the rte_* libraries link dynamically and the
    // PMDs are loaded from the plugin directory by rte_eal_init. Link flags go
    // out as rustc-link-lib so they reach the final binaries (rustc-link-arg
    // from a library crate does not).
    for f in &libs {
        if let Some(lib) = f.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        } else if let Some(dir) = f.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
        // -Wl,--as-needed: rustc already passes it for gnu targets.
    }
    // rte_eth_from_rings lives in the net_ring PMD, which pkg-config does not
    // list (PMDs are plugins); --as-needed keeps it out of binaries that do
    // not call it.
    println!("cargo:rustc-link-lib=rte_net_ring");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        // DPDK's doc comments hold C samples that rustdoc would run as doctests.
        .generate_comments(false)
        .clang_args(&cflags)
        .clang_arg("-I.")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_function("rte_eal_(init|cleanup|process_type)")
        .allowlist_function("rte_eth_(dev_.*|rx_queue_setup|tx_queue_setup|promiscuous_.*|macaddr_get|stats_get|stats_reset|link_get_nowait|link_get)")
        .allowlist_function("rte_pktmbuf_(pool_create|free_bulk)")
        .allowlist_function("rte_mempool_(avail_count|in_use_count|free|lookup)")
        .allowlist_function("rte_thread_(register|unregister)")
        .allowlist_function("rte_(lcore_count|socket_id|get_main_lcore)")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_dev_probe")
        // Ring-backed ethdev ports for the benchmark's packet generator.
        .allowlist_function("rte_ring_(create|free)|rte_eth_from_rings")
        // Packet capture by dpdk-dumpcap/dpdk-pdump from a secondary process.
        .allowlist_function("rte_pdump_(init|uninit)")
        .allowlist_function("rvs_.*")
        .allowlist_type("rte_mbuf")
        .allowlist_type("rte_ether_addr")
        .allowlist_var("RVS_.*")
        .allowlist_var("RTE_MAX_ETHPORTS|RTE_MAX_QUEUES_PER_PORT|RTE_MAX_LCORE|RTE_PKTMBUF_HEADROOM|RTE_MBUF_DEFAULT_BUF_SIZE|RTE_ETH_NAME_MAX_LEN|SOCKET_ID_ANY|LCORE_ID_ANY")
        // Packed structs holding aligned members: rustc rejects their layout.
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .prepend_enum_name(false)
        .generate()
        .expect("bindgen failed on wrapper.h");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("bindings.rs");
    bindings.write_to_file(&out).expect("writing bindings.rs");
}
