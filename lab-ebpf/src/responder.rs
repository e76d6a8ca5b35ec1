//! `tcp_responder`: a near-free target for benchmarks. An XDP program on
//! the target's interface that answers TCP itself, with no state: a SYN
//! gets a SYN-ACK (its ISN a cookie of the connection's addresses, an MSS
//! option of 1460), data gets an ACK carrying [`RESPONSE`], a FIN gets a
//! FIN-ACK; bare ACKs and RSTs are taken without an answer. Everything
//! else (ARP, other ports, other protocols) passes to the stack.
//!
//! Answers leave by the interface they came in on (`XDP_TX`), addressed
//! to `NEXT_HOP_MAC` when set (the assistant that intercept runs on, as a
//! real target's route to the clients would send them), else back to the
//! frame's sender. Frames with IP options or a VLAN tag are passed (the
//! lab's LAN has neither).

use aya_ebpf::{
    Global,
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_tail,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};

/// The address and port answered (network byte order as read; 0: any
/// address).
#[unsafe(no_mangle)]
static RESPONDER_ADDR: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static RESPONDER_PORT: Global<u16> = Global::new(80);
/// Where answers go (all zero: back to the sender).
#[unsafe(no_mangle)]
static NEXT_HOP_MAC: Global<[u8; 6]> = Global::new([0; 6]);
/// Mixed into the cookie ISN.
#[unsafe(no_mangle)]
static COOKIE_SECRET: Global<u32> = Global::new(0x9e37_79b9);

/// Answers sent, per CPU: SYN-ACKs, data answers (one per segment with
/// payload: requests, retransmissions included), FIN-ACKs. A replayer that
/// keeps no counts of its own (the original C tcpcopy) is measured by them.
#[map]
static ANSWERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(3, 0);
const ANSWER_SYN: u32 = 0;
const ANSWER_DATA: u32 = 1;
const ANSWER_FIN: u32 = 2;

/// The answer to every data segment: a whole HTTP/1.1 response.
pub const RESPONSE: &[u8; 40] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const TCP_LEN: usize = 20;
const MSS_OPTION: [u8; 4] = [2, 4, 0x05, 0xb4];
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// The one's-complement sum of `RESPONSE` as big-endian words.
const RESPONSE_SUM: u32 = {
    let mut sum = 0u32;
    let mut i = 0;
    while i < RESPONSE.len() {
        sum += ((RESPONSE[i] as u32) << 8) | RESPONSE[i + 1] as u32;
        i += 2;
    }
    sum
};

/// What an answer is made of.
struct Answer {
    mac_dst: [u8; 6],
    mac_src: [u8; 6],
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    mss: bool,
    payload: bool,
}

#[xdp]
pub fn tcp_responder(ctx: XdpContext) -> u32 {
    match answer_of(&ctx) {
        Some(Ok(a)) => {
            let verdict = write(&ctx, &a);
            if verdict == xdp_action::XDP_TX {
                count(if a.mss {
                    ANSWER_SYN
                } else if a.payload {
                    ANSWER_DATA
                } else {
                    ANSWER_FIN
                });
            }
            verdict
        }
        Some(Err(verdict)) => verdict,
        None => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn count(kind: u32) {
    if let Some(n) = ANSWERS.get_ptr_mut(kind) {
        // SAFETY: this CPU's own slot of a per-CPU map.
        unsafe { *n += 1 };
    }
}

#[inline(always)]
fn load<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds-checked just above; unaligned reads of plain bytes.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const T) })
}

/// `None`: not ours (pass). `Some(Err(verdict))`: ours, no answer.
#[inline(always)]
fn answer_of(ctx: &XdpContext) -> Option<Result<Answer, u32>> {
    let eth: [u8; 14] = load(ctx, 0)?;
    if eth[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip: [u8; IP_LEN] = load(ctx, ETH_LEN)?;
    if ip[0] != 0x45 || ip[9] != 6 || u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
        return None;
    }
    let tcp: [u8; TCP_LEN] = load(ctx, ETH_LEN + IP_LEN)?;
    let daddr = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let want = RESPONDER_ADDR.load();
    if dport != RESPONDER_PORT.load() || (want != 0 && want != daddr) {
        return None;
    }
    let saddr = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let doff = usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if doff < TCP_LEN || tot_len < IP_LEN + doff {
        return Some(Err(xdp_action::XDP_DROP));
    }
    let payload = (tot_len - IP_LEN - doff) as u32;
    let mut mac_dst = [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]];
    let hop = NEXT_HOP_MAC.load();
    if hop != [0; 6] {
        mac_dst = hop;
    }
    let mac_src = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let base = Answer {
        mac_dst,
        mac_src,
        saddr: daddr,
        daddr: saddr,
        sport: dport,
        dport: sport,
        seq: ack,
        ack: seq,
        flags: ACK,
        mss: false,
        payload: false,
    };
    Some(if flags & RST != 0 {
        Err(xdp_action::XDP_DROP)
    } else if flags & SYN != 0 {
        if flags & ACK != 0 {
            return Some(Err(xdp_action::XDP_DROP));
        }
        Ok(Answer {
            seq: cookie(saddr, daddr, sport, dport),
            ack: seq.wrapping_add(1),
            flags: SYN | ACK,
            mss: true,
            ..base
        })
    } else if flags & FIN != 0 {
        Ok(Answer {
            ack: seq.wrapping_add(payload).wrapping_add(1),
            flags: FIN | ACK,
            ..base
        })
    } else if payload > 0 {
        Ok(Answer {
            ack: seq.wrapping_add(payload),
            flags: PSH | ACK,
            payload: true,
            ..base
        })
    } else {
        // A bare ACK: nothing to say.
        Err(xdp_action::XDP_DROP)
    })
}

