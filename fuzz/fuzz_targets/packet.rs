//! Arbitrary bytes through every parser: the packet view, TCP options, the
//! reply record reader and the intercept stream decoders (1.x and with
//! extensions). None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcpcopy_common::proto::{
    ClientMsgDecoder, HEADER_RECORD_LEN, HeaderRecord, RecordFrameDecoder, ReplyStreamDecoder,
};
use tcpcopy_user::{engine::reply::Reply, packet::{Ipv4TcpPacket, TcpOptions}};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Ipv4TcpPacket::new_checked(data) {
        let _ = (p.src_addr(), p.dst_port(), p.seq(), p.ack(), p.flags(), p.window());
        let _ = (p.options(), p.payload().len(), p.seq_len(), p.checksums_ok());
        assert!(p.payload_offset() <= p.total_len() && p.total_len() <= data.len());
    }
    let _ = TcpOptions::parse(data);
    if data.len() >= HEADER_RECORD_LEN {
        let rec = HeaderRecord { bytes: data[..HEADER_RECORD_LEN].try_into().unwrap() };
        let _ = Reply::parse(&rec);
    }
    let _ = RecordFrameDecoder::new().push(data, |_| {});
    let _ = Box::new(ReplyStreamDecoder::new()).push(data, |_| {});
    let _ = ClientMsgDecoder::new().push(data, |_| {});
});
