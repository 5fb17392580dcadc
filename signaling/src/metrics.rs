//! Counters the service keeps and renders in Prometheus' text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the assignment latency histogram's buckets.
const ASSIGN_BUCKETS_S: [f64; 9] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// The service's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client WebSockets accepted.
    pub client_connections: AtomicU64,
    /// Node WebSockets accepted.
    pub node_connections: AtomicU64,
    /// Client WebSockets open now.
    pub clients_open: AtomicI64,
    /// Node WebSockets open now.
    pub nodes_open: AtomicI64,
    /// Sessions whose client is on this replica, now.
    pub sessions_active: AtomicI64,
    /// Envelopes sent to other replicas.
    pub envelopes_published: AtomicU64,
    /// Envelopes received from other replicas.
    pub envelopes_received: AtomicU64,
    labelled: Mutex<Labelled>,
}

#[derive(Debug, Default)]
struct Labelled {
    assignments: Vec<(String, u64)>,
    upgrades_refused: Vec<(String, u64)>,
    messages_refused: Vec<(String, u64)>,
    assign_buckets: [u64; ASSIGN_BUCKETS_S.len()],
    assign_count: u64,
    assign_sum_s: f64,
}

fn bump(list: &mut Vec<(String, u64)>, label: &str) {
    match list.iter_mut().find(|(l, _)| l == label) {
        Some((_, n)) => *n += 1,
        None => list.push((label.to_string(), 1)),
    }
}

impl Metrics {
    fn labelled(&self) -> std::sync::MutexGuard<'_, Labelled> {
        self.labelled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts an assignment outcome (`ok`, `no_node_available`, `forbidden`, …) and, for
    /// every outcome, how long the decision took.
    pub fn assignment(&self, outcome: &str, seconds: f64) {
        let mut l = self.labelled();
        bump(&mut l.assignments, outcome);
        for (i, bound) in ASSIGN_BUCKETS_S.iter().enumerate() {
            if seconds <= *bound {
                l.assign_buckets[i] += 1;
            }
        }
        l.assign_count += 1;
        l.assign_sum_s += seconds;
    }

    /// Counts a WebSocket upgrade refused for `reason`.
    pub fn upgrade_refused(&self, reason: &str) {
        bump(&mut self.labelled().upgrades_refused, reason);
    }

    /// Counts a message refused for `reason`.
    pub fn message_refused(&self, reason: &str) {
        bump(&mut self.labelled().messages_refused, reason);
    }

    /// The exposition text; `nodes_alive` comes from the store at scrape time.
    pub fn render(&self, replica: &str, nodes_alive: Option<usize>) -> String {
        let mut out = String::new();
        let r = escape(replica);
        let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{replica=\"{r}\"}} {value}");
        };
        gauge(
            "stratus_client_connections_total",
            "Client WebSockets accepted.",
            "counter",
            self.client_connections.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "stratus_node_connections_total",
            "Node WebSockets accepted.",
            "counter",
            self.node_connections.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "stratus_clients_open",
            "Client WebSockets open.",
            "gauge",
            self.clients_open.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "stratus_nodes_connected",
            "Node WebSockets open on this replica.",
            "gauge",
            self.nodes_open.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "stratus_sessions_active",
            "Sessions whose player is connected to this replica.",
            "gauge",
            self.sessions_active.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "stratus_envelopes_published_total",
            "Messages routed to other replicas.",
            "counter",
            self.envelopes_published.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            "stratus_envelopes_received_total",
            "Messages received from other replicas.",
            "counter",
            self.envelopes_received.load(Ordering::Relaxed).to_string(),
        );
        if let Some(n) = nodes_alive {
            gauge(
                "stratus_nodes_alive",
                "Live nodes in the fleet (from the store).",
                "gauge",
                n.to_string(),
            );
        }
        let l = self.labelled();
        labelled_counter(
            &mut out,
            "stratus_assignments_total",
            "Assignment requests by outcome.",
            "outcome",
            &l.assignments,
            &r,
        );
        labelled_counter(
            &mut out,
            "stratus_upgrades_refused_total",
            "WebSocket upgrades refused, by reason.",
            "reason",
            &l.upgrades_refused,
            &r,
        );
        labelled_counter(
            &mut out,
            "stratus_messages_refused_total",
            "Messages refused, by reason.",
            "reason",
            &l.messages_refused,
            &r,
        );
        let name = "stratus_assign_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to plan and reserve a node.\n# TYPE {name} histogram"
        );
        for (bound, n) in ASSIGN_BUCKETS_S.iter().zip(l.assign_buckets) {
            let _ = writeln!(out, "{name}_bucket{{replica=\"{r}\",le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{replica=\"{r}\",le=\"+Inf\"}} {}",
            l.assign_count
        );
        let _ = writeln!(out, "{name}_sum{{replica=\"{r}\"}} {}", l.assign_sum_s);
        let _ = writeln!(out, "{name}_count{{replica=\"{r}\"}} {}", l.assign_count);
        out
    }
}

fn labelled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, u64)],
    replica: &str,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in values {
        let _ = writeln!(
            out,
            "{name}{{replica=\"{replica}\",{label}=\"{}\"}} {n}",
            escape(value)
        );
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_types_and_labels() {
        let m = Metrics::default();
        m.assignment("ok", 0.0007);
        m.assignment("ok", 0.003);
        m.assignment("forbidden", 0.2);
        m.upgrade_refused("expired");
        let text = m.render("a\"b", Some(3));
        assert!(text.contains("stratus_assignments_total{replica=\"a\\\"b\",outcome=\"ok\"} 2"));
        assert!(
            text.contains(
                "stratus_upgrades_refused_total{replica=\"a\\\"b\",reason=\"expired\"} 1"
            )
        );
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 3"));
        assert!(text.contains("stratus_nodes_alive{replica=\"a\\\"b\"} 3"));
        assert!(text.contains("# TYPE stratus_assign_duration_seconds histogram"));
    }
}
