//! The session's input channel: input datagrams queued by the window go out on the `input`
//! data channel once it is open.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

use super::SessionCounters;

/// Sends queued input once the channel is open; input queued before that is dropped (the
/// game has not started showing anything the player could react to).
pub(super) async fn run(
    channel: Arc<dyn DataChannel>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    counters: Arc<SessionCounters>,
) {
    let mut open = false;
    loop {
        tokio::select! {
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnOpen) => open = true,
                Some(DataChannelEvent::OnClose) | None => break,
                Some(_) => {}
            },
            datagram = queue.recv() => {
                let Some(datagram) = datagram else { break };
                if !open {
                    counters.input_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match channel.send(bytes::BytesMut::from(&datagram[..])).await {
                    Ok(()) => counters.input_sent.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!("input not sent: {e}");
                        counters.input_dropped.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    }
}
