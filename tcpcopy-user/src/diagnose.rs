//! Self-diagnosis while replaying: a replay that delivers nothing must say
//! so, and why, within seconds.
//!
//! [`HandshakeWatch`] reads the statistics every few hundred milliseconds.
//! When at least [`MIN_SYNS`] SYNs went to the target within [`WINDOW`] and
//! not one handshake was answered (no SYN-ACK, no RST reported by
//! intercept), it returns one warning: what it saw, and the likely causes
//! most likely first, each with what to check. The same when the target
//! refused every one of them (RSTs only), or when every captured packet
//! in the window had a wrong checksum. With `--compare`, it also says when
//! the target answers but nothing can be compared: no intercept sends
//! reply payloads (an original 1.x intercept cannot), or not one answer of
//! production was captured (they leave by another interface than `-i`, or
//! the mirror carries one direction only). It says so again at most every
//! [`REPEAT_EVERY`] while a condition lasts. Pure code: the caller logs the
//! text.

use std::{collections::VecDeque, time::Duration};

use crate::engine::Instant;

/// How far back the watch looks.
pub const WINDOW: Duration = Duration::from_secs(3);
/// SYNs within the window that must have gone unanswered.
pub const MIN_SYNS: u64 = 20;
/// The same warning again, at most this often.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);

/// Cumulative counters, as the statistics line has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observation {
    /// SYNs sent: sessions started (captured or faked SYN), reconnects
    /// and SYN retransmissions.
    pub syns_sent: u64,
    /// Handshakes the target answered: established, or refused (RST).
    pub handshakes_answered: u64,
    /// ... of which refused (each refused SYN counts).
    pub handshakes_refused: u64,
    /// Reply records intercept reported, and those for no session.
    pub replies: u64,
    pub replies_unknown: u64,
    /// Connections to intercepts up, of all.
    pub links_up: u64,
    pub links_total: u64,
    /// Connections whose intercept runs on the target (`--egress`).
    pub links_on_target: u64,
    /// Frames the sender dropped for want of the next hop's MAC, and all
    /// frames it put out.
    pub no_next_hop: u64,
    pub frames_out: u64,
    /// Client packets whose offloaded checksums were completed.
    pub checksum_completed: u64,
    /// Client packets matched by a rule, and those dropped for a wrong
    /// checksum.
    pub matched: u64,
    pub bad_checksum: u64,
    /// `--compare` is on.
    pub comparing: bool,
    /// Connections whose intercept sends reply payloads (granted them).
    pub links_with_payloads: u64,
    /// Requests the target began to answer.
    pub responses: u64,
    /// Production's answers captured (segments).
    pub server_segments: u64,
}

/// What the warning names: the replay's own setup.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// The targets, `IP:PORT`.
    pub targets: Vec<String>,
    /// The intercepts, `HOST:PORT`.
    pub intercepts: Vec<String>,
    /// The output interface.
    pub output: String,
}

/// Watches for handshakes that go unanswered.
#[derive(Debug)]
pub struct HandshakeWatch {
    setup: Setup,
    samples: VecDeque<(Instant, Observation)>,
    last_warning: Option<Instant>,
    last_compare_warning: Option<Instant>,
}

