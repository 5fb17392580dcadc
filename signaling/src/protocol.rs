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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::geo::LatLon;

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

/// A STUN or TURN server for the peer connection, as the browser's `RTCIceServer` spells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    /// `stun:` or `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name (for TURN REST credentials, `expiry:user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What a player's client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// First message: asks for a session.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// The title to play; the catalog's default title when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Round-trip times in milliseconds the client measured to candidate nodes' probe
        /// endpoints (`GET /api/probe` lists them), by node id. Assignment prefers the lowest.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        rtt_ms: BTreeMap<String, f64>,
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
        /// Where the node runs: its region, country and coordinates.
        #[serde(flatten)]
        site: NodeSite,
        /// GPU class, e.g. `h100`, `l4`, `cpu` (lavapipe); geofence rules and titles name it.
        #[serde(default = "default_gpu_class")]
        gpu_class: String,
        /// Address players' media reaches the node at (informational; ICE finds the path).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        public_addr: Option<String>,
        /// URL clients time a `GET` against to measure their round trip to this node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probe_url: Option<String>,
        /// The node software's version.
        #[serde(default)]
        agent_version: String,
    },
    /// Sent every second; a node silent for 3 s is taken for dead.
    Heartbeat {
        /// Sessions it runs now.
        #[serde(default)]
        sessions: u32,
        /// True when the node takes no new sessions (it finishes the ones it has).
        #[serde(default)]
        draining: bool,
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
        /// True when starting the same session again would end the same way (the title
        /// cannot start, exits, or its picture cannot be streamed): players should not retry
        /// on their own.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        permanent: bool,
        /// What the session carried, for the session record.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stats: Option<SessionStats>,
    },
}

/// Where a node runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSite {
    /// Region name, e.g. `eu-west`.
    #[serde(default)]
    pub region: String,
    /// ISO 3166-1 alpha-2 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Latitude and longitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coords: Option<LatLon>,
}

fn default_gpu_class() -> String {
    "cpu".to_string()
}

/// What a session carried, as the node measured it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Media bytes sent to the player.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Last round-trip time to the player, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
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
    /// The title is not in the catalog.
    UnknownTitle,
    /// Policy does not allow the request (e.g. the geofence).
    Forbidden,
    /// The peer sent messages faster than allowed.
    RateLimited,
    /// The signaling store failed; try again.
    Unavailable,
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
        /// STUN/TURN servers to give the peer connection (TURN credentials are short-lived).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// To a node: registration accepted.
    Registered {
        /// The service's protocol version.
        version: u32,
        /// The id the node registered with.
        node_id: String,
        /// How often to send [`NodeMsg::Heartbeat`], in milliseconds.
        heartbeat_ms: u32,
    },
    /// To a node: the operator asked it to drain (finish its sessions, take no new ones).
    Drain,
    /// To a node: a client wants a session; here is its offer.
    StartSession {
        /// The new session.
        session_id: String,
        /// The title to launch, if the client named one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// How to start it, from its catalog manifest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        launch: Option<crate::catalog::Launch>,
        /// The client's offer.
        sdp: String,
        /// Fencing epoch of the slot reservation that admitted this session.
        #[serde(default)]
        epoch: u64,
        /// STUN/TURN servers the node may use for this session.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
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
        /// True when trying the same session again would end the same way (see
        /// [`NodeMsg::SessionEnded`]); the client should not retry by itself.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        permanent: bool,
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

/// Longest ICE candidate line accepted.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// Checks that `sdp` looks like a session description: starts with `v=0`, has lines, and
/// carries no NUL. Signaling relays SDP opaquely otherwise; peers parse it fully.
pub fn check_sdp(sdp: &str) -> Result<(), String> {
    if !sdp.starts_with("v=0") {
        return Err("sdp must start with \"v=0\"".into());
    }
    if sdp.contains('\0') {
        return Err("sdp must not contain NUL".into());
    }
    Ok(())
}

/// Checks an ICE candidate: empty (end of candidates) or one `candidate:` line.
pub fn check_candidate(c: &IceCandidate) -> Result<(), String> {
    let line = &c.candidate;
    if line.len() > MAX_CANDIDATE_BYTES {
        return Err(format!("candidate longer than {MAX_CANDIDATE_BYTES} bytes"));
    }
    if !line.is_empty() && !line.starts_with("candidate:") {
        return Err("candidate must start with \"candidate:\"".into());
    }
    if line.contains(['\r', '\n', '\0']) {
        return Err("candidate must be one line".into());
    }
    if c.sdp_mid.as_ref().is_some_and(|m| m.len() > 64) {
        return Err("sdpMid longer than 64 bytes".into());
    }
    Ok(())
}

impl ClientMsg {
    /// Checks the contents beyond their JSON shape (SDP and candidates).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            ClientMsg::Offer { sdp } => check_sdp(sdp),
            ClientMsg::Ice { candidate } => check_candidate(candidate),
            ClientMsg::Hello { rtt_ms, .. } if rtt_ms.len() > 64 => {
                Err("at most 64 measured round trips".into())
            }
            _ => Ok(()),
        }
    }
}

impl NodeMsg {
    /// Checks the contents beyond their JSON shape (SDP and candidates).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            NodeMsg::Answer { sdp, .. } => check_sdp(sdp),
            NodeMsg::Ice { candidate, .. } => check_candidate(candidate),
            _ => Ok(()),
        }
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
                title: None,
                rtt_ms: BTreeMap::new(),
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
