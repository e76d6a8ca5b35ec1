//! Synthetic captures: whole TCP sessions (handshake, requests each
//! answered by a response, close) as Ethernet frames in time order, over
//! IPv4 or IPv6 (the address type says which), for
//! tests and benchmarks that need a capture file of a known shape.

use crate::packet::{Address, SeqNumber, TcpFlags, tcp::SegmentRepr};

/// One recorded client session.
#[derive(Clone, Debug)]
pub struct SessionSpec<A: Address = [u8; 4]> {
    pub client: (A, u16),
    pub server: (A, u16),
    /// When the SYN was captured (ns since the epoch).
    pub start_ns: u64,
    /// The client's requests, in order; each is answered before the next.
    pub requests: Vec<Vec<u8>>,
    /// Bytes of each response.
    pub response_len: usize,
    /// Round trip between client and server.
    pub rtt_ns: u64,
    /// Client think time between a response and its next request.
    pub think_ns: u64,
    /// The client's TSval base (`None`: no timestamps).
    pub tsval: Option<u32>,
}

/// A captured frame: time, Ethernet frame.
pub type Frame = (u64, Vec<u8>);

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// The MTU the recorded link had.
const MTU: usize = 1500;

struct Side<A: Address> {
    addr: A,
    port: u16,
    mac: [u8; 6],
    seq: SeqNumber,
}

fn frame<A: Address>(
    from: &Side<A>,
    to: &Side<A>,
    ack: SeqNumber,
    flags: TcpFlags,
    ts: Option<(u32, u32)>,
    payload: &[u8],
) -> Vec<u8> {
    let mut opts = [0u8; 12];
    let n = match ts {
        Some((val, ecr)) => {
            opts[..4].copy_from_slice(&[1, 1, 8, 10]);
            opts[4..8].copy_from_slice(&val.to_be_bytes());
            opts[8..12].copy_from_slice(&ecr.to_be_bytes());
            12
        }
        None => 0,
    };
    let repr = SegmentRepr {
        src: from.addr,
        dst: to.addr,
        src_port: from.port,
        dst_port: to.port,
        seq: from.seq,
        ack,
        flags,
        window: 65_535,
        ttl: 64,
        ip_id: 0,
        options: &opts[..n],
        payload,
    };
    let mut f = vec![0u8; 14 + repr.len()];
    f[0..6].copy_from_slice(&to.mac);
    f[6..12].copy_from_slice(&from.mac);
    let ethertype: [u8; 2] = if A::VERSION == 6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    };
    f[12..14].copy_from_slice(&ethertype);
    repr.emit(&mut f[14..]);
    f
}

