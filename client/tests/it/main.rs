//! The browser client's generated tables stay identical to the Rust ones.

use input::KeyCode;

/// client/web/keys.js as the Rust key table produces it.
fn keys_js() -> String {
    let mut s = String::from(
        "// Generated from the `input` crate's KeyCode table; `cargo test -p client` checks it.\n\
         // Regenerate with: STRATUS_BLESS=1 cargo test -p client\n\
         // DOM KeyboardEvent.code -> Stratus wire key code (USB HID usage).\n\
         export const KEY_CODES = Object.freeze({\n",
    );
    for key in KeyCode::ALL {
        s.push_str(&format!("  {}: 0x{:02x},\n", key.dom_code(), key.as_u16()));
    }
    s.push_str("});\n");
    s
}

#[test]
fn web_key_table_matches_the_rust_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/web/keys.js");
    let want = keys_js();
    if std::env::var_os("STRATUS_BLESS").is_some() {
        std::fs::write(path, &want).expect("write keys.js");
    }
    let got = std::fs::read_to_string(path).expect("read keys.js");
    assert_eq!(
        got, want,
        "client/web/keys.js is stale; run STRATUS_BLESS=1 cargo test -p client"
    );
}
