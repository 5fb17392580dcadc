//! The impairment scenarios R1–R10: how each direction of the path is impaired, what happens
//! when (blackouts, capacity changes), and the pass band each is judged by.
//!
//! Modelled on libwebrtc's full-stack and goog_cc scenario tests and on RFC 8867's test cases
//! (§5.1 variable capacity, §5.3 impaired feedback, §5.6 a competing TCP flow). Timelines are
//! given as fractions of the run, so a short test and the full benchmark replay the same
//! scenario at different lengths.

use std::time::Duration;

use super::link::{LinkConfig, Loss};

/// What happens at a moment of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Nothing gets through in either direction for this long.
    Blackout(Duration),
    /// The downlink's bottleneck rate becomes this (bit/s).
    DownRate(u64),
}

/// An [`Action`] at a time since the impaired span began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// When.
    pub at: Duration,
    /// What.
    pub action: Action,
}

/// One scenario at one length.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// "R1" … "R10".
    pub name: &'static str,
    /// One line for the table.
    pub what: &'static str,
    /// Node → player.
    pub down: LinkConfig,
    /// Player → node (the feedback path).
    pub up: LinkConfig,
    /// The timeline.
    pub events: Vec<Event>,
    /// How long the impaired span lasts.
    pub length: Duration,
    /// A bulk TCP-like flow shares the downlink's bottleneck (RFC 8867 §5.6).
    pub cross_traffic: bool,
}

/// Every scenario's name, in order.
pub const ALL: [&str; 10] = ["R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10"];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Symmetric propagation delay: `rtt` split over the two directions.
fn rtt(rtt_ms: u64) -> (LinkConfig, LinkConfig) {
    let one_way = LinkConfig {
        delay: ms(rtt_ms / 2),
        ..LinkConfig::default()
    };
    (one_way, one_way)
}

impl Scenario {
    /// The full-length version of `name` (RFC 8867 §5.1 runs 100 s; the rest 30 s).
    pub fn full(name: &str) -> Option<Scenario> {
        let length = if name.eq_ignore_ascii_case("R7") {
            Duration::from_secs(100)
        } else {
            Duration::from_secs(30)
        };
        Self::with_length(name, length)
    }

    /// `name` over `length`; events sit at the same fractions of the run whatever its length.
    pub fn with_length(name: &str, length: Duration) -> Option<Scenario> {
        let at = |fraction: f64| length.mul_f64(fraction);
        let (down, up) = rtt(40);
        let base = Scenario {
            name: "",
            what: "",
            down,
            up,
            events: Vec::new(),
            length,
            cross_traffic: false,
        };
        let s = match name.to_ascii_uppercase().as_str() {
            "R1" => Scenario {
                name: "R1",
                what: "clean",
                down: LinkConfig::default(),
                up: LinkConfig::default(),
                ..base
            },
            "R2" => Scenario {
                name: "R2",
                what: "1 % i.i.d. loss, 40 ms RTT",
                down: LinkConfig {
                    loss: Loss::Iid(0.01),
                    ..down
                },
                up: LinkConfig {
                    loss: Loss::Iid(0.01),
                    ..up
                },
                ..base
            },
            "R3" => Scenario {
                name: "R3",
                what: "5 % i.i.d. loss, 40 ms RTT",
                down: LinkConfig {
                    loss: Loss::Iid(0.05),
                    ..down
                },
                up: LinkConfig {
                    loss: Loss::Iid(0.05),
                    ..up
                },
                ..base
            },
            "R4" => Scenario {
                name: "R4",
                what: "Gilbert–Elliott bursts: 2 %, mean burst 3 packets",
                down: LinkConfig {
                    loss: Loss::bursts(0.02, 3.0),
                    ..down
                },
                ..base
            },
            "R5" => Scenario {
                name: "R5",
                what: "50 ms ± 20 ms jitter, reordering",
                down: LinkConfig {
                    delay: ms(50),
                    jitter: ms(20),
                    reorder: true,
                    ..LinkConfig::default()
                },
                ..base
            },
            "R6" => Scenario {
                name: "R6",
                what: "a 500 ms blackout, then a 2 s one",
                events: vec![
                    Event {
                        at: at(0.3),
                        action: Action::Blackout(ms(500)),
                    },
                    Event {
                        at: at(0.6),
                        action: Action::Blackout(ms(2000)),
                    },
                ],
                ..base
            },
            "R7" => {
                let one_way = LinkConfig {
                    delay: ms(50),
                    ..LinkConfig::default()
                };
                Scenario {
                    name: "R7",
                    what: "RFC 8867 §5.1: 1 → 2.5 → 0.6 → 1 Mbit/s, 50 ms, 300 ms queue",
                    down: LinkConfig {
                        rate_bps: 1_000_000,
                        queue: ms(300),
                        ..one_way
                    },
                    up: one_way,
                    events: vec![
                        Event {
                            at: at(0.4),
                            action: Action::DownRate(2_500_000),
                        },
                        Event {
                            at: at(0.6),
                            action: Action::DownRate(600_000),
                        },
                        Event {
                            at: at(0.8),
                            action: Action::DownRate(1_000_000),
                        },
                    ],
                    ..base
                }
            }
            "R8" => Scenario {
                name: "R8",
                what: "bufferbloat: 2 Mbit/s, 300 ms queue",
                down: LinkConfig {
                    rate_bps: 2_000_000,
                    queue: ms(300),
                    ..down
                },
                ..base
            },
            "R9" => Scenario {
                name: "R9",
                what: "impaired feedback: uplink 10 % loss, 100 ± 30 ms; downlink 2.5 Mbit/s",
                down: LinkConfig {
                    rate_bps: 2_500_000,
                    queue: ms(300),
                    ..down
                },
                up: LinkConfig {
                    delay: ms(100),
                    jitter: ms(30),
                    loss: Loss::Iid(0.10),
                    ..LinkConfig::default()
                },
                ..base
            },
            "R10" => Scenario {
                name: "R10",
                what: "RFC 8867 §5.6: a TCP-like bulk flow shares a 3 Mbit/s bottleneck",
                down: LinkConfig {
                    rate_bps: 3_000_000,
                    queue: ms(300),
                    ..down
                },
                cross_traffic: true,
                ..base
            },
            _ => return None,
        };
        Some(s)
    }

