//! The browser client's static files (owned by `client/web/`), embedded so the service serves
//! them with no files on disk.

/// One static file of the browser client.
#[derive(Debug, Clone, Copy)]
pub struct WebFile {
    /// URL path the file is served at.
    pub path: &'static str,
    /// `Content-Type` to send.
    pub content_type: &'static str,
    /// The file's contents.
    pub body: &'static str,
}

/// Every file of the browser client; `/` serves `index.html`.
pub const FILES: &[WebFile] = &[
    WebFile {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../client/web/index.html"),
    },
    WebFile {
        path: "/stratus.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../client/web/stratus.js"),
    },
    WebFile {
        path: "/input.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../client/web/input.js"),
    },
    WebFile {
        path: "/keys.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../client/web/keys.js"),
    },
    WebFile {
        path: "/predict.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../client/web/predict.js"),
    },
];

/// The file served at `path` (`/` is `/index.html`).
pub fn file(path: &str) -> Option<&'static WebFile> {
    let path = if path == "/" { "/index.html" } else { path };
    FILES.iter().find(|f| f.path == path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_is_index() {
        let f = super::file("/").expect("index");
        assert!(f.body.contains("<video"));
        assert!(super::file("/stratus.js").is_some());
        assert!(super::file("/nope").is_none());
    }
}
