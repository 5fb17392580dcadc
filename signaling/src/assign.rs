//! Assignment, without I/O: which nodes may take a session, and in what order to try them.
//!
//! The service reads the live nodes and their used slots from the store, calls [`plan`], then
//! tries [`Plan::ranked`] in order with the store's atomic reservation until one succeeds (a
//! node can fill up between the read and the reservation; the reservation, not the plan, is
//! the truth).
//!
//! ```
//! use std::collections::BTreeMap;
//! use signaling::assign::{plan, Request};
//! use signaling::{catalog, geo::Location, policy::GeofencePolicy};
//! let title = catalog::demo_title();
//! let rtt = BTreeMap::new();
//! let request = Request { title: &title, client: &Location::default(), rtt_ms: &rtt };
//! let plan = plan(&[], &[], &request, &GeofencePolicy::default(), 0);
//! assert!(plan.ranked.is_empty());
//! ```
//!
//! Ranking: candidates whose round trip the client measured (from [`probe_targets`]) come
//! first, by RTT plus a load penalty; the rest follow by great-circle distance from the client
//! plus a load penalty; unknown distances go last, by load. Ties break by node id so the
//! order is deterministic.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::Title;
use crate::geo::{Location, great_circle_km};
use crate::policy::{GeofencePolicy, Verdict, check_areas};
use crate::protocol::ErrorCode;
use crate::store::NodeRecord;

/// How many nearest candidates a client is asked to probe.
pub const PROBE_TOP_K: usize = 3;

/// A fully loaded node ranks as if it were this much farther away.
pub const LOAD_PENALTY_KM: f64 = 2000.0;

/// A fully loaded node ranks as if its round trip were this much longer.
pub const LOAD_PENALTY_MS: f64 = 20.0;

/// Largest RTT a client may report; larger, negative or non-finite values are ignored.
pub const MAX_REPORTED_RTT_MS: f64 = 10_000.0;

/// What the client asks for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The title to play.
    pub title: &'a Title,
    /// Where the client is, as far as the service can tell.
    pub client: &'a Location,
    /// Round trips the client measured, by node id.
    pub rtt_ms: &'a BTreeMap<String, f64>,
}

/// A node that may take the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// Node id.
    pub node_id: String,
    /// Its capacity.
    pub capacity: u32,
    /// Slots reserved now.
    pub used: u32,
    /// Great-circle distance from the client, when both locations are known.
    pub distance_km: Option<f64>,
    /// The client's measured round trip, if it probed this node.
    pub rtt_ms: Option<f64>,
    /// Its probe URL.
    pub probe_url: Option<String>,
}

impl Candidate {
    fn load(&self) -> f64 {
        if self.capacity == 0 {
            1.0
        } else {
            f64::from(self.used) / f64::from(self.capacity)
        }
    }
}

/// Why a node was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Not heard from within the liveness window.
    Dead,
    /// Taking no new sessions.
    Draining,
    /// Every slot is reserved.
    Full,
    /// The title is not installed there.
    NoTitle,
    /// Its GPU class is not the one the title needs.
    GpuClass,
    /// The geofence does not allow this client on this node.
    Geofence(String),
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Candidates, best first.
    pub ranked: Vec<Candidate>,
    /// Nodes left out and why.
    pub excluded: Vec<(String, Exclusion)>,
    /// Set when the title itself may not be played where the client is.
    pub title_denied: Option<String>,
}