    /// The downlink's bottleneck rate `t` into the run (0: none).
    pub fn capacity_at(&self, t: Duration) -> u64 {
        let mut rate = self.down.rate_bps;
        for e in &self.events {
            if let Action::DownRate(r) = e.action
                && e.at <= t
            {
                rate = r;
            }
        }
        rate
    }

    /// The blackouts, as (start, end) since the run began.
    pub fn blackouts(&self) -> Vec<(Duration, Duration)> {
        self.events
            .iter()
            .filter_map(|e| match e.action {
                Action::Blackout(d) => Some((e.at, e.at + d)),
                Action::DownRate(_) => None,
            })
            .collect()
    }

    /// When the downlink's capacity changes, since the run began.
    pub fn capacity_changes(&self) -> Vec<Duration> {
        self.events
            .iter()
            .filter(|e| matches!(e.action, Action::DownRate(_)))
            .map(|e| e.at)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_exists_at_both_lengths() {
        for name in ALL {
            let full = Scenario::full(name).expect(name);
            assert_eq!(full.name, name);
            let short = Scenario::with_length(name, Duration::from_secs(10)).expect(name);
            assert_eq!(short.events.len(), full.events.len());
        }
        assert!(Scenario::full("R11").is_none());
        assert_eq!(Scenario::full("r3").map(|s| s.name), Some("R3"));
    }

    #[test]
    fn rfc8867_capacity_follows_its_timeline() {
        let s = Scenario::full("R7").expect("R7");
        let mbps = |t: u64| s.capacity_at(Duration::from_secs(t)) as f64 / 1e6;
        assert_eq!(
            [mbps(0), mbps(39), mbps(40), mbps(59), mbps(60), mbps(80)],
            [1.0, 1.0, 2.5, 2.5, 0.6, 1.0]
        );
        assert_eq!(s.capacity_changes().len(), 3);
    }

    #[test]
    fn blackouts_scale_with_the_run() {
        let s = Scenario::with_length("R6", Duration::from_secs(10)).expect("R6");
        assert_eq!(
            s.blackouts(),
            vec![
                (Duration::from_secs(3), Duration::from_millis(3500)),
                (Duration::from_secs(6), Duration::from_secs(8)),
            ]
        );
    }
}
