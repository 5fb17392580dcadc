//! The browser page's title picker: a studio's published title and the demo are listed, the
//! player picks the demo, and it plays.

use std::time::Duration;

use benches::chromium::{Chromium, LaunchOptions};
use benches::e2e::INBOUND_VIDEO;
use server::config::NodeConfig;
use signaling::config::{Config, Studio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_titles_and_plays_the_one_picked() {
    let signaling = Config {
        studios: vec![Studio {
            name: "acme".into(),
            key: "acme-key".into(),
        }],
        ..Config::default()
    };
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    config.video.width = 640;
    config.video.height = 360;
    let stack = crate::support::start_with(config, &signaling).await;
    // A studio publishes a title no node has installed yet.
    let manifest = serde_json::json!({"id": "space-race", "name": "Space Race", "launch": {"kind": "image", "image": "registry.example.com/acme/space-race:1"}});
    let put = format!(
        "PUT /api/titles/space-race HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{manifest}",
        manifest.to_string().len()
    );
    let reply = benches::lab::http_raw(stack.addr, &put)
        .await
        .expect("publish");
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");

    let mut browser = Chromium::launch(&stack.page_url(), &LaunchOptions::default())
        .await
        .expect("launch headless chromium");
    browser
        .wait_for(
            "document.querySelectorAll('#picker.on button').length === 2",
            Duration::from_secs(20),
            "the picker to list two titles",
        )
        .await
        .expect("picker");
    let buttons = browser
        .eval("[...document.querySelectorAll('#picker button')].map(b => ({ id: b.dataset.title, disabled: b.disabled, text: b.textContent }))")
        .await
        .expect("buttons");
    let list = buttons.as_array().expect("list");
    let demo = list
        .iter()
        .find(|b| b["id"] == "demo")
        .expect("demo listed");
    let space = list
        .iter()
        .find(|b| b["id"] == "space-race")
        .expect("published title listed");
    assert_eq!(demo["disabled"], false, "{buttons}");
    assert_eq!(space["disabled"], true, "no node has it: {buttons}");
    assert!(
        space["text"]
            .as_str()
            .unwrap_or("")
            .contains("no node online"),
        "{buttons}"
    );

    browser
        .eval("document.querySelector('#picker button[data-title=\"demo\"]').click()")
        .await
        .expect("click");
    browser
        .wait_for(
            &format!("({INBOUND_VIDEO}).then(s => s && s.framesDecoded >= 60)"),
            Duration::from_secs(30),
            "60 frames of the picked title",
        )
        .await
        .expect("frames");
    let title = browser.eval("window.stratus.title").await.expect("title");
    assert_eq!(title, "demo");
}