impl Plan {
    /// The error to send when no candidate could be reserved.
    pub fn refusal(&self, title: &str) -> (ErrorCode, String) {
        if let Some(reason) = &self.title_denied {
            return (ErrorCode::Forbidden, reason.clone());
        }
        // Nodes that are up and have the title: why could none of them take the session?
        let serving: Vec<&Exclusion> = self
            .excluded
            .iter()
            .map(|(_, e)| e)
            .filter(|e| !matches!(e, Exclusion::Dead | Exclusion::NoTitle))
            .collect();
        if serving.is_empty() && self.ranked.is_empty() {
            return (
                ErrorCode::NoNodeAvailable,
                format!("no node serving {title:?} is online; try again later"),
            );
        }
        let geofence = serving.iter().find_map(|e| match e {
            Exclusion::Geofence(reason) => Some(reason.clone()),
            _ => None,
        });
        let usable_elsewhere = !self.ranked.is_empty()
            || serving
                .iter()
                .any(|e| matches!(e, Exclusion::Full | Exclusion::Draining));
        match geofence {
            Some(reason) if !usable_elsewhere => (ErrorCode::Forbidden, reason),
            _ => (
                ErrorCode::NoNodeAvailable,
                format!("every node serving {title:?} is busy; try again shortly"),
            ),
        }
    }
}

fn sane_rtt(v: f64) -> Option<f64> {
    (v.is_finite() && (0.0..=MAX_REPORTED_RTT_MS).contains(&v)).then_some(v)
}

