//! rvsadm against a real rvsd as operators' scripts drive ipvsadm: the seed
//! articles' command lines run verbatim (through a program named
//! `ipvsadm`), options ipvsadm refuses are refused without changing
//! anything, exit codes and texts scripts branch on, names, `-R`/`-S` and
//! the rvsadm-save/rvsadm-restore scripts, `--nosort`, and listings that
//! end quietly on a closed pipe.
//!
//! The expectations come from ipvsadm 1.31's source (ipvsadm.c,
//! config_stream.c, libipvs/libipvs.c), cited at each check; the parser's
//! full refusal table is unit-tested in `src/adm/cli.rs`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::topo::{self, describe, Rvsd, Topology, RVSADM_BIN};
use serde_json::json;

/// A directory holding `ipvsadm` (a link to rvsadm) and the conf/ scripts,
/// for command lines run verbatim through `sh -c`.
fn bin_dir(topo: &Topology) -> PathBuf {
    let dir = topo.state_dir.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("ipvsadm");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(RVSADM_BIN, &link).unwrap();
    let link = dir.join("rvsadm");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(RVSADM_BIN, &link).unwrap();
    dir
}

/// `sh -c LINE` with `dir` first in PATH and RVS_SOCKET set; stdin `input`.
fn sh(dir: &Path, socket: &Path, line: &str, input: &str) -> Output {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(line)
        .env("PATH", path)
        .env("RVS_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The listing without its first line (the header carries rvsd's table size).
fn body(list: &str) -> &str {
    list.split_once('\n').map(|x| x.1).unwrap_or("")
}

#[test]
fn seed_command_lines_run_verbatim_and_refused_options_change_nothing() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    let dir = bin_dir(&topo);
    // Every ipvsadm command line of the seed articles, verbatim:
    // 000 (LVS modes) lines 35, 39, 41 ("Running ipvsadm -L -n"), 55, 56;
    // 002 (ipvsadm guide) lines 52, 55, 56, 82, 85.
    for line in [
        "ipvsadm -A -t 111.11.11.11:80 -s rr",
        "ipvsadm -a -t 111.11.11.11:80 -r 10.10.120.210:8000 -m",
        "ipvsadm -L -n",
        "ipvsadm -A -t 10.10.120.193:80 -s rr",
        "ipvsadm -a -t 10.10.120.193:80 -r 10.10.120.210:8000 -g",
        "ipvsadm -A -t 192.168.1.100:80 -s rr",
        "ipvsadm -a -t 192.168.1.100:80 -r 192.168.1.101:80 -g",
        "ipvsadm -a -t 192.168.1.100:80 -r 192.168.1.102:80 -g",
        "ipvsadm -L -n",
        "ipvsadm -L -n --stats",
    ] {
        let out = sh(&dir, &rvsd.socket, line, "");
        assert!(out.status.success(), "{line}: {}", describe(&out));
    }
    // The DR real server on port 8000 takes the service's port, as ipvsadm
    // sends it (ipvsadm.c process_options: ce.dest.port = ce.svc.port).
    // Order: libipvs ipvs_cmp_services through glibc's merge sort on rvsd's
    // order (111.x, 10.x, 192.x): the C int difference puts 192.168.x
    // below 10.x but above 111.x, so the merge gives 111, 192, 10.
    let want = "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  111.11.11.11:80 rr\n\
\x20 -> 10.10.120.210:8000           Masq    1      0          0         \n\
TCP  192.168.1.100:80 rr\n\
\x20 -> 192.168.1.101:80             Route   1      0          0         \n\
\x20 -> 192.168.1.102:80             Route   1      0          0         \n\
TCP  10.10.120.193:80 rr\n\
\x20 -> 10.10.120.210:80             Route   1      0          0         \n";
    let list = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert_eq!(body(&list), want, "{list}");
    let stats = rvsd.rvsadm_ok(&["-L", "-n", "--stats"]);
    // print_service_entry, FMT_STATS: "  -> %-28s" then print_largenum's
    // "%9llu" for each counter.
    let row = format!(
        "\n  -> {:<28}{:>9}{:>9}{:>9}{:>9}{:>9}\n",
        "10.10.120.210:80", 0, 0, 0, 0, 0
    );
    assert!(stats.contains(&row), "{stats}");

    // Options ipvsadm refuses for the command (commands_v_options,
    // generic_opt_check): exit 2, its message, nothing changed. Before
    // #13 these deleted a whole service, flushed everything and reset the
    // scheduler.
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    for (args, msg) in [
        (
            &["-D", "-t", "192.168.1.100:80", "-r", "192.168.1.101"][..],
            "Illegal 'real-server' option with the 'delete-service' command\n",
        ),
        (
            &["-C", "-t", "192.168.1.100:80"][..],
            "Illegal 'service-address' option with the 'flush' command\n",
        ),
        (
            &[
                "-E",
                "-t",
                "192.168.1.100:80",
                "-r",
                "192.168.1.101",
                "-w",
                "0",
            ][..],
            "Illegal 'real-server' option with the 'edit-service' command\n",
        ),
        (
            &["-d", "-t", "192.168.1.100:80", "-r", "192.168.1.101", "-g"][..],
            "Illegal 'forwarding-method' option with the 'delete-server' command\n",
        ),
        (
            &["-Z", "-t", "192.168.1.100:80", "-r", "192.168.1.101"][..],
            "Illegal 'real-server' option with the 'zero' command\n",
        ),
    ] {
        let out = rvsd.rvsadm(args);
        assert_eq!(
            (out.status.code(), stderr(&out).as_str()),
            (Some(2), msg),
            "{args:?}"
        );
        assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved, "{args:?} changed it");
    }
}

