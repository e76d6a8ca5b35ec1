//! Why a session ended: [`CloseReason`], with the counter name each
//! reason is reported under (`closed_*` in the statistics line).

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// Both sides closed.
    Completed,
    /// The client reset the connection.
    ClientReset,
    /// The target reset the connection with nothing left to replay.
    TargetReset,
    /// The target refused the connection (RST to our SYN) until the
    /// handshake deadline.
    TargetRefused,
    /// No SYN-ACK within the handshake deadline.
    HandshakeTimeout,
    /// `-t`: the target sent nothing while client data waited.
    NoResponse,
    /// `-k`: idle too long.
    KeepaliveTimeout,
    /// A captured segment went missing and never came.
    CaptureHole,
    /// The session's buffer cap was reached.
    BufferFull,
    /// The engine's memory cap was reached.
    MemoryCap,
    /// A segment was retransmitted too often.
    RetransmitLimit,
    /// The target kept closing early.
    ReconnectLimit,
    /// The client reused the port for a new session.
    PortReuse,
    /// Our FIN was acknowledged but the target never closed.
    CloseTimeout,
    /// tcpcopy is stopping.
    Shutdown,
    /// The capture file ended with the session open; everything captured
    /// had been replayed and answered (offline mode).
    EndOfInput,
}

impl CloseReason {
    pub const COUNT: usize = 16;
    pub const ALL: [Self; Self::COUNT] = [
        Self::Completed,
        Self::ClientReset,
        Self::TargetReset,
        Self::TargetRefused,
        Self::HandshakeTimeout,
        Self::NoResponse,
        Self::KeepaliveTimeout,
        Self::CaptureHole,
        Self::BufferFull,
        Self::MemoryCap,
        Self::RetransmitLimit,
        Self::ReconnectLimit,
        Self::PortReuse,
        Self::CloseTimeout,
        Self::Shutdown,
        Self::EndOfInput,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Completed => "closed_completed",
            Self::ClientReset => "closed_client_reset",
            Self::TargetReset => "closed_target_reset",
            Self::TargetRefused => "closed_target_refused",
            Self::HandshakeTimeout => "closed_handshake_timeout",
            Self::NoResponse => "closed_no_response",
            Self::KeepaliveTimeout => "closed_keepalive_timeout",
            Self::CaptureHole => "closed_capture_hole",
            Self::BufferFull => "closed_buffer_full",
            Self::MemoryCap => "closed_memory_cap",
            Self::RetransmitLimit => "closed_retransmit_limit",
            Self::ReconnectLimit => "closed_reconnect_limit",
            Self::PortReuse => "closed_port_reuse",
            Self::CloseTimeout => "closed_close_timeout",
            Self::Shutdown => "closed_shutdown",
            Self::EndOfInput => "closed_end_of_input",
        }
    }
}