/// The ISN of the connection: its addresses mixed with a secret.
#[inline(always)]
fn cookie(saddr: u32, daddr: u32, sport: u16, dport: u16) -> u32 {
    let mut h = saddr ^ COOKIE_SECRET.load();
    h = h.wrapping_mul(0x85eb_ca6b) ^ daddr;
    h = h.wrapping_mul(0xc2b2_ae35) ^ ((u32::from(sport) << 16) | u32::from(dport));
    h ^= h >> 16;
    h.wrapping_mul(0x27d4_eb2d)
}

#[inline(always)]
fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Resizes the frame to the answer and writes it; `XDP_TX`.
#[inline(always)]
fn write(ctx: &XdpContext, a: &Answer) -> u32 {
    let tcp_len = TCP_LEN + if a.mss { 4 } else { 0 } + if a.payload { RESPONSE.len() } else { 0 };
    let total = ETH_LEN + IP_LEN + tcp_len;
    let have = (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: a helper on our own context; it refuses sizes it cannot make.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, total as i32 - have) } != 0 {
        return xdp_action::XDP_DROP;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_LEN + IP_LEN + TCP_LEN > end {
        return xdp_action::XDP_DROP;
    }
    let ip_tot = (IP_LEN + tcp_len) as u32;
    let ip_sum = 0x4500
        + ip_tot
        + 0x4000
        + 0x4006
        + (a.saddr >> 16)
        + (a.saddr & 0xffff)
        + (a.daddr >> 16)
        + (a.daddr & 0xffff);
    let doff = ((TCP_LEN + if a.mss { 4 } else { 0 }) / 4) as u32;
    let mut tcp_sum = (a.saddr >> 16)
        + (a.saddr & 0xffff)
        + (a.daddr >> 16)
        + (a.daddr & 0xffff)
        + 6
        + tcp_len as u32
        + u32::from(a.sport)
        + u32::from(a.dport)
        + (a.seq >> 16)
        + (a.seq & 0xffff)
        + (a.ack >> 16)
        + (a.ack & 0xffff)
        + ((doff << 12) | u32::from(a.flags))
        + 0xffff;
    if a.mss {
        tcp_sum += 0x0204 + 0x05b4;
    }
    if a.payload {
        tcp_sum += RESPONSE_SUM;
    }
    let p = start as *mut u8;
    // SAFETY: every write is inside [start, end): the headers checked
    // above, the option and the payload just before they are written.
    unsafe {
        core::ptr::copy_nonoverlapping(a.mac_dst.as_ptr(), p, 6);
        core::ptr::copy_nonoverlapping(a.mac_src.as_ptr(), p.add(6), 6);
        *p.add(12) = 0x08;
        *p.add(13) = 0x00;
        let ip = p.add(ETH_LEN);
        let ip_hdr: [u8; IP_LEN] = {
            let t = (ip_tot as u16).to_be_bytes();
            let s = a.saddr.to_be_bytes();
            let d = a.daddr.to_be_bytes();
            let c = fold(ip_sum).to_be_bytes();
            [
                0x45, 0, t[0], t[1], 0, 0, 0x40, 0, 64, 6, c[0], c[1], s[0], s[1], s[2], s[3],
                d[0], d[1], d[2], d[3],
            ]
        };
        core::ptr::write_unaligned(ip as *mut [u8; IP_LEN], ip_hdr);
        let tcp = ip.add(IP_LEN);
        let tcp_hdr: [u8; TCP_LEN] = {
            let sp = a.sport.to_be_bytes();
            let dp = a.dport.to_be_bytes();
            let sq = a.seq.to_be_bytes();
            let ak = a.ack.to_be_bytes();
            let c = fold(tcp_sum).to_be_bytes();
            [
                sp[0],
                sp[1],
                dp[0],
                dp[1],
                sq[0],
                sq[1],
                sq[2],
                sq[3],
                ak[0],
                ak[1],
                ak[2],
                ak[3],
                (doff as u8) << 4,
                a.flags,
                0xff,
                0xff,
                c[0],
                c[1],
                0,
                0,
            ]
        };
        core::ptr::write_unaligned(tcp as *mut [u8; TCP_LEN], tcp_hdr);
        if a.mss {
            if start + ETH_LEN + IP_LEN + TCP_LEN + 4 > end {
                return xdp_action::XDP_DROP;
            }
            core::ptr::write_unaligned(tcp.add(TCP_LEN) as *mut [u8; 4], MSS_OPTION);
        } else if a.payload {
            if start + ETH_LEN + IP_LEN + TCP_LEN + RESPONSE.len() > end {
                return xdp_action::XDP_DROP;
            }
            core::ptr::write_unaligned(tcp.add(TCP_LEN) as *mut [u8; 40], *RESPONSE);
        }
    }
    xdp_action::XDP_TX
}
