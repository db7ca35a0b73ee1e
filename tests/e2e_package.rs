//! The Debian package and the systemd units: tests/deb_package.sh builds the
//! package from this test crate's rvsd and rvsadm, installs it into a
//! throwaway root with dpkg, runs the installed `rvsd --check` on the
//! installed config and `systemd-analyze verify` on the units (see the
//! script's header for every step). Nothing is installed on this machine.

use std::path::Path;
use std::process::Command;

#[test]
fn the_debian_package_installs_and_its_rvsd_check_passes() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rvsd")).parent().unwrap();
    assert!(bin_dir.join("rvsadm").exists(), "rvsadm next to rvsd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/deb_package.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(bin_dir)
        .output()
        .expect("run tests/deb_package.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "deb_package.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.lines().any(|l| l == "PASS"), "{stdout}");
}
