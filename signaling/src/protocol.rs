//! The signaling protocol: JSON messages over WebSocket, tagged by `"type"`.
//!
//! A browser or native client sends [`ClientMsg`], a node agent sends [`NodeMsg`], and the
//! service answers both with [`ServerMsg`]. Every connection starts with a `hello` carrying
//! [`PROTOCOL_VERSION`]; a peer with another version is refused with
//! [`ErrorCode::VersionMismatch`].
//!
//! A session, as the wire sees it:
//!
//! ```text
//! client                      signaling                       node
//!   hello ───────────────────▶                 ◀──────────── hello (node_id, capacity)
//!                              ──────────────▶ registered
//!   ◀─────────────── welcome (session_id, node_id)
//!   offer (sdp) ─────────────▶ ──────────────▶ start_session (session_id, sdp)
//!   ◀──────────────── answer   ◀────────────── answer (session_id, sdp)
//!   ice ◀───────────────────▶ ◀──────────────▶ ice (session_id)
//!   bye / close ─────────────▶ ──────────────▶ end_session
//! ```

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message the service accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// An ICE candidate as the browser's `RTCIceCandidateInit` serialises it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    /// The `candidate:` attribute line.
    pub candidate: String,
    /// Media stream identification tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// Index of the m-line the candidate belongs to.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "sdpMLineIndex"
    )]
    pub sdp_mline_index: Option<u16>,
}

/// What a player's client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message: asks for a session.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// The title to play; the node's default title when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// The client's SDP offer.
    Offer {
        /// Session description.
        sdp: String,
    },
    /// A trickled ICE candidate.
    Ice {
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The player leaves.
    Bye,
}

/// What a node agent sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMsg {
    /// First message: registers the node.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// Unique id of the node in the fleet.
        node_id: String,
        /// How many concurrent sessions it takes.
        capacity: u32,
        /// Titles it can launch.
        #[serde(default)]
        titles: Vec<String>,
    },
    /// The node's SDP answer for a session.
    Answer {
        /// Session it answers.
        session_id: String,
        /// Session description.
        sdp: String,
    },
    /// A trickled ICE candidate for a session.
    Ice {
        /// Session it belongs to.
        session_id: String,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// A session ended on the node (title exited, peer gone, error).
    SessionEnded {
        /// Which session.
        session_id: String,
        /// Why, for the player and the session record.
        reason: String,
    },
}

/// Why the service refused or ended something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message was not valid JSON or not a known message.
    BadMessage,
    /// The message is valid but not allowed now (e.g. an offer before hello).
    UnexpectedMessage,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// No node can take the session now.
    NoNodeAvailable,
    /// The node serving the session went away.
    NodeLost,
    /// A node with this id is already connected.
    DuplicateNode,
    /// The session does not exist (ended, or never did).
    UnknownSession,
}

/// What the service sends to clients and nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// To a client: a node was assigned; send the offer now.
    Welcome {
        /// The service's protocol version.
        version: u32,
        /// The new session.
        session_id: String,
        /// The node that will serve it.
        node_id: String,
    },
    /// To a node: registration accepted.
    Registered {
        /// The service's protocol version.
        version: u32,
        /// The id the node registered with.
        node_id: String,
    },
    /// To a node: a client wants a session; here is its offer.
    StartSession {
        /// The new session.
        session_id: String,
        /// The title to launch, if the client named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// The client's offer.
        sdp: String,
    },
    /// To a client: the node's answer.
    Answer {
        /// Session description.
        sdp: String,
    },
    /// To either side: the other side's ICE candidate. `session_id` is set for nodes.
    Ice {
        /// Session it belongs to (nodes only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// To a node: the client left; tear the session down.
    EndSession {
        /// Which session.
        session_id: String,
        /// Why.
        reason: String,
    },
    /// To a client: the session is over.
    SessionEnded {
        /// Why.
        reason: String,
    },
    /// To either side: something was refused.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable explanation.
        message: String,
    },
}

impl ServerMsg {
    /// An [`ServerMsg::Error`] with a message.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
        }
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("protocol messages always serialise")
    }
}

/// Parses one message of type `T`, turning any failure into a one-line description fit to send
/// back in an [`ErrorCode::BadMessage`] error.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "message of {} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit",
            text.len()
        ));
    }
    serde_json::from_str(text).map_err(|e| format!("malformed message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_wire_shape() {
        let msg: ClientMsg = parse(r#"{"type":"hello","version":1}"#).expect("valid");
        assert_eq!(
            msg,
            ClientMsg::Hello {
                version: 1,
                title: None
            }
        );
        let ice: ClientMsg = parse(
            r#"{"type":"ice","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .expect("valid");
        let ClientMsg::Ice { candidate } = ice else {
            panic!("not ice")
        };
        assert_eq!(candidate.sdp_mline_index, Some(0));
        assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
    }

    #[test]
    fn server_messages_are_tagged() {
        let json = ServerMsg::error(ErrorCode::NoNodeAvailable, "all nodes busy").to_json();
        assert_eq!(
            json,
            r#"{"type":"error","code":"no_node_available","message":"all nodes busy"}"#
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for text in [
            "",
            "{",
            "null",
            "[]",
            r#"{"type":"nope"}"#,
            r#"{"type":"offer"}"#,
            "\u{0}",
        ] {
            assert!(parse::<ClientMsg>(text).is_err(), "{text:?}");
            assert!(parse::<NodeMsg>(text).is_err(), "{text:?}");
        }
        let huge = format!(
            r#"{{"type":"offer","sdp":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        let err = parse::<ClientMsg>(&huge).expect_err("too big");
        assert!(err.contains("limit"), "{err}");
    }
}
