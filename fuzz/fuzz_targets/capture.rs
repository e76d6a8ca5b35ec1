//! Arbitrary bytes as a capture file: the reader (pcap and pcapng, with
//! damage recovery) and the link-layer decoders. Nothing may panic or loop;
//! every record handed out lies inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpcopy_user::offline::{link::LinkLayer, reader::CaptureReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(data) else {
        return;
    };
    let mut records = 0usize;
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => {
                records += 1;
                assert!(rec.data.len() <= data.len());
                if let Some(link) = LinkLayer::from_linktype(rec.linktype) {
                    if let Ok(ip) = link.ipv4(rec.data) {
                        assert!(ip.len() <= rec.data.len());
                    }
                }
                // Each record takes at least its header: a bounded count.
                assert!(records <= data.len() / 12 + 1);
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert!(reader.offset() <= data.len() as u64);
});