#[test]
fn exit_codes_and_texts_scripts_branch_on() {
    let topo = Topology::up_unique();
    let mut rvsd = Rvsd::start(&topo, &topo.default_config());
    rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.100:80", "-s", "rr"]);
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.11:80", "-m"]);
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    let tryhelp = format!("Try `{RVSADM_BIN} -h' or '{RVSADM_BIN} --help' for more information.\n");
    // (args, exit code, stderr) from ipvsadm.c: tryhelp_exit(argv[0], -1)
    // when the first option is not a command or popt fails on it; popt's
    // "<option>: unknown option" and -1 later; fail(2, ...) for values;
    // ipvs_strerror texts with -1 for the kernel's refusals.
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (vec!["--bogus"], 255, tryhelp.clone()),
        (vec!["-n"], 255, tryhelp.clone()),
        (
            vec!["-L", "--bogus"],
            255,
            "--bogus: unknown option\n".into(),
        ),
        (
            vec!["-A", "-t", "10.0.0.101:80", "-b"],
            255,
            "-b: missing argument\n".into(),
        ),
        (
            vec!["-A", "-t", "10.0.0.101:80", "-b", "sh-port"],
            2,
            "incompatible scheduler flag `sh-port'\n".into(),
        ),
        (
            vec!["-A", "-t", "10.0.0.101:80", "-b", "nope"],
            2,
            "invalid scheduler flag `nope'\n".into(),
        ),
        (
            vec!["--set", "900", "120", "2678401"],
            2,
            "invalid timeout value `2678401' specified\n".into(),
        ),
        (
            vec![
                "-a",
                "-t",
                "10.0.0.100:80",
                "-r",
                "10.0.1.12:80",
                "-m",
                "-y",
                "5",
            ],
            255,
            // ip_vs_ctl.c ip_vs_add_dest: l_threshold > u_threshold -> -ERANGE
            "Numerical result out of range\n".into(),
        ),
        (
            vec!["-A", "-t", "10.0.0.100:80"],
            255,
            "Service already exists\n".into(),
        ),
        (
            // ip_vs_add_service: no such scheduler module -> -ENOENT
            vec!["-A", "-t", "10.0.0.101:80", "-s", "fastest"],
            255,
            "Scheduler or persistence engine not found\n".into(),
        ),
        (
            vec!["-a", "-t", "10.0.0.100:81", "-r", "10.0.1.12", "-m"],
            255,
            "Service not defined\n".into(),
        ),
        (
            vec!["-d", "-t", "10.0.0.100:80", "-r", "10.0.1.12"],
            255,
            "No such destination\n".into(),
        ),
        (
            vec!["-E", "-t", "10.0.0.100:81"],
            255,
            "No such service\n".into(),
        ),
        (
            vec!["-L", "-n", "-t", "10.0.0.100:81"],
            1,
            "No such service\n".into(),
        ),
    ];
    for (args, code, msg) in &cases {
        let out = rvsd.rvsadm(args);
        assert_eq!(
            (out.status.code(), stderr(&out)),
            (Some(*code), msg.clone()),
            "{args:?}"
        );
    }
    assert_eq!(
        rvsd.rvsadm_ok(&["-S", "-n"]),
        saved,
        "refusals changed nothing"
    );

    // rvsd down is ipvsadm without its kernel module: Debian's ipvsadm
    // here (no ip_vs) prints "Can't initialize ipvs: <strerror>" and "Are
    // you sure that ..." and exits 2 (ipvsadm.c main).
    let socket = rvsd.socket.clone();
    rvsd.kill();
    let _ = std::fs::remove_file(&socket);
    let ipvsadm = topo::run_with_timeout(
        Command::new("ipvsadm").args(["-L", "-n"]),
        Duration::from_secs(10),
    );
    let ours = topo::rvsadm(&socket, &["-L", "-n"]);
    let lines = |o: &Output| -> Vec<String> {
        stderr(o)
            .lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(ipvsadm.status.code(), Some(2), "{}", describe(&ipvsadm));
    assert_eq!(
        ours.status.code(),
        ipvsadm.status.code(),
        "{}",
        describe(&ours)
    );
    assert_eq!(lines(&ours)[0], lines(&ipvsadm)[0], "{}", describe(&ours));
    assert!(stderr(&ours)
        .lines()
        .nth(1)
        .unwrap_or("")
        .starts_with("Are you sure that"));
    assert!(
        stderr(&ours).contains("No such file or directory"),
        "{}",
        describe(&ours)
    );
}

