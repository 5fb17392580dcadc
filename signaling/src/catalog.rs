//! The title catalog: what studios publish and nodes launch.
//!
//! A studio sends a [`TitleManifest`] (`PUT /api/titles/{id}`); the service checks it with
//! [`TitleManifest::validate`], stamps it into a [`Title`] owned by that studio, and keeps it in
//! the store. A studio may update or withdraw only its own titles. The built-in titles are
//! always present and owned by no studio: the demo ([`demo_title`]) and the pattern
//! ([`pattern_title`]), a CPU-made instrument every node offers, which checkers and the latency
//! lab play and players' pickers leave out.

use serde::{Deserialize, Serialize};

use crate::policy::Area;

/// Id of the built-in demo title, the embedded default.
pub const DEMO_TITLE: &str = "demo";

/// Id of the built-in pattern title: frames made on the CPU, the same on every node.
pub const PATTERN_TITLE: &str = "pattern";

/// The ids of the titles built into every node; no studio may publish them.
pub const BUILTIN_TITLES: [&str; 2] = [DEMO_TITLE, PATTERN_TITLE];

/// Owner recorded for built-in titles.
pub const BUILTIN_STUDIO: &str = "stratus";

/// How a node starts a title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Launch {
    /// A program installed on the node: `argv[0]` and its arguments, run in the session's
    /// sandbox.
    Command {
        /// Program and arguments.
        argv: Vec<String>,
    },
    /// An OCI image the node pulls and runs.
    Image {
        /// Image reference, e.g. `registry.example.com/acme/game:1.2`.
        image: String,
    },
    /// A title built into the node (the demo).
    Builtin {
        /// Its name.
        name: String,
    },
}

/// Input devices a title takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Keyboard.
    Keyboard,
    /// Mouse (absolute and relative).
    Mouse,
    /// Gamepad.
    Gamepad,
    /// Touch.
    Touch,
}

/// What a studio publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TitleManifest {
    /// Stable id: 1–64 of `a-z`, `0-9`, `-`; also the path segment in the API.
    pub id: String,
    /// Display name.
    pub name: String,
    /// How nodes start it.
    pub launch: Launch,
    /// GPU class needed (`any` for none in particular).
    #[serde(default = "any_gpu")]
    pub gpu_class: String,
    /// Input devices it takes.
    #[serde(default)]
    pub inputs: Vec<InputKind>,
    /// Where it may be played; empty means everywhere the geofence allows.
    #[serde(default)]
    pub allowed_regions: Vec<Area>,
    /// A built-in instrument (the pattern): listed for checkers and labs, left out of the
    /// players' pickers. Only built-in titles are instruments.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instrument: bool,
}

fn any_gpu() -> String {
    "any".to_string()
}

/// A published title, as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Title {
    /// What the studio sent.
    pub manifest: TitleManifest,
    /// The studio that owns it.
    pub studio: String,
    /// Bumped on every update.
    pub revision: u64,
    /// When it was first published (Unix ms).
    pub published_ms: u64,
    /// When it was last changed (Unix ms).
    pub updated_ms: u64,
}

impl Title {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// Whether a node of `gpu_class` can run it.
    pub fn runs_on(&self, gpu_class: &str) -> bool {
        let need = &self.manifest.gpu_class;
        need == "any" || need.eq_ignore_ascii_case(gpu_class)
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The id is empty, too long or has characters outside `a-z0-9-`.
    #[error("title id {0:?} must be 1 to 64 of a-z, 0-9 and '-'")]
    BadId(String),
    /// The id in the body differs from the one in the path.
    #[error("the manifest's id {body:?} differs from the id {path:?} in the URL")]
    IdMismatch {
        /// Id in the URL.
        path: String,
        /// Id in the body.
        body: String,
    },
    /// The name is empty or too long.
    #[error("title name must be 1 to 128 characters")]
    BadName,
    /// The launch section is unusable.
    #[error("launch: {0}")]
    BadLaunch(String),
    /// The GPU class is empty or too long.
    #[error("gpu_class must be 1 to 32 of a-z, 0-9, '-' and '_'")]
    BadGpuClass,
    /// The title is built in and cannot be changed by a studio.
    #[error("title {0:?} is built in and cannot be published over")]
    Reserved(String),
    /// Another studio owns the title.
    #[error("title {0:?} belongs to another studio")]
    NotOwner(String),
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl TitleManifest {
    /// Checks the manifest; `path_id` is the id from the request URL.
    pub fn validate(&self, path_id: &str) -> Result<(), ManifestError> {
        if !valid_id(&self.id) {
            return Err(ManifestError::BadId(self.id.clone()));
        }
        if self.id != path_id {
            return Err(ManifestError::IdMismatch {
                path: path_id.to_string(),
                body: self.id.clone(),
            });
        }
        if BUILTIN_TITLES.contains(&self.id.as_str()) {
            return Err(ManifestError::Reserved(self.id.clone()));
        }
        if self.instrument {
            return Err(ManifestError::BadLaunch(
                "only the titles built into the node are instruments".into(),
            ));
        }
        let name = self.name.trim();
        if name.is_empty() || self.name.chars().count() > 128 {
            return Err(ManifestError::BadName);
        }
        match &self.launch {
            Launch::Command { argv } => {
                if argv.first().is_none_or(|p| p.trim().is_empty()) {
                    return Err(ManifestError::BadLaunch("argv needs a program".into()));
                }
                if argv.len() > 256 || argv.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
                    return Err(ManifestError::BadLaunch(
                        "at most 256 arguments of at most 4096 bytes, without NUL".into(),
                    ));
                }
            }
            Launch::Image { image } => {
                if image.trim().is_empty()
                    || image.len() > 512
                    || image.contains(char::is_whitespace)
                {
                    return Err(ManifestError::BadLaunch(
                        "image must be a reference without spaces".into(),
                    ));
                }
            }
            Launch::Builtin { .. } => {
                return Err(ManifestError::BadLaunch(
                    "builtin titles ship with the node and cannot be published".into(),
                ));
            }
        }
        let gpu = &self.gpu_class;
        if gpu.is_empty()
            || gpu.len() > 32
            || !gpu
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ManifestError::BadGpuClass);
        }
        Ok(())
    }
}

