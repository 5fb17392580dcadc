//! Fuzzes the protocol decoder: any bytes, read as (lossy) UTF-8, must parse or fail cleanly,
//! and whatever parses must survive a serialise/parse round trip unchanged.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use signaling::protocol::{ClientMsg, MAX_MESSAGE_BYTES, NodeMsg, ServerMsg, parse};

fuzz_target!(|data: &[u8]| {
    // The service receives text frames, so the decoder only ever sees valid UTF-8; lossy
    // conversion keeps every input useful instead of discarding the invalid ones.
    let text = String::from_utf8_lossy(data);
    round_trip::<ClientMsg>(&text);
    round_trip::<NodeMsg>(&text);
    // What the service sends, as the client parses it.
    round_trip::<ServerMsg>(&text);
});

fn round_trip<T>(text: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(msg) = parse::<T>(text) else { return };
    assert!(
        text.len() <= MAX_MESSAGE_BYTES,
        "parse accepted {} bytes, over the limit",
        text.len()
    );
    let json = serde_json::to_string(&msg).expect("a parsed message serialises");
    // Re-parsed with serde_json directly rather than `parse`: filling in defaults (an empty
    // `titles`, say) can push a message that was just under the size limit over it, and that
    // is the limit doing its job, not a round-trip failure.
    let again: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("re-serialised {msg:?} as {json} does not parse: {e}"));
    assert_eq!(msg, again, "round trip through {json} changed the message");
}
