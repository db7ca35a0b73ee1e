//! The rvs crate's build script. DPDK is linked by `dpdk-bindings/build.rs`;
//! this one only tells cargo that nothing outside `src/` and the manifest
//! feeds the build. Without a `rerun-if-changed` line cargo treats every file
//! of the package (docs, test scripts, bench output) as an input and rebuilds
//! rvs and every test binary after any edit to them.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
}
