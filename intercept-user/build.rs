//! Builds and embeds the intercept-ebpf object (see the ebpf-build crate).
fn main() {
    ebpf_build::build_script("intercept-ebpf");
}
