//! Builds and embeds the tcpcopy-ebpf object (see the ebpf-build crate).
fn main() {
    ebpf_build::build_script("tcpcopy-ebpf");
}