/// A configuration whose `-L -n` listing is far above a pipe's 64 KiB.
fn big_config() -> serde_json::Value {
    let services: Vec<_> = (0..250)
        .map(|i| {
            let dests: Vec<_> = (20..30)
                .map(|d| json!({"ip": format!("10.0.1.{d}"), "port": 8000 + i, "fwd": "nat"}))
                .collect();
            json!({"proto": "tcp", "vip": "10.0.0.100", "port": 1000 + i, "sched": "rr", "dests": dests})
        })
        .collect();
    json!({ "services": services })
}

#[test]
fn names_restore_save_scripts_nosort_and_closed_pipes() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    let dir = bin_dir(&topo);

    // inet_aton short forms and /etc/services names in; names out without
    // -n (ipvsadm.c parse_service, addrport_to_anyname); 10.267 is
    // 10.0.1.11 (inet_aton: the last part fills the low 24 bits).
    rvsd.rvsadm_ok(&["-A", "-t", "10.100:www", "-s", "rr"]);
    rvsd.rvsadm_ok(&["-a", "-t", "10.100:www", "-r", "10.267:http", "-m"]);
    rvsd.rvsadm_ok(&["-A", "-u", "10.0.0.100:domain", "-s", "rr"]);
    let list = rvsd.rvsadm_ok(&["-L"]);
    // "  -> %-28s %-7s %-6d ..." (print_service_entry)
    let row = format!(
        "TCP  10.0.0.100:http rr\n  -> {:<28} {:<7} {:<6}",
        "10.0.1.11:http", "Masq", 1
    );
    assert!(list.contains(&row), "{list}");
    assert!(list.contains("UDP  10.0.0.100:domain rr\n"), "{list}");
    assert!(rvsd
        .rvsadm_ok(&["-L", "-n"])
        .contains("UDP  10.0.0.100:53 rr\n"));
    // A host name goes through the resolver (host_to_addr): "localhost" is
    // 127.0.0.1, which rvsd then refuses as a real server.
    let lo = rvsd.rvsadm(&["-a", "-t", "10.0.0.100:80", "-r", "localhost", "-m"]);
    assert_eq!(lo.status.code(), Some(255), "{}", describe(&lo));
    assert!(stderr(&lo).contains("127.0.0.1"), "{}", describe(&lo));

    // --nosort: the kernel's order, newest first.
    rvsd.rvsadm_ok(&["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.12:80", "-m"]);
    let l = rvsd.rvsadm_ok(&["-L", "-n", "--nosort"]);
    let order: Vec<&str> = l
        .lines()
        .skip(3)
        .map(|x| x.split_whitespace().nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        order,
        [
            "10.0.0.100:53",
            "10.0.0.100:80",
            "10.0.1.12:80",
            "10.0.1.11:80"
        ],
        "{l}"
    );

    // -M as inet_aton reads it, also without -p (the kernel keeps it).
    rvsd.rvsadm_ok(&["-A", "-t", "10.0.0.101:80", "-M", "24"]);
    rvsd.rvsadm_ok(&["-E", "-t", "10.0.0.101:80", "-p", "60", "-M", "24"]);
    assert!(rvsd
        .rvsadm_ok(&["-L", "-n"])
        .contains("TCP  10.0.0.101:80 wlc persistent 60 mask 0.0.0.24\n"));

    // -R as config_stream.c reads it: "ipvsadm" words dropped; -S writes
    // --tun-type ipip on -i servers and -R takes it back.
    let r = sh(
        &dir,
        &rvsd.socket,
        "rvsadm -R",
        "ipvsadm -A -t 10.0.0.102:80 -s rr\n\n-a -t 10.0.0.102:80 -r 10.0.1.12:80 -i --tun-type ipip -w 2\n",
    );
    assert!(r.status.success(), "{}", describe(&r));
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert!(
        saved.contains("-a -t 10.0.0.102:80 -r 10.0.1.12:80 -i -w 2 --tun-type ipip\n"),
        "{saved}"
    );
    // The first line that does not parse ends the restore with its code.
    let r = sh(
        &dir,
        &rvsd.socket,
        "rvsadm -R",
        "-A -t 10.0.0.103:80\n-D -t 10.0.0.103:80 -r 10.0.1.11\n-A -t 10.0.0.104:80\n",
    );
    assert_eq!(
        (r.status.code(), stderr(&r).as_str()),
        (
            Some(2),
            "Illegal 'real-server' option with the 'delete-service' command\n"
        )
    );
    let l = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(
        l.contains("10.0.0.103:80") && !l.contains("10.0.0.104:80"),
        "{l}"
    );
    // A refused line is reported and the restore goes on; the exit code is
    // the last line's.
    let r = sh(
        &dir,
        &rvsd.socket,
        "rvsadm -R",
        "-A -t 10.0.0.103:80\n-A -t 10.0.0.105:80\n",
    );
    assert_eq!(
        (r.status.code(), stderr(&r).as_str()),
        (Some(0), "Service already exists\n")
    );
    let r = sh(
        &dir,
        &rvsd.socket,
        "rvsadm -R",
        "-A -t 10.0.0.106:80\n-A -t 10.0.0.103:80\n",
    );
    assert_eq!(r.status.code(), Some(255), "{}", describe(&r));
    assert!(rvsd.rvsadm_ok(&["-L", "-n"]).contains("10.0.0.106:80"));
    // popt's error after the command is reported and returns -1
    // (parse_options), it does not end the restore as fail() does.
    let r = sh(
        &dir,
        &rvsd.socket,
        "rvsadm -R",
        "-L --bogus\n-A -t 10.0.0.107:80\n",
    );
    assert_eq!(
        (r.status.code(), stderr(&r).as_str()),
        (Some(0), "--bogus: unknown option\n")
    );
    rvsd.rvsadm_ok(&["-D", "-t", "10.0.0.107:80"]);

    // rvsadm-save / rvsadm-restore as the distribution's scripts.
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    let s = sh(
        &dir,
        &rvsd.socket,
        &format!("{} -n", conf.join("rvsadm-save").display()),
        "",
    );
    assert!(s.status.success(), "{}", describe(&s));
    assert_eq!(String::from_utf8_lossy(&s.stdout), saved);
    rvsd.rvsadm_ok(&["-C"]);
    let r = sh(
        &dir,
        &rvsd.socket,
        &conf.join("rvsadm-restore").display().to_string(),
        &format!(
            "# saved by rvsadm-save\n{}",
            String::from_utf8_lossy(&s.stdout)
        ),
    );
    assert!(r.status.success(), "{}", describe(&r));
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);

    // A keepalived DR real server on another port imports (with the
    // service's port, as under the kernel via ipvsadm's rule).
    let kc = topo.state_dir.join("keepalived.conf");
    std::fs::write(
        &kc,
        "virtual_server 10.0.0.100 80 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n  real_server 10.0.1.11 8080 {\n    weight 2\n  }\n}\n",
    )
    .unwrap();
    let imp = rvsd.rvsadm(&["--import-keepalived", kc.to_str().unwrap()]);
    assert!(imp.status.success(), "{}", describe(&imp));
    let row = format!(
        "TCP  10.0.0.100:80 rr\n  -> {:<28} {:<7} {:<6}",
        "10.0.1.11:80", "Route", 2
    );
    let l = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(l.contains(&row), "{l}");

    // Closed pipes: every listing ends as ipvsadm does, killed by SIGPIPE
    // (exit status 141 in the shell), with nothing on stderr; before #13
    // rvsadm aborted (134) past 64 KiB.
    let file = topo.state_dir.join("big.json");
    std::fs::write(&file, big_config().to_string()).unwrap();
    rvsd.rvsadm_ok(&["--load", file.to_str().unwrap()]);
    let full = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert!(full.len() > 2 * 65536, "{}", full.len());
    for (cmd, reader) in [
        ("rvsadm -L -n", "head -1"),
        ("rvsadm -L", "head -1"),
        ("rvsadm -L -n --health", "head -1"),
        ("rvsadm -L -n --json", "head -c 10"),
        ("rvsadm -S -n", "head -1"),
        ("rvsadm -L -n --stats", "grep -q TCP"),
    ] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "PATH={}:$PATH RVS_SOCKET={} {cmd} 2>{}/pipe.err | {reader} >/dev/null; echo ${{PIPESTATUS[0]}}",
                dir.display(),
                rvsd.socket.display(),
                topo.state_dir.display()
            ))
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = std::fs::read_to_string(topo.state_dir.join("pipe.err")).unwrap();
        assert_eq!(
            (status.as_str(), err.as_str()),
            ("141", ""),
            "{cmd} | {reader}"
        );
    }
}

