//! Builds and embeds the lab's own TC programs (`lab-ebpf`, see the
//! ebpf-build crate).
fn main() {
    ebpf_build::build_script("lab-ebpf");
}
