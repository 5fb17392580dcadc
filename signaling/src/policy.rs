//! Geofencing: which GPU classes and titles may be served where.
//!
//! A [`GeofencePolicy`] is a list of [`GeofenceRule`]s, written in TOML as `[[rule]]` tables.
//! [`GeofencePolicy::check`] answers, for a GPU class, a title and the client's
//! [`Location`], with a [`Verdict`]. [`check_areas`] does the same for a title manifest's own
//! list of allowed areas.
//!
//! # Semantics
//!
//! The policy fails closed: when it cannot prove a client is outside a restricted area, the
//! client is denied.
//!
//! - A rule *applies* when its `gpu_class` and its `title` match the request. A missing field
//!   or `"*"` matches anything; both compare ASCII case-insensitively (a title id spelled in
//!   another case must not slip past a rule).
//! - Every applicable rule must pass; rules that do not apply are ignored, and a request no
//!   rule applies to is allowed.
//! - An applicable rule denies when one of its `deny` areas matches the client.
//! - An applicable rule with a non-empty `deny` list also denies when the client's country is
//!   unknown and the list names a country, or the client's region is unknown and the list names
//!   a region: an unknown client may be inside the embargo.
//! - An applicable rule with a non-empty `allow` list denies unless one of its areas matches
//!   the client; an unknown field matches no area that names it.
//! - Areas are `"IR"` or `"country:IR"` (ISO 3166-1 alpha-2, any case), `"region:eu-west"`
//!   (any case) and `"*"` (everywhere, including unknown locations).
//!
//! Deny reasons say which GPU class or title is not served in which of the client's areas,
//! and nothing about the rest of the policy.
//!
//! ```
//! use signaling::geo::Location;
//! use signaling::policy::{GeofencePolicy, Verdict};
//!
//! let policy = GeofencePolicy::from_toml(r#"
//!     ## H100s are export-controlled: never serve them to embargoed countries.
//!     [[rule]]
//!     gpu_class = "h100"
//!     deny = ["CU", "IR", "KP", "SY"]
//!
//!     ## This title is licensed for western Europe only, on any GPU.
//!     [[rule]]
//!     title = "alpine-racer"
//!     allow = ["region:eu-west"]
//! "#)?;
//!
//! let tehran = Location { country: Some("IR".into()), ..Location::default() };
//! assert_eq!(
//!     policy.check("h100", "chess-club", &tehran),
//!     Verdict::Deny { reason: "gpu class h100 is not served in country IR".into() },
//! );
//! assert!(policy.check("t4", "chess-club", &tehran).is_allowed());
//! // Nobody knows where this client is, so it may be in an embargoed country.
//! assert!(!policy.check("h100", "chess-club", &Location::default()).is_allowed());
//! # Ok::<(), signaling::policy::PolicyError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::geo::{Location, normalize_country, normalize_region};

/// What can be wrong with a geofence policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The TOML text is malformed, or has an unknown key or an invalid area.
    #[error("invalid geofence policy: {source}")]
    Toml {
        /// The parser's error, with line and column.
        source: toml::de::Error,
    },
    /// An area string is not a country, region or `*`.
    #[error("invalid area {area:?}: {message}")]
    Area {
        /// The area as written.
        area: String,
        /// What is wrong with it.
        message: String,
    },
    /// A rule parses but cannot be meant as written.
    #[error("geofence rule {rule}: {message}")]
    Rule {
        /// 1-based position among the `[[rule]]` tables.
        rule: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// A place a rule names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Area {
    /// An ISO 3166-1 alpha-2 country code, uppercase.
    Country(String),
    /// A region name as in [`Location::region`], lowercase.
    Region(String),
    /// Everywhere, including unknown locations.
    Any,
}

impl Area {
    /// True when the client is in this area. A country or region area never matches a
    /// client whose country or region is unknown; [`Area::Any`] matches every client.
    pub fn matches(&self, loc: &Location) -> bool {
        // Compare case-insensitively in case a Location was built by hand, unnormalised.
        let same = |known: &Option<String>, want: &str| {
            known
                .as_deref()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(want))
        };
        match self {
            Area::Any => true,
            Area::Country(country) => same(&loc.country, country),
            Area::Region(region) => same(&loc.region, region),
        }
    }
}

impl FromStr for Area {
    type Err = PolicyError;