impl<A: Address> SessionSpec<A> {
    /// The session's frames, both directions, in time order.
    pub fn frames(&self) -> Vec<Frame> {
        let mut c = Side {
            addr: self.client.0,
            port: self.client.1,
            mac: CLIENT_MAC,
            seq: SeqNumber(u32::from(self.client.1).wrapping_mul(0x9e37_79b9)),
        };
        let mut s = Side {
            addr: self.server.0,
            port: self.server.1,
            mac: SERVER_MAC,
            seq: SeqNumber(u32::from(self.client.1).wrapping_mul(0x85eb_ca6b) ^ 0x5555),
        };
        let mss = MTU - A::HEADERS_LEN;
        let half = self.rtt_ns / 2;
        let mut t = self.start_ns;
        let mut out = Vec::new();
        let mut tick = 0u32;
        let mut ts = |ecr: u32| {
            tick += 1;
            self.tsval.map(|base| (base.wrapping_add(tick), ecr))
        };
        let syn_opts_ts = ts(0);
        out.push((
            t,
            frame(&c, &s, SeqNumber(0), TcpFlags::SYN, syn_opts_ts, &[]),
        ));
        c.seq += 1;
        t += half;
        out.push((
            t,
            frame(&s, &c, c.seq, TcpFlags::SYN | TcpFlags::ACK, ts(1), &[]),
        ));
        s.seq += 1;
        t += half;
        out.push((t, frame(&c, &s, s.seq, TcpFlags::ACK, ts(2), &[])));
        for (i, req) in self.requests.iter().enumerate() {
            if i > 0 {
                t += self.think_ns;
            }
            for (k, chunk) in req.chunks(mss).enumerate() {
                let last = (k + 1) * mss >= req.len();
                let flags = if last {
                    TcpFlags::ACK | TcpFlags::PSH
                } else {
                    TcpFlags::ACK
                };
                out.push((t + k as u64, frame(&c, &s, s.seq, flags, ts(3), chunk)));
                c.seq += chunk.len() as u32;
            }
            t += half;
            let response = vec![b'r'; self.response_len];
            for (k, chunk) in response.chunks(mss).enumerate() {
                let last = (k + 1) * mss >= response.len();
                let flags = if last {
                    TcpFlags::ACK | TcpFlags::PSH
                } else {
                    TcpFlags::ACK
                };
                out.push((t + k as u64, frame(&s, &c, c.seq, flags, ts(4), chunk)));
                s.seq += chunk.len() as u32;
            }
            t += half;
            out.push((t, frame(&c, &s, s.seq, TcpFlags::ACK, ts(5), &[])));
        }
        // The client closes.
        t += self.think_ns.min(1_000_000);
        out.push((
            t,
            frame(&c, &s, s.seq, TcpFlags::FIN | TcpFlags::ACK, ts(6), &[]),
        ));
        c.seq += 1;
        t += half;
        out.push((
            t,
            frame(&s, &c, c.seq, TcpFlags::FIN | TcpFlags::ACK, ts(7), &[]),
        ));
        s.seq += 1;
        t += half;
        out.push((t, frame(&c, &s, s.seq, TcpFlags::ACK, ts(8), &[])));
        out
    }
}

/// The frames of every session, merged in time order.
pub fn merge<A: Address>(sessions: &[SessionSpec<A>]) -> Vec<Frame> {
    let mut all: Vec<Frame> = sessions.iter().flat_map(SessionSpec::frames).collect();
    all.sort_by_key(|(t, _)| *t);
    all
}

/// An HTTP/1.1 GET for `path`, as the requests of synthetic sessions.
pub fn http_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: tcpcopy.test\r\nUser-Agent: synth\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Ipv4TcpPacket;

    #[test]
    fn a_session_is_a_whole_conversation() {
        let spec = SessionSpec {
            client: ([198, 18, 0, 1], 40_000),
            server: ([198, 18, 1, 1], 80),
            start_ns: 1_000,
            requests: vec![http_get("/a"), vec![b'x'; 3000]],
            response_len: 2000,
            rtt_ns: 1_000_000,
            think_ns: 5_000_000,
            tsval: Some(0xffff_fff0),
        };
        let frames = spec.frames();
        let packets: Vec<Ipv4TcpPacket<&[u8]>> = frames
            .iter()
            .map(|(_, f)| Ipv4TcpPacket::new_checked(&f[14..]).unwrap())
            .collect();
        assert!(packets.iter().all(|p| p.checksums_ok()));
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0), "time order");
        let from_client: Vec<_> = packets.iter().filter(|p| p.src_port() == 40_000).collect();
        let sent: usize = from_client.iter().map(|p| p.payload().len()).sum();
        assert_eq!(sent, http_get("/a").len() + 3000);
        let answered: usize = packets
            .iter()
            .filter(|p| p.src_port() == 80)
            .map(|p| p.payload().len())
            .sum();
        assert_eq!(answered, 4000);
        assert!(packets[0].flags().syn() && !packets[0].flags().ack());
        assert_eq!(packets.iter().filter(|p| p.flags().fin()).count(), 2);
        // The client's ACKs follow the server's sequence numbers.
        let last = from_client.last().unwrap();
        let server_fin = packets
            .iter()
            .find(|p| p.src_port() == 80 && p.flags().fin())
            .unwrap();
        assert_eq!(last.ack(), server_fin.seq() + 1);
    }
}