/// Firewall-mark services, one-packet scheduling and GUE/GRE tunnels
/// through rvsadm against a real rvsd. Listings and rules
/// as ipvsadm 1.31's print_service_entry, fwd_tun_info and
/// print_tunnel_rule print them.
#[test]
fn fwmark_ops_and_tunnels_through_rvsd() {
    let topo = Topology::up_unique();
    let rvsd = Rvsd::start(&topo, &topo.default_config());
    for a in [
        &["-A", "-f", "1", "-s", "rr", "-p", "300"][..],
        &["-a", "-f", "1", "-r", "10.0.1.11:80", "-g"][..],
        &["-a", "-f", "1", "-r", "10.0.1.12", "-m"][..],
        &["-A", "-u", "10.0.0.100:53", "-s", "rr", "-o"][..],
        &["-A", "-t", "10.0.0.100:80", "-s", "rr"][..],
        &[
            "-a",
            "-t",
            "10.0.0.100:80",
            "-r",
            "10.0.1.11",
            "-i",
            "--tun-type",
            "gue",
            "--tun-port",
            "6080",
            "--tun-csum",
        ][..],
        &[
            "-a",
            "-t",
            "10.0.0.100:80",
            "-r",
            "10.0.1.12",
            "-i",
            "--tun-type",
            "gre",
        ][..],
        &["-a", "-t", "10.0.0.100:80", "-r", "10.0.1.13", "-i"][..],
    ] {
        rvsd.rvsadm_ok(a);
    }
    let row = |ip: &str, f: &str, ti: &str| {
        format!(
            "  -> {ip:<28} {f:<7} {ti:<13} {:<6} {:<10} {:<10}\n",
            1, 0, 0
        )
    };
    let l = rvsd.rvsadm_ok(&["-L", "-n", "--tun-info"]);
    let want = format!(
        "TCP  10.0.0.100:80 rr\n{}{}{}UDP  10.0.0.100:53 rr ops\nFWM  1 rr persistent 300\n{}{}",
        row("10.0.1.11:80", "Tunnel", "gue:6080:+c"),
        row("10.0.1.12:80", "Tunnel", "gre:-c"),
        row("10.0.1.13:80", "Tunnel", "ipip"),
        row("10.0.1.11:80", "Route", "n/a"),
        row("10.0.1.12:0", "Masq", "n/a"),
    );
    assert!(l.ends_with(&want), "{l}");
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert_eq!(
        saved,
        "-A -t 10.0.0.100:80 -s rr\n\
-a -t 10.0.0.100:80 -r 10.0.1.11:80 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum\n\
-a -t 10.0.0.100:80 -r 10.0.1.12:80 -i -w 1 --tun-type gre --tun-nocsum\n\
-a -t 10.0.0.100:80 -r 10.0.1.13:80 -i -w 1 --tun-type ipip\n\
-A -u 10.0.0.100:53 -s rr -o\n\
-A -f 1 -s rr -p 300\n\
-a -f 1 -r 10.0.1.11:80 -g -w 1\n\
-a -f 1 -r 10.0.1.12:0 -m -w 1\n"
    );
    rvsd.rvsadm_ok(&["-C"]);
    let r = sh(&bin_dir(&topo), &rvsd.socket, "rvsadm -R", &saved);
    assert!(r.status.success(), "{}", describe(&r));
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);
    rvsd.rvsadm_ok(&["-D", "-f", "1"]);
    assert!(!rvsd.rvsadm_ok(&["-L", "-n"]).contains("FWM"));
}