/// The built-in demo title.
pub fn demo_title() -> Title {
    builtin(DEMO_TITLE, "Stratus demo", false)
}

/// The built-in pattern title: the latency lab's equal input and what checkers verify.
pub fn pattern_title() -> Title {
    builtin(PATTERN_TITLE, "Stratus test pattern", true)
}

/// Every built-in title.
pub fn builtin_titles() -> [Title; 2] {
    [demo_title(), pattern_title()]
}

fn builtin(id: &str, name: &str, instrument: bool) -> Title {
    Title {
        manifest: TitleManifest {
            id: id.to_string(),
            name: name.to_string(),
            launch: Launch::Builtin {
                name: id.to_string(),
            },
            gpu_class: any_gpu(),
            inputs: vec![
                InputKind::Keyboard,
                InputKind::Mouse,
                InputKind::Gamepad,
                InputKind::Touch,
            ],
            allowed_regions: Vec::new(),
            instrument,
        },
        studio: BUILTIN_STUDIO.to_string(),
        revision: 1,
        published_ms: 0,
        updated_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(json: &str) -> TitleManifest {
        serde_json::from_str(json).expect("valid manifest json")
    }

    #[test]
    fn a_good_manifest_passes() {
        let m = manifest(
            r#"{"id":"space-race","name":"Space Race","launch":{"kind":"command","argv":["/opt/space/race","--fullscreen"]},"gpu_class":"h100","inputs":["keyboard","gamepad"],"allowed_regions":["region:eu-west","US"]}"#,
        );
        assert_eq!(m.validate("space-race"), Ok(()));
        let t = Title {
            manifest: m,
            studio: "acme".into(),
            revision: 1,
            published_ms: 1,
            updated_ms: 1,
        };
        assert!(t.runs_on("H100"));
        assert!(!t.runs_on("l4"));
        assert!(demo_title().runs_on("cpu"));
        assert!(pattern_title().runs_on("cpu") && pattern_title().manifest.instrument);
        assert!(!demo_title().manifest.instrument);
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (
                r#"{"id":"Bad Id","name":"x","launch":{"kind":"image","image":"a"}}"#,
                "Bad Id",
                "must be 1 to 64",
            ),
            (
                r#"{"id":"a","name":"x","launch":{"kind":"image","image":"a"}}"#,
                "b",
                "differs",
            ),
            (
                r#"{"id":"demo","name":"x","launch":{"kind":"image","image":"a"}}"#,
                "demo",
                "built in",
            ),
            (
                r#"{"id":"pattern","name":"x","launch":{"kind":"image","image":"a"}}"#,
                "pattern",
                "built in",
            ),
            (
                r#"{"id":"a","name":"x","launch":{"kind":"image","image":"a"},"instrument":true}"#,
                "a",
                "instruments",
            ),
            (
                r#"{"id":"a","name":"  ","launch":{"kind":"image","image":"a"}}"#,
                "a",
                "name",
            ),
            (
                r#"{"id":"a","name":"x","launch":{"kind":"command","argv":[]}}"#,
                "a",
                "program",
            ),
            (
                r#"{"id":"a","name":"x","launch":{"kind":"image","image":"a b"}}"#,
                "a",
                "image",
            ),
            (
                r#"{"id":"a","name":"x","launch":{"kind":"image","image":"a"},"gpu_class":"h 100"}"#,
                "a",
                "gpu_class",
            ),
        ];
        for (json, path, needle) in cases {
            let err = manifest(json).validate(path).expect_err(json);
            assert!(err.to_string().contains(needle), "{json}: {err}");
        }
        assert!(
            serde_json::from_str::<TitleManifest>(
                r#"{"id":"a","name":"x","launch":{"kind":"image","image":"a"},"extra":1}"#
            )
            .is_err(),
            "unknown fields are refused"
        );
    }
}
