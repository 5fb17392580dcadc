//! The message bus between replicas: each subscriber's own pub/sub connection, kept
//! subscribed by a background task that reconnects with backoff and checks an idle connection
//! with PING.

use futures_util::StreamExt;
use redis::aio::PubSub;
use redis::{Client, ErrorKind, RedisError, Value};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{
    CONNECT_TIMEOUT, INBOX_DEPTH, MAX_BACKOFF, MIN_BACKOFF, PUBSUB_PING_EVERY, RESPONSE_TIMEOUT,
};
use crate::store::Envelope;

/// A new pub/sub connection subscribed to `channel`, within [`CONNECT_TIMEOUT`].
pub(super) async fn open_pubsub(client: &Client, channel: &str) -> Result<PubSub, RedisError> {
    let open = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "timed out",
                format!(
                    "no pub/sub connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )))
        })
}

/// Forwards the envelopes published on `channel` to `tx` until its receiver is dropped,
/// reconnecting (with backoff) and subscribing again whenever the connection is lost.
pub(super) async fn forward(
    client: Client,
    url: String,
    channel: String,
    mut pubsub: PubSub,
    tx: mpsc::Sender<Envelope>,
) {
    loop {
        match pump(pubsub, &channel, &tx).await {
            Pump::ReceiverGone => return,
            Pump::ConnectionLost(why) => {
                tracing::warn!(%url, %channel, %why, "lost the redis pub/sub connection; reconnecting");
            }
        }
        let mut backoff = MIN_BACKOFF;
        pubsub = loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            match open_pubsub(&client, &channel).await {
                Ok(pubsub) => {
                    tracing::info!(%url, %channel, "resubscribed to redis pub/sub");
                    break pubsub;
                }
                Err(e) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        %url, %channel, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "cannot resubscribe to redis pub/sub"
                    );
                }
            }
        };
    }
}

/// Why [`pump`] stopped.
enum Pump {
    /// Nobody listens any more: stop for good.
    ReceiverGone,
    /// The connection failed: reconnect.
    ConnectionLost(String),
}

/// Delivers messages from one pub/sub connection until it fails or `tx`'s receiver is gone.
async fn pump(pubsub: PubSub, channel: &str, tx: &mpsc::Sender<Envelope>) -> Pump {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PUBSUB_PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the connection was just checked by SUBSCRIBE.
    ping.tick().await;
    loop {
        tokio::select! {
            () = tx.closed() => return Pump::ReceiverGone,
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Pump::ConnectionLost("the connection closed".into());
                };
                let envelope = match serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!(
                            %channel, error = %e, bytes = msg.get_payload_bytes().len(),
                            "skipping an undecodable envelope"
                        );
                        continue;
                    }
                };
                match tx.try_send(envelope) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => tracing::warn!(
                        %channel, depth = INBOX_DEPTH,
                        "inbox is full; dropping an envelope"
                    ),
                    Err(TrySendError::Closed(_)) => return Pump::ReceiverGone,
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Pump::ConnectionLost(format!("PING failed: {e}")),
                    Err(_) => return Pump::ConnectionLost("PING went unanswered".into()),
                }
            }
        }
    }
}
