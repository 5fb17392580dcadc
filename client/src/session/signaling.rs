//! The session's side of signaling: the catalog, the session token, the client WebSocket
//! (hello → welcome), and the task that relays the offer, answer, candidates and the end of
//! the session for the session's life.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use signaling::protocol::{ClientMsg, ErrorCode, IceServer, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use super::negotiation::{Negotiation, Step};
use super::{ConnectError, SessionOptions, SessionState};
use crate::http;

pub(super) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Titles in the service's catalog: `(id, name)`.
pub async fn fetch_catalog(
    signaling: SocketAddr,
    limit: Duration,
) -> Result<Vec<(String, String)>, ConnectError> {
    let r = http::request(signaling, "GET", "/api/titles", None, limit)
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    if r.status != 200 {
        return Err(ConnectError::Refused(format!(
            "GET /api/titles: {} {}",
            r.status, r.body
        )));
    }
    let json: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| {
        ConnectError::Refused(format!("GET /api/titles: the body is not JSON ({e})"))
    })?;
    let list = json
        .get("titles")
        .and_then(|t| t.as_array())
        .or_else(|| json.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        // Instruments (the pattern title, for checkers and labs) are not for players to pick.
        .filter(|t| {
            !t.get("instrument")
                .and_then(|i| i.as_bool())
                .unwrap_or(false)
        })
        .filter_map(|t| {
            let id = t.get("id")?.as_str()?.to_owned();
            let name = t
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or(&id)
                .to_owned();
            Some((id, name))
        })
        .collect())
}