    /// Parses `"IR"`, `"country:IR"`, `"region:eu-west"` or `"*"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |message: &str| PolicyError::Area {
            area: s.to_string(),
            message: message.to_string(),
        };
        let country = |code: &str| {
            normalize_country(code).map(Area::Country).ok_or_else(|| {
                err(
                    "expected a two-letter ISO 3166-1 country code (XX and ZZ mean unknown \
                     and cannot be named)",
                )
            })
        };
        let trimmed = s.trim();
        if trimmed == "*" {
            return Ok(Area::Any);
        }
        match trimmed.split_once(':') {
            None => country(trimmed),
            Some((kind, value)) if kind.trim().eq_ignore_ascii_case("country") => country(value),
            Some((kind, value)) if kind.trim().eq_ignore_ascii_case("region") => {
                normalize_region(value).map(Area::Region).ok_or_else(|| {
                    err("expected a region name of ASCII letters, digits, '-', '_' or '.'")
                })
            }
            Some(_) => Err(err(
                "expected \"IR\", \"country:IR\", \"region:eu-west\" or \"*\"",
            )),
        }
    }
}

impl TryFrom<String> for Area {
    type Error = PolicyError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Area> for String {
    fn from(area: Area) -> Self {
        area.to_string()
    }
}

impl fmt::Display for Area {
    /// The canonical spelling: `country:IR`, `region:eu-west` or `*`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Area::Country(country) => write!(f, "country:{country}"),
            Area::Region(region) => write!(f, "region:{region}"),
            Area::Any => f.write_str("*"),
        }
    }
}

/// One geofence rule: for which GPU class and title, which areas are allowed or denied.
///
/// See the [module documentation](self) for how rules combine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// A misspelt key (`alow`) would otherwise silently drop a restriction.
#[serde(deny_unknown_fields)]
pub struct GeofenceRule {
    /// GPU class this rule is about (`"h100"`); `None` or `"*"` for any.
    #[serde(default)]
    pub gpu_class: Option<String>,
    /// Title id this rule is about; `None` or `"*"` for any.
    #[serde(default)]
    pub title: Option<String>,
    /// If not empty, the client must be in one of these areas.
    #[serde(default)]
    pub allow: Vec<Area>,
    /// The client must be in none of these areas, and known to be outside them.
    #[serde(default)]
    pub deny: Vec<Area>,
}

impl GeofenceRule {
    /// True when this rule is about `gpu_class` and `title`.
    pub fn applies_to(&self, gpu_class: &str, title: &str) -> bool {
        selector_matches(self.gpu_class.as_deref(), gpu_class)
            && selector_matches(self.title.as_deref(), title)
    }

    /// The verdict of this rule alone, assuming it applies.
    fn evaluate(&self, gpu_class: &str, title: &str, client: &Location) -> Verdict {
        let subject = self.subject(gpu_class, title);
        if let Some(area) = self.deny.iter().find(|area| area.matches(client)) {
            let place = match area {
                Area::Country(_) | Area::Region(_) => in_area(area, client),
                Area::Any => "anywhere".to_string(),
            };
            return Verdict::deny(format!("{subject} {place}"));
        }
        if !self.deny.is_empty() {
            let (names_country, names_region) = names(&self.deny);
            let country_unknown = names_country && client.country.is_none();
            let region_unknown = names_region && client.region.is_none();
            if country_unknown || region_unknown {
                let place = unknown_place(country_unknown, region_unknown);
                return Verdict::deny(format!("{subject} {place}"));
            }
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|area| area.matches(client)) {
            return Verdict::deny(format!("{subject} {}", describe(client, &self.allow)));
        }
        Verdict::Allow
    }

    /// The start of a deny reason: what is not served (`"gpu class h100 is not served"`).
    fn subject(&self, gpu_class: &str, title: &str) -> String {
        let gpu_class = gpu_class.trim().to_ascii_lowercase();
        let title = title.trim();
        match (
            is_wildcard(self.gpu_class.as_deref()),
            is_wildcard(self.title.as_deref()),
        ) {
            (false, true) => format!("gpu class {gpu_class} is not served"),
            (true, false) => format!("title {title} is not served"),
            (false, false) => format!("title {title} on gpu class {gpu_class} is not served"),
            (true, true) => "nothing is served".to_string(),
        }
    }
}

