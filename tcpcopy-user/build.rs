//! Builds and embeds the tcpcopy-ebpf object (see the ebpf-build crate),
//! unless the `xdp` feature is off.
fn main() {
    if std::env::var_os("CARGO_FEATURE_XDP").is_some() {
        ebpf_build::build_script("tcpcopy-ebpf");
    }
}