/// IPv6 virtual services through rvsadm against a real rvsd: ipvsadm's
/// command lines with bracketed addresses, and the listings and rules as
/// ipvsadm 1.31 prints them (ipvsadm.c `addrport_to_anyname`: "[%s]:%u"
/// for AF_INET6; `print_service_entry`: no cut at 33/28 bytes for IPv6,
/// `"  -> %-28s %-7s %-6d %-10u %-10u\n"`; libipvs `ipvs_cmp_services`:
/// AF_INET before AF_INET6, then the addresses word by word as C ints, so
/// 2001:db8:ffff::1 before 2001:db8::100).
#[test]
fn ipv6_services_through_rvsd() {
    let topo = Topology::up_unique();
    let mut config = topo.default_config();
    config["ports"][0]["ipv6"] = json!("2001:db8::1/64");
    config["ports"][1]["ipv6"] = json!("2001:db8:1::1/64");
    let rvsd = Rvsd::start(&topo, &config);
    let dir = bin_dir(&topo);
    for line in [
        "ipvsadm -A -t [2001:db8::100]:80 -s rr",
        "ipvsadm -a -t [2001:db8::100]:80 -r [2001:db8:1::11]:8080 -m",
        "ipvsadm -a -t [2001:db8::100]:80 -r [2001:db8:1::12]:80 -g -w 2",
        "ipvsadm -A -u [2001:db8::100]:53 -s wlc",
        "ipvsadm -A -t 10.0.0.100:80 -s wlc",
        "ipvsadm -A -t [2001:db8:ffff::1]:443 -s rr -p 300",
        "ipvsadm -A -t [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 -s rr",
        // A bare IPv6 real server takes the service's port (parse_service
        // sets no SERVICE_PORT: ce->dest.port = ce->svc.port).
        "ipvsadm -a -t [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 -r 2001:db8:1:2:3:4:5:16 -m",
        "rvsadm -P -t [2001:db8::100]:80 -z 2001:db8:1::5",
        "rvsadm -a -t [2001:db8::100]:80 -r [2001:db8:1::13]:80 --fullnat",
    ] {
        let o = sh(&dir, &rvsd.socket, line, "");
        assert!(o.status.success(), "{line}: {}", describe(&o));
    }
    // "[addr]" without ":port": parse_service returns SERVICE_NONE.
    let o = sh(
        &dir,
        &rvsd.socket,
        "ipvsadm -a -t [2001:db8::100]:80 -r [2001:db8:1::14] -m",
        "",
    );
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
    assert_eq!(
        stderr(&o),
        "illegal real server address[:port] specified\n",
        "{}",
        describe(&o)
    );
    let l = rvsd.rvsadm_ok(&["-L", "-n"]);
    assert_eq!(
        body(&l),
        "Prot LocalAddress:Port Scheduler Flags\n\
\x20 -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
TCP  10.0.0.100:80 wlc\n\
TCP  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 rr\n\
\x20 -> [2001:db8:1:2:3:4:5:16]:65535 Masq    1      0          0         \n\
TCP  [2001:db8:ffff::1]:443 rr persistent 300\n\
TCP  [2001:db8::100]:80 rr\n\
\x20 -> [2001:db8:1::11]:8080        Masq    1      0          0         \n\
\x20 -> [2001:db8:1::12]:80          Route   2      0          0         \n\
\x20 -> [2001:db8:1::13]:80          FullNat 1      0          0         \n\
UDP  [2001:db8::100]:53 wlc\n"
    );
    // list_service: the title and the one service, no version line.
    assert_eq!(
        rvsd.rvsadm_ok(&["-L", "-n", "-u", "[2001:db8::100]:53", "--stats"]),
        "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n\
\x20 -> RemoteAddress:Port\n\
UDP  [2001:db8::100]:53                  0        0        0        0        0\n"
    );
    // print_conn's header only: no connection yet.
    assert_eq!(
        rvsd.rvsadm_ok(&["-L", "-n", "-c"]),
        "IPVS connection entries\n\
pro expire state       source             virtual            destination\n"
    );
    let saved = rvsd.rvsadm_ok(&["-S", "-n"]);
    assert_eq!(
        saved,
        "-A -t 10.0.0.100:80 -s wlc\n\
-A -t [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 -s rr\n\
-a -t [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535 -r [2001:db8:1:2:3:4:5:16]:65535 -m -w 1\n\
-A -t [2001:db8:ffff::1]:443 -s rr -p 300\n\
-A -t [2001:db8::100]:80 -s rr\n\
-P -t [2001:db8::100]:80 -z 2001:db8:1::5\n\
-a -t [2001:db8::100]:80 -r [2001:db8:1::11]:8080 -m -w 1\n\
-a -t [2001:db8::100]:80 -r [2001:db8:1::12]:80 -g -w 2\n\
-a -t [2001:db8::100]:80 -r [2001:db8:1::13]:80 --fullnat -w 1\n\
-A -u [2001:db8::100]:53 -s wlc\n"
    );
    // -S | -R recreates it.
    rvsd.rvsadm_ok(&["-C"]);
    let r = sh(&dir, &rvsd.socket, "rvsadm -R", &saved);
    assert!(r.status.success(), "{}", describe(&r));
    assert_eq!(rvsd.rvsadm_ok(&["-S", "-n"]), saved);
}