/// Chooses and orders the candidates for `request` among `nodes` (`used[i]` is the number of
/// slots reserved on `nodes[i]`).
pub fn plan(
    nodes: &[NodeRecord],
    used: &[u32],
    request: &Request<'_>,
    policy: &GeofencePolicy,
    now_ms: u64,
) -> Plan {
    let title = request.title;
    let title_denied = match check_areas(&title.manifest.allowed_regions, request.client) {
        Verdict::Allow => None,
        Verdict::Deny { reason } => Some(format!("{:?} is not offered here: {reason}", title.id())),
    };
    let mut ranked = Vec::new();
    let mut excluded = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let used = used.get(i).copied().unwrap_or(0);
        let exclusion = if !node.alive(now_ms) {
            Some(Exclusion::Dead)
        } else if !node.titles.iter().any(|t| t == title.id()) {
            Some(Exclusion::NoTitle)
        } else if !title.runs_on(&node.gpu_class) {
            Some(Exclusion::GpuClass)
        } else if let Verdict::Deny { reason } =
            policy.check(&node.gpu_class, title.id(), request.client)
        {
            Some(Exclusion::Geofence(reason))
        } else if node.draining {
            Some(Exclusion::Draining)
        } else if used >= node.capacity {
            Some(Exclusion::Full)
        } else {
            None
        };
        if let Some(e) = exclusion {
            excluded.push((node.node_id.clone(), e));
            continue;
        }
        let distance_km = match (request.client.coords, node.site.coords) {
            (Some(a), Some(b)) => Some(great_circle_km(a, b)),
            _ => None,
        };
        ranked.push(Candidate {
            node_id: node.node_id.clone(),
            capacity: node.capacity,
            used,
            distance_km,
            rtt_ms: request
                .rtt_ms
                .get(&node.node_id)
                .copied()
                .and_then(sane_rtt),
            probe_url: node.probe_url.clone(),
        });
    }
    if title_denied.is_some() {
        for c in ranked.drain(..) {
            excluded.push((c.node_id, Exclusion::Geofence("title region".into())));
        }
    }
    ranked.sort_by(|a, b| {
        rank_key(a)
            .partial_cmp(&rank_key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    Plan {
        ranked,
        excluded,
        title_denied,
    }
}

/// `(tier, score)`: measured RTTs first, then known distances, then the rest by load.
fn rank_key(c: &Candidate) -> (u8, f64) {
    let load = c.load();
    match (c.rtt_ms, c.distance_km) {
        (Some(rtt), _) => (0, rtt + LOAD_PENALTY_MS * load),
        (None, Some(km)) => (1, km + LOAD_PENALTY_KM * load),
        (None, None) => (2, load),
    }
}

/// The nearest `k` candidates that have a probe URL, for the client to measure: ranked by
/// distance and load only (ignoring any RTTs already reported).
pub fn probe_targets(plan: &Plan, k: usize) -> Vec<(String, String)> {
    let mut by_distance: Vec<&Candidate> = plan
        .ranked
        .iter()
        .filter(|c| c.probe_url.is_some())
        .collect();
    by_distance.sort_by(|a, b| {
        let ka = rank_key(&Candidate {
            rtt_ms: None,
            ..(*a).clone()
        });
        let kb = rank_key(&Candidate {
            rtt_ms: None,
            ..(*b).clone()
        });
        ka.partial_cmp(&kb)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    by_distance
        .into_iter()
        .take(k)
        .filter_map(|c| Some((c.node_id.clone(), c.probe_url.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Launch, TitleManifest, demo_title};
    use crate::geo::LatLon;
    use crate::protocol::NodeSite;

    fn node(id: &str, lat: f64, lon: f64, capacity: u32) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            site: NodeSite {
                region: "r".into(),
                country: Some("DE".into()),
                coords: LatLon::new(lat, lon),
            },
            gpu_class: "cpu".into(),
            capacity,
            titles: vec!["demo".into()],
            public_addr: None,
            probe_url: Some(format!("http://{id}/probe")),
            agent_version: String::new(),
            sessions: 0,
            draining: false,
            replica: "a".into(),
            last_seen_ms: 10_000,
            registered_ms: 0,
        }
    }

    fn at(lat: f64, lon: f64) -> Location {
        Location {
            country: Some("FR".into()),
            region: None,
            coords: LatLon::new(lat, lon),
        }
    }

    fn order(plan: &Plan) -> Vec<&str> {
        plan.ranked.iter().map(|c| c.node_id.as_str()).collect()
    }

    const NOW: u64 = 11_000;

    #[test]
    fn nearest_first_then_load_then_measured_rtt() {
        let nodes = [
            node("paris", 48.86, 2.35, 4),
            node("frankfurt", 50.11, 8.68, 4),
            node("tokyo", 35.68, 139.69, 4),
        ];
        let title = demo_title();
        let rtt = BTreeMap::new();
        let london = at(51.51, -0.13);
        let req = Request {
            title: &title,
            client: &london,
            rtt_ms: &rtt,
        };
        let p = plan(&nodes, &[0, 0, 0], &req, &GeofencePolicy::default(), NOW);
        assert_eq!(order(&p), ["paris", "frankfurt", "tokyo"]);
        // Paris three-quarters full: 344 km + 1500 km penalty ranks behind Frankfurt's 640 km.
        let p = plan(&nodes, &[3, 0, 0], &req, &GeofencePolicy::default(), NOW);
        assert_eq!(order(&p), ["frankfurt", "paris", "tokyo"]);
        // Measured round trips beat distance; unmeasured nodes follow by distance.
        let rtt: BTreeMap<String, f64> =
            [("tokyo".to_string(), 9.0), ("frankfurt".to_string(), 30.0)].into();
        let req = Request {
            rtt_ms: &rtt,
            ..req
        };
        let p = plan(&nodes, &[0, 0, 0], &req, &GeofencePolicy::default(), NOW);
        assert_eq!(order(&p), ["tokyo", "frankfurt", "paris"]);
        // Probe targets ignore RTTs and take the nearest k.
        let targets: Vec<String> = probe_targets(&p, 2).into_iter().map(|(id, _)| id).collect();
        assert_eq!(targets, ["paris", "frankfurt"]);
    }

    #[test]
    fn unknown_client_location_ranks_by_load_then_id() {
        let nodes = [
            node("b", 0.0, 0.0, 2),
            node("a", 10.0, 10.0, 2),
            node("c", 5.0, 5.0, 2),
        ];
        let title = demo_title();
        let rtt = BTreeMap::new();
        let nowhere = Location::default();
        let req = Request {
            title: &title,
            client: &nowhere,
            rtt_ms: &rtt,
        };
        let p = plan(&nodes, &[1, 1, 0], &req, &GeofencePolicy::default(), NOW);
        assert_eq!(order(&p), ["c", "a", "b"]);
    }

    #[test]
    fn exclusions_and_refusals() {
        let mut dead = node("dead", 0.0, 0.0, 2);
        dead.last_seen_ms = NOW - crate::store::NODE_TTL_MS;
        let mut draining = node("draining", 0.0, 0.0, 2);
        draining.draining = true;
        let full = node("full", 0.0, 0.0, 1);
        let mut other = node("other-title", 0.0, 0.0, 2);
        other.titles = vec!["x".into()];
        let mut h100 = node("h100", 0.0, 0.0, 2);
        h100.gpu_class = "h100".into();
        let nodes = [dead, draining, full, other, h100];
        let title = demo_title();
        let rtt = BTreeMap::new();
        let iran = Location {
            country: Some("IR".into()),
            ..Location::default()
        };
        let req = Request {
            title: &title,
            client: &iran,
            rtt_ms: &rtt,
        };
        let policy = GeofencePolicy::from_toml("[[rule]]\ngpu_class = \"h100\"\ndeny = [\"IR\"]\n")
            .expect("policy");
        let p = plan(&nodes, &[0, 0, 1, 0, 0], &req, &policy, NOW);
        assert!(p.ranked.is_empty());
        let why: Vec<(&str, &Exclusion)> =
            p.excluded.iter().map(|(id, e)| (id.as_str(), e)).collect();
        assert_eq!(why[0], ("dead", &Exclusion::Dead));
        assert_eq!(why[1], ("draining", &Exclusion::Draining));
        assert_eq!(why[2], ("full", &Exclusion::Full));
        assert_eq!(why[3], ("other-title", &Exclusion::NoTitle));
        assert!(matches!(why[4], ("h100", Exclusion::Geofence(_))));
        // Some node could serve later (full, draining): busy, not forbidden.
        assert_eq!(p.refusal("demo").0, ErrorCode::NoNodeAvailable);
        // Only the geofenced node remains: forbidden, with the reason.
        let p = plan(&nodes[4..], &[0], &req, &policy, NOW);
        let (code, msg) = p.refusal("demo");
        assert_eq!(code, ErrorCode::Forbidden);
        assert!(msg.contains("h100"), "{msg}");
        // Nothing online with the title.
        let p = plan(&nodes[..1], &[0], &req, &policy, NOW);
        let (code, msg) = p.refusal("demo");
        assert_eq!(code, ErrorCode::NoNodeAvailable);
        assert!(msg.contains("online"), "{msg}");
    }

    #[test]
    fn a_titles_own_regions_and_gpu_class_apply() {
        let mut title = demo_title();
        title.manifest = TitleManifest {
            id: "eu-only".into(),
            name: "EU only".into(),
            launch: Launch::Image { image: "x".into() },
            gpu_class: "l4".into(),
            inputs: vec![],
            allowed_regions: vec!["region:eu-west".parse().expect("area")],
            instrument: false,
        };
        let mut l4 = node("l4", 0.0, 0.0, 2);
        l4.gpu_class = "L4".into();
        l4.titles = vec!["eu-only".into()];
        let mut cpu = node("cpu", 0.0, 0.0, 2);
        cpu.titles = vec!["eu-only".into()];
        let nodes = [l4, cpu];
        let rtt = BTreeMap::new();
        let eu = Location {
            region: Some("eu-west".into()),
            ..Location::default()
        };
        let req = Request {
            title: &title,
            client: &eu,
            rtt_ms: &rtt,
        };
        let p = plan(&nodes, &[0, 0], &req, &GeofencePolicy::default(), NOW);
        assert_eq!(order(&p), ["l4"]);
        assert_eq!(p.excluded, vec![("cpu".to_string(), Exclusion::GpuClass)]);
        let us = Location {
            region: Some("us-east".into()),
            ..Location::default()
        };
        let req = Request { client: &us, ..req };
        let p = plan(&nodes, &[0, 0], &req, &GeofencePolicy::default(), NOW);
        assert!(p.ranked.is_empty());
        assert_eq!(p.refusal("eu-only").0, ErrorCode::Forbidden);
    }
}