impl HandshakeWatch {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            samples: VecDeque::new(),
            last_warning: None,
            last_compare_warning: None,
        }
    }

    /// Takes the counters at `now`; returns the warning to log, if due.
    /// `--compare`: the target answered within the window, and nothing of
    /// it can be compared.
    fn compare_warning(
        &mut self,
        now: Instant,
        then: &Observation,
        obs: &Observation,
    ) -> Option<String> {
        let answered = obs.responses.saturating_sub(then.responses);
        if !obs.comparing
            || answered < MIN_SYNS
            || self
                .last_compare_warning
                .is_some_and(|t| now.saturating_since(t) < REPEAT_EVERY)
        {
            return None;
        }
        let text = if obs.links_up > 0 && obs.links_with_payloads == 0 {
            format!(
                "--compare: the target began {answered} answers in the last {} s, but no \
                 intercept sends reply payloads, so none is compared. An original 1.x intercept \
                 cannot (this one's log line `reply payloads granted` says when it does); run \
                 this project's intercept",
                WINDOW.as_secs()
            )
        } else if obs.server_segments == then.server_segments {
            format!(
                "--compare: the target began {answered} answers in the last {} s, but not one \
                 answer of production was captured, so none is compared. Production's answers \
                 leave by another interface than -i (asymmetric routing, a bond: give -i the \
                 one they leave by), or the mirror port carries only the clients' side (mirror \
                 both directions)",
                WINDOW.as_secs()
            )
        } else {
            return None;
        };
        self.last_compare_warning = Some(now);
        Some(text)
    }

    pub fn observe(&mut self, now: Instant, obs: Observation) -> Option<String> {
        self.samples.push_back((now, obs));
        // Keep the newest sample at least WINDOW old (the window's start).
        while self.samples.len() > 2 && now.saturating_since(self.samples[1].0) >= WINDOW {
            self.samples.pop_front();
        }
        let &(since, then) = self.samples.front()?;
        if now.saturating_since(since) < WINDOW {
            return None;
        }
        if let Some(text) = self.compare_warning(now, &then, &obs) {
            return Some(text);
        }
        let matched = obs.matched.saturating_sub(then.matched);
        let bad = obs.bad_checksum.saturating_sub(then.bad_checksum);
        if matched >= MIN_SYNS && bad == matched && !self.repeated(now) {
            self.last_warning = Some(now);
            return Some(format!(
                "every captured packet has a wrong checksum: {bad} in the last {} s, none \
                 replayed. They are damaged before the capture sees them (a NIC or driver that \
                 alters frames, a device between), or the capture interface is not the one the \
                 production server receives them on (-i)",
                WINDOW.as_secs()
            ));
        }
        let syns = obs.syns_sent.saturating_sub(then.syns_sent);
        let answered = obs
            .handshakes_answered
            .saturating_sub(then.handshakes_answered);
        let refused = obs
            .handshakes_refused
            .saturating_sub(then.handshakes_refused);
        // Every answer a refusal: the target is there but will not accept.
        let all_refused = refused > 0 && refused == answered;
        if syns < MIN_SYNS || (answered > 0 && !all_refused) {
            return None;
        }
        if self.repeated(now) {
            return None;
        }
        self.last_warning = Some(now);
        Some(if all_refused {
            self.refused_message(syns, refused)
        } else {
            self.message(syns, &then, &obs)
        })
    }

    /// A warning went out less than [`REPEAT_EVERY`] ago.
    fn repeated(&self, now: Instant) -> bool {
        self.last_warning
            .is_some_and(|at| now.saturating_since(at) < REPEAT_EVERY)
    }

    fn refused_message(&self, syns: u64, refused: u64) -> String {
        let targets = self.setup.targets.join(", ");
        format!(
            "the target refuses every connection: {refused} of the {syns} SYNs that went to \
             {targets} in the last {} s were answered with a RST, none with a SYN-ACK. Nothing \
             listens on that port, or a firewall on the target rejects (a restarting server \
             refuses for a moment: tcpcopy tries each refused SYN again until the handshake \
             deadline)",
            WINDOW.as_secs()
        )
    }

    fn message(&self, syns: u64, then: &Observation, now: &Observation) -> String {
        let s = &self.setup;
        let targets = s.targets.join(", ");
        let intercepts = s.intercepts.join(", ");
        let mut causes: Vec<String> = Vec::new();
        if now.links_up < now.links_total {
            causes.push(format!(
                "intercept is not connected ({} of {} connections up): is intercept running at \
                 {intercepts}, and reachable?",
                now.links_up, now.links_total
            ));
        }
        let no_hop = now.no_next_hop.saturating_sub(then.no_next_hop);
        if no_hop > 0 {
            causes.push(format!(
                "the target is unreachable from {}: {no_hop} frames dropped for want of the next \
                 hop's MAC address (check the route to {targets} and `ip neigh` on {})",
                s.output, s.output
            ));
        }
        let unknown = now.replies_unknown.saturating_sub(then.replies_unknown);
        if unknown > 0 {
            causes.push(format!(
                "intercept reports replies for sessions this tcpcopy did not announce ({unknown} \
                 in the window): another tcpcopy shares this intercept with overlapping client \
                 addresses (give each its own -f, or -c)"
            ));
        }
        if now.links_on_target > 0 {
            // intercept runs on the target (--egress): no route, no assistant.
            causes.push(
                "the target has no route at all for the client addresses, so it cannot send \
                 its replies (any route will do, e.g. a default route; `intercept doctor \
                 --egress ...` checks it), or they leave by an interface intercept is not on \
                 (add it to --egress)"
                    .to_owned(),
            );
            causes.push(format!(
                "intercept's filter does not match the target's replies: run it with --target \
                 {targets}"
            ));
            causes.push(format!(
                "intercept on the target does not claim these clients: it claims the addresses \
                 this tcpcopy announces and its --clients ranges (with -c, give that pool) \
                 (intercept at {intercepts})"
            ));
        } else {
            causes.push(format!(
                "the target has no route for the client addresses via the assistant host, so \
                 its replies go elsewhere: on the target, `ip route add <client range> via <the \
                 assistant's address>` (intercept at {intercepts})"
            ));
            causes.push(format!(
                "intercept's filter does not match the target's replies: run it with --target \
                 {targets} (or -F 'tcp and src port P and src host H')"
            ));
            causes.push(
                "the assistant host forwards the replies instead of dropping them, so the real \
                 clients get them: `sysctl -w net.ipv4.ip_forward=0` there"
                    .to_owned(),
            );
        }
        if no_hop == 0 {
            causes.push(format!(
                "the target is unreachable from {}: check that {targets} is up and on the path of \
                 {}'s route (tcpdump on the target shows whether the SYNs arrive)",
                s.output, s.output
            ));
        }
        causes.push(format!(
            "the target drops the frames for bad checksums or the port is filtered: tcpcopy \
             completed {} offloaded checksums of captured packets; a device in between may \
             change them (tcpdump -vv on the target shows `bad cksum`)",
            now.checksum_completed
        ));
        let replies = now.replies;
        let mut text = format!(
            "no handshake answered: {syns} SYNs went to {targets} in the last {} s and no SYN-ACK \
             (nor RST) came back through intercept ({replies} reply records reported since the \
             start; {} frames sent). Likely causes, most likely first:",
            WINDOW.as_secs(),
            now.frames_out
        );
        for (i, c) in causes.iter().enumerate() {
            text.push_str(&format!(" ({}) {c};", i + 1));
        }
        text.pop();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> HandshakeWatch {
        HandshakeWatch::new(Setup {
            targets: vec!["198.18.2.2:80".into()],
            intercepts: vec!["198.18.2.3:36524".into()],
            output: "eth1".into(),
        })
    }

    fn at(ms: u64) -> Instant {
        Instant::from_micros(1_000_000_000 + ms * 1000)
    }

    fn obs(syns: u64, answered: u64) -> Observation {
        Observation {
            syns_sent: syns,
            handshakes_answered: answered,
            links_up: 1,
            links_total: 1,
            ..Observation::default()
        }
    }

    /// Feeds a sample every 200 ms from `from` to `to`, SYNs growing by
    /// `syns_per_tick`; returns the warnings with their times.
    fn run(
        w: &mut HandshakeWatch,
        from: u64,
        to: u64,
        syns_per_tick: u64,
        answered: impl Fn(u64) -> u64,
    ) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut syns = from / 200 * syns_per_tick;
        for t in (from..=to).step_by(200) {
            syns += syns_per_tick;
            if let Some(m) = w.observe(at(t), obs(syns, answered(t))) {
                out.push((t, m));
            }
        }
        out
    }

    #[test]
    fn unanswered_syns_warn_once_within_seconds_then_every_30_s() {
        let mut w = watch();
        let warned = run(&mut w, 0, 70_000, 2, |_| 0);
        let times: Vec<u64> = warned.iter().map(|(t, _)| *t).collect();
        assert_eq!(times.len(), 3, "{times:?}");
        assert!(times[0] <= 3200, "within the window: {times:?}");
        assert!(times[1] - times[0] >= 30_000 && times[2] - times[1] >= 30_000);
        let text = &warned[0].1;
        assert!(text.contains("SYNs went to 198.18.2.2:80"), "{text}");
        // The usual causes, in the order.
        let order = [
            "no route",
            "filter",
            "forwards the replies",
            "unreachable",
            "checksums",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|k| text.find(k).unwrap_or_else(|| panic!("{k:?} in {text}")))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}: {text}");
    }

    #[test]
    fn answered_handshakes_or_few_syns_say_nothing() {
        let mut w = watch();
        assert!(
            run(&mut w, 0, 20_000, 2, |t| t / 1000).is_empty(),
            "answered"
        );
        let mut w = watch();
        assert!(run(&mut w, 0, 20_000, 0, |_| 0).is_empty(), "no traffic");
        // 19 SYNs in the window: below the threshold.
        let mut w = watch();
        let mut quiet = Vec::new();
        for (i, t) in (0..=20_000u64).step_by(200).enumerate() {
            let syns = i as u64 * 19 / 16;
            quiet.extend(w.observe(at(t), obs(syns, 0)));
        }
        assert!(quiet.is_empty(), "{quiet:?}");
    }

    #[test]
    fn a_target_that_refuses_everything_is_named_as_such() {
        let mut w = watch();
        let mut warned = Vec::new();
        for (i, t) in (0..=5000u64).step_by(200).enumerate() {
            let n = i as u64 * 2;
            let o = Observation {
                handshakes_answered: n,
                handshakes_refused: n,
                ..obs(n, 0)
            };
            warned.extend(w.observe(at(t), o));
        }
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].contains("refuses every connection"),
            "{}",
            warned[0]
        );
        // Some accepted: no warning.
        let mut w = watch();
        for (i, t) in (0..=5000u64).step_by(200).enumerate() {
            let n = i as u64 * 2;
            let o = Observation {
                handshakes_answered: n,
                handshakes_refused: n / 2,
                ..obs(n, 0)
            };
            assert!(w.observe(at(t), o).is_none());
        }
    }

    #[test]
    fn captured_packets_all_damaged_are_named() {
        let mut w = watch();
        let mut warned = Vec::new();
        for (i, t) in (0..=4000u64).step_by(200).enumerate() {
            let n = i as u64 * 5;
            let o = Observation {
                matched: n,
                bad_checksum: n,
                ..obs(0, 0)
            };
            warned.extend(w.observe(at(t), o));
        }
        assert_eq!(warned.len(), 1);
        assert!(warned[0].contains("wrong checksum"), "{}", warned[0]);
        // A few damaged among good ones: normal on a real network.
        let mut w = watch();
        for (i, t) in (0..=4000u64).step_by(200).enumerate() {
            let n = i as u64 * 5;
            let o = Observation {
                matched: n,
                bad_checksum: n / 10,
                ..obs(0, 0)
            };
            assert!(w.observe(at(t), o).is_none());
        }
    }

    #[test]
    fn what_was_seen_moves_its_cause_to_the_front() {
        let mut w = watch();
        let mut warned = None;
        for (i, t) in (0..=4000u64).step_by(200).enumerate() {
            let o = Observation {
                syns_sent: i as u64 * 2,
                links_up: 0,
                links_total: 1,
                no_next_hop: i as u64 * 5,
                ..Observation::default()
            };
            warned = warned.or(w.observe(at(t), o));
        }
        let text = warned.expect("a warning");
        let link = text.find("not connected").unwrap();
        let hop = text.find("next hop").unwrap();
        let route = text.find("no route").unwrap();
        assert!(link < hop && hop < route, "{text}");
    }

    #[test]
    fn with_intercept_on_the_target_the_causes_are_its_own() {
        let mut w = watch();
        let on_target = |syns| Observation {
            links_on_target: 1,
            ..obs(syns, 0)
        };
        assert!(w.observe(at(0), on_target(0)).is_none());
        let text = w
            .observe(at(3100), on_target(25))
            .expect("a warning after 3 s of unanswered SYNs");
        assert!(text.contains("--clients"), "{text}");
        let route = text.find("no route at all").expect(&text);
        assert!(
            route < text.find("filter does not match").expect(&text),
            "{text}"
        );
        assert!(!text.contains("via the assistant"), "{text}");
        assert!(!text.contains("ip_forward"), "{text}");
    }

    #[test]
    fn compare_says_when_nothing_can_be_compared() {
        let base = |responses, segments, payloads| Observation {
            comparing: true,
            links_up: 1,
            links_total: 1,
            links_with_payloads: payloads,
            responses,
            server_segments: segments,
            ..obs(0, 0)
        };
        let mut w = watch();
        assert!(w.observe(at(0), base(0, 0, 0)).is_none());
        let text = w.observe(at(3100), base(40, 80, 0)).expect("a warning");
        assert!(text.contains("no intercept sends reply payloads"), "{text}");
        let mut w = watch();
        assert!(w.observe(at(0), base(0, 5, 1)).is_none());
        let text = w.observe(at(3100), base(40, 5, 1)).expect("a warning");
        assert!(text.contains("not one answer of production"), "{text}");
        assert!(
            w.observe(at(6200), base(80, 5, 1)).is_none(),
            "not again within 30 s"
        );
        let mut w = watch();
        assert!(w.observe(at(0), base(0, 0, 1)).is_none());
        assert!(
            w.observe(at(3100), base(40, 90, 1)).is_none(),
            "all is well"
        );
        let mut w = watch();
        let off = |r| Observation {
            comparing: false,
            ..base(r, 0, 0)
        };
        assert!(w.observe(at(0), off(0)).is_none());
        assert!(w.observe(at(3100), off(40)).is_none(), "not comparing");
    }
}