fn is_wildcard(selector: Option<&str>) -> bool {
    selector.is_none_or(|s| s.trim() == "*")
}

fn selector_matches(selector: Option<&str>, value: &str) -> bool {
    match selector {
        None => true,
        Some(s) => {
            let s = s.trim();
            s == "*" || s.eq_ignore_ascii_case(value.trim())
        }
    }
}

/// Whether `areas` name any country and any region.
fn names(areas: &[Area]) -> (bool, bool) {
    (
        areas.iter().any(|a| matches!(a, Area::Country(_))),
        areas.iter().any(|a| matches!(a, Area::Region(_))),
    )
}

/// `"in country IR"` or `"in region eu-west"`, in the client's own spelling normalised.
fn in_area(area: &Area, client: &Location) -> String {
    match area {
        Area::Country(c) => format!(
            "in country {}",
            client
                .country
                .as_deref()
                .unwrap_or(c)
                .trim()
                .to_ascii_uppercase()
        ),
        Area::Region(r) => format!(
            "in region {}",
            client
                .region
                .as_deref()
                .unwrap_or(r)
                .trim()
                .to_ascii_lowercase()
        ),
        Area::Any => "anywhere".to_string(),
    }
}

fn unknown_place(country_unknown: bool, region_unknown: bool) -> &'static str {
    match (country_unknown, region_unknown) {
        (true, true) => "where the client's location is unknown",
        (true, false) => "where the client's country is unknown",
        _ => "where the client's region is unknown",
    }
}

/// Where the client is, in the terms an allow list it failed uses: its country if the list
/// names countries and the country is known, else its region likewise, else what is unknown.
fn describe(client: &Location, allow: &[Area]) -> String {
    let (names_country, names_region) = names(allow);
    if names_country && client.country.is_some() {
        return in_area(&Area::Country(String::new()), client);
    }
    if names_region && client.region.is_some() {
        return in_area(&Area::Region(String::new()), client);
    }
    unknown_place(names_country, names_region).to_string()
}

/// All geofence rules. See the [module documentation](self) for the semantics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// A misspelt `[[rules]]` would otherwise parse as an empty policy that allows everything.
#[serde(deny_unknown_fields)]
pub struct GeofencePolicy {
    /// The rules, in file order (order only affects which deny reason is reported).
    #[serde(default, rename = "rule")]
    pub rules: Vec<GeofenceRule>,
}

impl GeofencePolicy {
    /// Parses a policy from TOML `[[rule]]` tables and [validates](Self::validate) it.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let policy: Self = toml::from_str(text).map_err(|source| PolicyError::Toml { source })?;
        policy.validate()?;
        Ok(policy)
    }

    /// Rejects rules that cannot be meant as written: an empty `gpu_class` or `title` (it
    /// would never apply, silently dropping the restriction), or a rule with neither `allow`
    /// nor `deny` (it restricts nothing). [`Self::from_toml`] calls this; call it yourself
    /// when deserialising a policy as part of a larger file.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (index, rule) in self.rules.iter().enumerate() {
            let err = |message: String| PolicyError::Rule {
                rule: index + 1,
                message,
            };
            for (key, value) in [("gpu_class", &rule.gpu_class), ("title", &rule.title)] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    return Err(err(format!(
                        "{key} is empty; leave it out or write \"*\" to mean any"
                    )));
                }
            }
            if rule.allow.is_empty() && rule.deny.is_empty() {
                return Err(err(
                    "has neither allow nor deny areas, so it restricts nothing".to_string(),
                ));
            }
        }
        Ok(())
    }

    /// Whether `gpu_class` may serve `title` to `client`: denied by the first applicable rule
    /// that denies, else allowed.
    pub fn check(&self, gpu_class: &str, title: &str, client: &Location) -> Verdict {
        self.rules
            .iter()
            .filter(|rule| rule.applies_to(gpu_class, title))
            .map(|rule| rule.evaluate(gpu_class, title, client))
            .find(|verdict| !verdict.is_allowed())
            .unwrap_or(Verdict::Allow)
    }
}