/// `POST /api/token` as the signaling service documents it.
async fn fetch_token(options: &SessionOptions) -> Result<String, ConnectError> {
    let body = match &options.title {
        Some(t) => serde_json::json!({ "title": t }),
        None => serde_json::json!({}),
    }
    .to_string();
    let r = http::request(
        options.signaling,
        "POST",
        "/api/token",
        Some(&body),
        options.step_timeout,
    )
    .await
    .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    match r.status {
        200 => {}
        401 | 403 => return Err(ConnectError::AuthRefused(r.body)),
        s => {
            return Err(ConnectError::Refused(format!(
                "POST /api/token: {s} {}",
                r.body
            )));
        }
    }
    let json: serde_json::Value = serde_json::from_str(&r.body)
        .map_err(|e| ConnectError::Refused(format!("POST /api/token: not JSON ({e})")))?;
    json["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ConnectError::Refused(format!("POST /api/token: no token in {json}")))
}

/// What signaling's welcome assigned.
pub(super) struct Welcome {
    pub ws: Ws,
    pub session_id: String,
    pub node_id: String,
    pub ice_servers: Vec<IceServer>,
}

/// Signs in, opens the client WebSocket, says hello and waits for the welcome.
pub(super) async fn sign_in(options: &SessionOptions) -> Result<Welcome, ConnectError> {
    let limit = options.step_timeout;
    let addr = options.signaling;
    let token = match &options.token {
        Some(t) => t.clone(),
        None => fetch_token(options).await?,
    };
    let url = format!("ws://{addr}/ws?token={}", percent_encode(&token));
    let (mut ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(&url))
        .await
        .map_err(|_| ConnectError::Unreachable(format!("no WebSocket within {limit:?}")))?
        .map_err(|e| match &e {
            tokio_tungstenite::tungstenite::Error::Http(r)
                if matches!(r.status().as_u16(), 401 | 403) =>
            {
                ConnectError::AuthRefused(format!("the WebSocket upgrade: {}", r.status()))
            }
            _ => ConnectError::Unreachable(format!("the WebSocket: {e}")),
        })?;
    let hello = ClientMsg::Hello {
        version: PROTOCOL_VERSION,
        title: options.title.clone(),
        rtt_ms: Default::default(),
    };
    ws.send(text(&hello))
        .await
        .map_err(|e| ConnectError::Unreachable(format!("send the hello: {e}")))?;
    match next_msg(&mut ws, limit).await? {
        ServerMsg::Welcome {
            session_id,
            node_id,
            ice_servers,
            ..
        } => Ok(Welcome {
            ws,
            session_id,
            node_id,
            ice_servers,
        }),
        ServerMsg::Error { code, message } => Err(refusal(code, message)),
        other => Err(ConnectError::Refused(format!(
            "expected a welcome, got {other:?}"
        ))),
    }
}

/// A refusal from signaling as the error the player sees.
pub(super) fn refusal(code: ErrorCode, message: String) -> ConnectError {
    match code {
        ErrorCode::NoNodeAvailable | ErrorCode::Unavailable => ConnectError::NoNode(message),
        ErrorCode::Forbidden => ConnectError::AuthRefused(message),
        ErrorCode::NodeLost => ConnectError::Failed(message),
        _ => ConnectError::Refused(format!("{code:?}: {message}")),
    }
}

/// The next message from signaling within `limit`.
async fn next_msg(ws: &mut Ws, limit: Duration) -> Result<ServerMsg, ConnectError> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return signaling::protocol::parse::<ServerMsg>(&t)
                        .map_err(|e| ConnectError::Refused(format!("signaling sent {t:?}: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectError::Unreachable(format!(
                        "signaling closed the WebSocket: {frame:?}"
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(ConnectError::Unreachable(format!(
                        "the signaling WebSocket failed: {e}"
                    )));
                }
                None => {
                    return Err(ConnectError::Unreachable(
                        "signaling closed the WebSocket".into(),
                    ));
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| ConnectError::NoNode(format!("no welcome within {limit:?}")))?
}

/// What the relay task needs besides the socket.
pub(super) struct Relay {
    pub ws: Ws,
    /// Our offer, candidates and bye, in the order they must leave.
    pub outbound: mpsc::UnboundedReceiver<ClientMsg>,
    pub pc: Arc<dyn PeerConnection>,
    pub state: Arc<SessionState>,
    /// Turns true once our offer is our local description.
    pub local_applied: watch::Receiver<bool>,
    /// Hears once whether the answer was applied.
    pub answered: mpsc::Sender<Result<(), ConnectError>>,
}

/// Relays between signaling and the peer connection for the session's life: our offer,
/// candidates and bye out; the answer, the node's candidates and the end of the session in.
/// The answer and the candidates are applied in the order [`Negotiation`] gives.
pub(super) async fn run(relay: Relay) {
    let Relay {
        mut ws,
        mut outbound,
        pc,
        state,
        mut local_applied,
        answered,
    } = relay;
    let mut negotiation = Negotiation::default();
    let mut waiting_for_local = true;
    let fail = |e: ConnectError| {
        let _ = answered.try_send(Err(e));
    };
    loop {
        let steps = tokio::select! {
            applied = async { local_applied.wait_for(|applied| *applied).await.is_ok() }, if waiting_for_local => {
                waiting_for_local = false;
                if !applied {
                    break; // the session gave up before applying its offer
                }
                negotiation.local_applied()
            }
            out = outbound.recv() => {
                let Some(msg) = out else { break };
                let bye = matches!(msg, ClientMsg::Bye);
                if let Err(e) = ws.send(text(&msg)).await {
                    fail(ConnectError::Unreachable(format!("cannot send to signaling: {e}")));
                    state.end(format!("signaling went away: {e}"));
                    break;
                }
                if bye {
                    let _ = ws.close(None).await;
                    break;
                }
                continue;
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => {
                        fail(ConnectError::Unreachable("signaling closed the WebSocket".into()));
                        state.end("signaling closed the connection");
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        fail(ConnectError::Unreachable(format!("the signaling WebSocket failed: {e}")));
                        state.end(format!("signaling went away: {e}"));
                        break;
                    }
                };
                match signaling::protocol::parse::<ServerMsg>(&text) {
                    Ok(msg) => on_message(msg, &mut negotiation, &state, &fail),
                    Err(e) => {
                        tracing::warn!("unreadable message from signaling: {e}");
                        continue;
                    }
                }
            }
        };
        for step in steps {
            match step {
                Step::ApplyAnswer(sdp) => match apply_answer(&pc, &state, sdp).await {
                    Ok(()) => {
                        for step in negotiation.answer_applied() {
                            if let Step::AddCandidate(c) = step {
                                add_candidate(&pc, c).await;
                            }
                        }
                        let _ = answered.try_send(Ok(()));
                    }
                    Err(why) => fail(ConnectError::Failed(why)),
                },
                Step::AddCandidate(c) => add_candidate(&pc, c).await,
            }
        }
    }
}

/// One message from signaling; returns the negotiation steps it leads to.
fn on_message(
    msg: ServerMsg,
    negotiation: &mut Negotiation,
    state: &SessionState,
    fail: &dyn Fn(ConnectError),
) -> Vec<Step> {
    match msg {
        ServerMsg::Answer { sdp } => negotiation.answer(sdp),
        // With a relay in between, only the relay (already in the answer) may reach the node.
        ServerMsg::Ice { .. } if state.route.is_some() => Vec::new(),
        ServerMsg::Ice { candidate, .. } => negotiation.candidate(RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_mline_index,
            ..Default::default()
        }),
        ServerMsg::SessionEnded { reason, permanent } => {
            if permanent {
                fail(ConnectError::Refused(format!(
                    "the session ended: {reason}"
                )));
                state.end_for_good(reason);
            } else {
                fail(ConnectError::Failed(format!("the session ended: {reason}")));
                state.end(reason);
            }
            Vec::new()
        }
        ServerMsg::Error { code, message } => {
            tracing::warn!(?code, "signaling error: {message}");
            if code == ErrorCode::NodeLost {
                state.end(format!("the node was lost: {message}"));
            }
            fail(refusal(code, message));
            Vec::new()
        }
        other => {
            tracing::debug!("ignoring {other:?}");
            Vec::new()
        }
    }
}

