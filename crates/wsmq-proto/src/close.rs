//! WebSocket close codes the gateway sends, when it sends each, and what a client should do.
//!
//! Codes below 4000 are the registered RFC 6455 codes; 4000–4999 are private to wsmq and
//! mirror HTTP statuses where one fits (4001 ~ 401, 4003 ~ 403, 4008 ~ 408, 4029 ~ 429).
//! A [`CloseCode`] is a plain `u16` newtype rather than an enum so that codes received from a
//! peer that this crate does not know still round-trip.

use std::fmt;

/// A WebSocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure. The session ended on purpose (the client closed, or the server
    /// ended it without fault on either side). Do not reconnect automatically.
    pub const NORMAL: CloseCode = CloseCode(1000);

    /// 1002: protocol error. The client broke the WebSocket framing itself (an unmasked
    /// frame, reserved bits or opcodes, a stray continuation frame). Do not reconnect until the
    /// client is fixed.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);

    /// 1007: invalid frame payload data. A text frame was not valid UTF-8. Do not reconnect
    /// until the client is fixed.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);

    /// 1008: policy violation. The client broke the protocol in a way that is not worth an
    /// `error` frame (e.g. binary frames on a text protocol, too many subscriptions). Do not
    /// reconnect until the client is fixed.
    pub const POLICY: CloseCode = CloseCode(1008);

    /// 1009: message too big. A frame exceeded `--max-frame`. Reconnecting and resending the
    /// same frame would fail again, so do not reconnect automatically.
    pub const TOO_BIG: CloseCode = CloseCode(1009);

    /// 1011: internal error. The server hit an unexpected failure. Reconnect with backoff;
    /// unacknowledged messages are redelivered.
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// 1012: service restart. The node is draining (SIGTERM/SIGINT). Reconnect promptly, the
    /// load balancer will pick another node; unacknowledged messages reappear after their vt.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);

    /// 4001: the session's JWT expired and no `auth` frame replaced it in time. Reconnect with
    /// a fresh token.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4001);

    /// 4003: forbidden. The user's access tokens were revoked, or the user lost the right to
    /// the session. Do not reconnect with the same credentials.
    pub const FORBIDDEN: CloseCode = CloseCode(4003);

    /// 4008: slow consumer. The session's outbound buffer filled up because the client reads
    /// too slowly. Reconnect with backoff; its unacknowledged messages are redelivered.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4008);

    /// 4029: rate limited. The client sent frames faster than allowed. Reconnect after a
    /// backoff and send less.
    pub const RATE_LIMITED: CloseCode = CloseCode(4029);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether a well-behaved client should reconnect (with backoff) after this close.
    ///
    /// `false` for codes that mean "this will fail again": normal closure, protocol error,
    /// invalid payload, policy violation, too big and forbidden. `true` for everything else,
    /// including codes this crate does not know, because a transient failure is the safer
    /// assumption for a message consumer.
    pub const fn should_reconnect(self) -> bool {
        !matches!(self.0, 1000 | 1002 | 1007 | 1008 | 1009 | 4003)
    }

    /// Whether the client needs new credentials before reconnecting (only 4001).
    pub const fn needs_new_token(self) -> bool {
        self.0 == Self::TOKEN_EXPIRED.0
    }

    /// A short reason text for the close frame (well under the 123-byte limit).
    pub const fn reason(self) -> &'static str {
        match self.0 {
            1000 => "normal closure",
            1002 => "protocol error",
            1007 => "invalid payload",
            1008 => "policy violation",
            1009 => "message too big",
            1011 => "internal error",
            1012 => "service restart",
            4001 => "token expired",
            4003 => "forbidden",
            4008 => "slow consumer",
            4029 => "rate limited",
            _ => "",
        }
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            "" => write!(f, "{}", self.0),
            reason => write!(f, "{} ({reason})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_advice() {
        let reconnect = [
            CloseCode::INTERNAL,
            CloseCode::SERVICE_RESTART,
            CloseCode::TOKEN_EXPIRED,
            CloseCode::SLOW_CONSUMER,
            CloseCode::RATE_LIMITED,
            CloseCode(1006),
        ];
        let stay_away = [
            CloseCode::NORMAL,
            CloseCode::PROTOCOL_ERROR,
            CloseCode::INVALID_PAYLOAD,
            CloseCode::POLICY,
            CloseCode::TOO_BIG,
            CloseCode::FORBIDDEN,
        ];
        assert!(reconnect.iter().all(|c| c.should_reconnect()));
        assert!(stay_away.iter().all(|c| !c.should_reconnect()));
        assert!(CloseCode::TOKEN_EXPIRED.needs_new_token());
        assert!(!CloseCode::SERVICE_RESTART.needs_new_token());
    }

    #[test]
    fn display() {
        assert_eq!(CloseCode::SLOW_CONSUMER.to_string(), "4008 (slow consumer)");
        assert_eq!(CloseCode(4999).to_string(), "4999");
        assert_eq!(u16::from(CloseCode::TOO_BIG), 1009);
    }
}