/// Checks a title manifest's own list of allowed areas: an empty list allows everywhere;
/// otherwise the client must be in one of the areas, and a client whose location is unknown
/// for what the list names is denied.
pub fn check_areas(allowed: &[Area], client: &Location) -> Verdict {
    if allowed.is_empty() || allowed.iter().any(|area| area.matches(client)) {
        Verdict::Allow
    } else {
        Verdict::deny(format!(
            "this title is not served {}",
            describe(client, allowed)
        ))
    }
}

/// The answer of a geofence check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The client may be served.
    Allow,
    /// The client may not be served.
    Deny {
        /// Why, fit to show the player (names only the client's own country or region).
        reason: String,
    },
}

impl Verdict {
    /// True for [`Verdict::Allow`].
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allow)
    }

    /// The deny reason, if denied.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Allow => None,
            Verdict::Deny { reason } => Some(reason),
        }
    }

    fn deny(reason: String) -> Self {
        Verdict::Deny { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(country: Option<&str>, region: Option<&str>) -> Location {
        Location {
            country: country.map(str::to_string),
            region: region.map(str::to_string),
            coords: None,
        }
    }

    /// (gpu class, title, client country, client region, deny reason or `None` for allow)
    type CheckRow<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );

    fn run(policy: &GeofencePolicy, rows: &[CheckRow]) {
        for (gpu, title, country, region, want) in rows {
            let verdict = policy.check(gpu, title, &loc(*country, *region));
            let case = format!("check({gpu:?}, {title:?}, {country:?}, {region:?})");
            assert_eq!(verdict.reason(), *want, "{case}");
            assert_eq!(verdict.is_allowed(), want.is_none(), "{case}");
        }
    }

    const POLICY: &str = r#"
        # Export control: no H100 for embargoed countries.
        [[rule]]
        gpu_class = "h100"
        deny = ["IR", "KP", "country:cu", " sy "]

        # Licensed for western Europe only.
        [[rule]]
        title = "alpine-racer"
        allow = ["region:eu-west"]

        [[rule]]
        gpu_class = "A100"
        title = "*"
        allow = ["US", "CA", "region:EU-West"]

        [[rule]]
        gpu_class = "*"
        title = "moon-base"
        deny = ["region:cn-north"]

        [[rule]]
        gpu_class = "l4"
        title = "chess-club"
        deny = ["FR"]
    "#;

    #[test]
    fn policy_table() {
        let policy = GeofencePolicy::from_toml(POLICY).expect("policy");
        assert_eq!(policy.rules.len(), 5);
        #[rustfmt::skip]
        let rows: &[CheckRow] = &[
            // Embargo on h100, any title; GPU class in any case, client as built by hand.
            ("h100", "chess-club", Some("IR"), None, Some("gpu class h100 is not served in country IR")),
            ("H100", "x", Some("KP"), None, Some("gpu class h100 is not served in country KP")),
            ("h100", "x", Some("CU"), Some("caribbean"), Some("gpu class h100 is not served in country CU")),
            ("h100", "x", Some("SY"), None, Some("gpu class h100 is not served in country SY")),
            ("h100", "x", Some("ir"), None, Some("gpu class h100 is not served in country IR")),
            ("h100", "x", Some("FR"), Some("eu-west"), None),
            ("h100", "x", Some("US"), None, None),
            // An unknown country may be an embargoed one.
            ("h100", "x", None, Some("eu-west"), Some("gpu class h100 is not served where the client's country is unknown")),
            ("h100", "x", None, None, Some("gpu class h100 is not served where the client's country is unknown")),
            // Other GPU classes are not embargoed.
            ("t4", "x", Some("IR"), None, None),
            ("t4", "x", Some("KP"), None, None),
            ("h1000", "x", Some("IR"), None, None),
            ("t4", "x", None, None, None),
            // A title limited to a region, on any GPU; title in any case.
            ("t4", "alpine-racer", Some("FR"), Some("eu-west"), None),
            ("t4", "alpine-racer", Some("FR"), Some("EU-WEST"), None),
            ("t4", "alpine-racer", Some("US"), Some("us-east"), Some("title alpine-racer is not served in region us-east")),
            ("t4", "Alpine-Racer", Some("US"), Some("us-east"), Some("title Alpine-Racer is not served in region us-east")),
            ("t4", "alpine-racer", Some("FR"), None, Some("title alpine-racer is not served where the client's region is unknown")),
            ("t4", "alpine-racer", None, None, Some("title alpine-racer is not served where the client's region is unknown")),
            // Both rules apply; each must pass.
            ("h100", "alpine-racer", Some("IR"), Some("eu-west"), Some("gpu class h100 is not served in country IR")),
            ("h100", "alpine-racer", Some("FR"), Some("us-east"), Some("title alpine-racer is not served in region us-east")),
            ("h100", "alpine-racer", Some("FR"), Some("eu-west"), None),
            // A mixed allow list: one of the countries or the region will do.
            ("a100", "x", Some("US"), None, None),
            ("a100", "x", Some("ca"), Some("ca-central"), None),
            ("a100", "x", Some("DE"), Some("eu-west"), None),
            ("A100", "x", Some("DE"), Some("eu-central"), Some("gpu class a100 is not served in country DE")),
            ("a100", "x", None, Some("ap-south"), Some("gpu class a100 is not served in region ap-south")),
            ("a100", "x", None, None, Some("gpu class a100 is not served where the client's location is unknown")),
            // A region denied for one title on any GPU.
            ("t4", "moon-base", Some("CN"), Some("cn-north"), Some("title moon-base is not served in region cn-north")),
            ("t4", "moon-base", Some("CN"), None, Some("title moon-base is not served where the client's region is unknown")),
            ("t4", "moon-base", Some("CN"), Some("cn-east"), None),
            // A rule for one GPU class and one title.
            ("l4", "chess-club", Some("FR"), None, Some("title chess-club on gpu class l4 is not served in country FR")),
            ("L4", "CHESS-CLUB", Some("fr"), None, Some("title CHESS-CLUB on gpu class l4 is not served in country FR")),
            ("t4", "chess-club", Some("FR"), None, None),
            ("l4", "other", Some("FR"), None, None),
        ];
        run(&policy, rows);
    }

    #[test]
    fn wildcard_rules_apply_to_everything() {
        let policy = GeofencePolicy::from_toml(
            r#"
            [[rule]]
            deny = ["KP"]

            [[rule]]
            gpu_class = "*"
            title = "*"
            deny = ["region:moon"]

            [[rule]]
            gpu_class = "quantum"
            deny = ["*"]
            "#,
        )
        .expect("policy");
        #[rustfmt::skip]
        let rows: &[CheckRow] = &[
            ("t4", "x", Some("KP"), Some("ap-east"), Some("nothing is served in country KP")),
            ("t4", "x", Some("FR"), Some("moon"), Some("nothing is served in region moon")),
            ("t4", "x", Some("FR"), Some("eu-west"), None),
            // With a global embargo, a client of unknown location is denied everything.
            ("t4", "x", None, Some("eu-west"), Some("nothing is served where the client's country is unknown")),
            ("t4", "x", Some("FR"), None, Some("nothing is served where the client's region is unknown")),
            ("quantum", "x", Some("FR"), Some("eu-west"), Some("gpu class quantum is not served anywhere")),
        ];
        run(&policy, rows);
        let empty = GeofencePolicy::default();
        assert!(empty.check("h100", "x", &Location::default()).is_allowed());
    }

    #[test]
    fn area_parsing() {
        let country = |c: &str| Ok(Area::Country(c.to_string()));
        let region = |r: &str| Ok(Area::Region(r.to_string()));
        #[rustfmt::skip]
        let rows: Vec<(&str, Result<Area, &str>)> = vec![
            ("IR", country("IR")),
            ("ir", country("IR")),
            (" country:ir ", country("IR")),
            ("Country: KP", country("KP")),
            ("region:eu-west", region("eu-west")),
            ("REGION:EU-West", region("eu-west")),
            ("region:us_east.1", region("us_east.1")),
            ("*", Ok(Area::Any)),
            (" * ", Ok(Area::Any)),
            ("IRN", Err("expected a two-letter ISO 3166-1 country code")),
            ("country:", Err("two-letter ISO 3166-1 country code")),
            ("XX", Err("XX and ZZ mean unknown")),
            ("region:", Err("expected a region name")),
            ("region:eu west", Err("expected a region name")),
            ("city:Paris", Err("expected \"IR\", \"country:IR\", \"region:eu-west\" or \"*\"")),
            ("", Err("two-letter")),
            ("**", Err("two-letter")),
        ];
        for (text, want) in rows {
            match (text.parse::<Area>(), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text:?}"),
                (Err(err), Err(fragment)) => {
                    let message = err.to_string();
                    let prefix = format!("invalid area {text:?}: ");
                    assert!(message.starts_with(&prefix), "{message}");
                    assert!(message.contains(fragment), "{text:?}: {message}");
                }
                (got, want) => panic!("{text:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn area_serde_round_trip() {
        let areas = vec![
            Area::Country("IR".into()),
            Area::Region("eu-west".into()),
            Area::Any,
        ];
        let json = serde_json::to_string(&areas).expect("serialize");
        assert_eq!(json, r#"["country:IR","region:eu-west","*"]"#);
        let back: Vec<Area> = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, areas);
        let err = serde_json::from_str::<Vec<Area>>(r#"["Iran"]"#).expect_err("bad area");
        assert!(err.to_string().contains("invalid area \"Iran\""), "{err}");
    }

    #[test]
    fn area_matches() {
        let fr_west = loc(Some("FR"), Some("eu-west"));
        let unknown = Location::default();
        #[rustfmt::skip]
        let rows = [
            (Area::Any, &fr_west, true),
            (Area::Any, &unknown, true),
            (Area::Country("FR".into()), &fr_west, true),
            (Area::Country("DE".into()), &fr_west, false),
            (Area::Country("FR".into()), &unknown, false),
            (Area::Region("eu-west".into()), &fr_west, true),
            (Area::Region("eu".into()), &fr_west, false),
            (Area::Region("eu-west".into()), &unknown, false),
        ];
        for (area, client, want) in rows {
            assert_eq!(area.matches(client), want, "{area} vs {client:?}");
        }
    }

    /// (allowed areas, client country, client region, deny reason or `None` for allow)
    type AreasRow<'a> = (Vec<Area>, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    #[test]
    fn check_areas_table() {
        let west = || Area::Region("eu-west".into());
        let fr = || Area::Country("FR".into());
        #[rustfmt::skip]
        let rows: Vec<AreasRow> = vec![
            (vec![], None, None, None),
            (vec![], Some("KP"), None, None),
            (vec![west()], Some("DE"), Some("eu-west"), None),
            (vec![west()], Some("US"), Some("us-east"), Some("this title is not served in region us-east")),
            (vec![west()], Some("FR"), None, Some("this title is not served where the client's region is unknown")),
            (vec![fr(), west()], Some("DE"), Some("eu-west"), None),
            (vec![fr(), west()], Some("FR"), Some("us-east"), None),
            (vec![fr(), west()], Some("DE"), Some("eu-central"), Some("this title is not served in country DE")),
            (vec![fr()], None, None, Some("this title is not served where the client's country is unknown")),
            (vec![Area::Any], None, None, None),
        ];
        for (allowed, country, region, want) in rows {
            let verdict = check_areas(&allowed, &loc(country, region));
            assert_eq!(verdict.reason(), want, "{allowed:?} {country:?} {region:?}");
        }
    }

    #[test]
    fn bad_policies_are_rejected() {
        // (toml, fragment of the error)
        #[rustfmt::skip]
        let rows = [
            ("[[rule]]\ngpu_class = \"h100\"\nalow = [\"IR\"]\n", "alow"),
            ("[[rules]]\ngpu_class = \"h100\"\ndeny = [\"IR\"]\n", "rules"),
            ("[[rule]]\ndeny = [\"Iran\"]\n", "invalid area \"Iran\""),
            ("[[rule]]\ndeny = \"IR\"\n", "invalid geofence policy"),
            ("[[rule]]\ngpu_class = \"\"\ndeny = [\"IR\"]\n", "geofence rule 1: gpu_class is empty"),
            ("[[rule]]\ndeny = [\"IR\"]\n[[rule]]\ntitle = \" \"\nallow = [\"FR\"]\n", "geofence rule 2: title is empty"),
            ("[[rule]]\ngpu_class = \"h100\"\n", "geofence rule 1: has neither allow nor deny"),
            ("[[rule]\n", "invalid geofence policy"),
        ];
        for (text, fragment) in rows {
            let message = GeofencePolicy::from_toml(text).expect_err(text).to_string();
            assert!(message.contains(fragment), "{text:?}: {message}");
        }
        let empty = GeofencePolicy::from_toml("").expect("empty policy");
        assert_eq!(empty, GeofencePolicy::default());
    }
}