/// Applies the node's answer (through the media route, if there is one).
async fn apply_answer(
    pc: &Arc<dyn PeerConnection>,
    state: &SessionState,
    sdp: String,
) -> Result<(), String> {
    let sdp = match &state.route {
        Some(route) => route.answer(&sdp),
        None => sdp,
    };
    let answer = RTCSessionDescription::answer(sdp)
        .map_err(|e| format!("the node's answer is not valid SDP: {e}"))?;
    pc.set_remote_description(answer)
        .await
        .map_err(|e| format!("the node's answer was refused: {e}"))
}

async fn add_candidate(pc: &Arc<dyn PeerConnection>, c: RTCIceCandidateInit) {
    if c.candidate.is_empty() {
        return; // end of candidates
    }
    if let Err(e) = pc.add_ice_candidate(c).await {
        tracing::debug!("ignoring a remote candidate: {e}");
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`encodeURIComponent`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(msg: &ClientMsg) -> Message {
    Message::Text(
        serde_json::to_string(msg)
            .expect("client messages always serialise")
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_players_screens() {
        let m = || "m".to_owned();
        assert!(matches!(
            refusal(ErrorCode::NoNodeAvailable, m()),
            ConnectError::NoNode(_)
        ));
        assert!(matches!(
            refusal(ErrorCode::Forbidden, m()),
            ConnectError::AuthRefused(_)
        ));
        assert!(matches!(
            refusal(ErrorCode::UnknownTitle, m()),
            ConnectError::Refused(_)
        ));
        assert!(!refusal(ErrorCode::UnknownTitle, m()).worth_retrying());
        assert!(refusal(ErrorCode::NodeLost, m()).worth_retrying());
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters() {
        assert_eq!(percent_encode("aZ0-_.~"), "aZ0-_.~");
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
