//! Every rule of the session core on virtual time.

use super::*;

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn drain(core: &mut SessionControl) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// A core that is streaming at 4000 kbit/s (300–12000), with the given ladder floor.
fn streaming(t0: Instant, ladder_floor: Option<u32>) -> SessionControl {
    let mut config = ControlConfig::new(4000, 300, 12000);
    config.ladder = ladder_floor.map(LadderConfig::new);
    let mut core = SessionControl::new(config, t0);
    core.handle_input(Input::Peer(PeerState::Connected), t0);
    assert_eq!(drain(&mut core), vec![Output::StartMedia]);
    core.handle_input(Input::MediaStarted, t0);
    core
}

/// Feeds `estimate` kbit/s and a tick at every 100 ms from `from` to `to` (inclusive);
/// returns the outputs with the time they came at.
fn run(
    core: &mut SessionControl,
    t0: Instant,
    from: u64,
    to: u64,
    estimate_kbps: f64,
) -> Vec<(u64, Output)> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        core.handle_input(
            Input::Estimate {
                bps: estimate_kbps * 1000.0,
            },
            ms(t0, t),
        );
        core.handle_input(Input::Tick, ms(t0, t));
        out.extend(drain(core).into_iter().map(|o| (t, o)));
        t += 100;
    }
    out
}

fn bitrates(out: &[(u64, Output)]) -> Vec<u32> {
    out.iter()
        .filter_map(|(_, o)| match o {
            Output::SetBitrate { kbps } => Some(*kbps),
            _ => None,
        })
        .collect()
}

#[test]
fn the_player_connecting_starts_the_media_once() {
    let t0 = Instant::now();
    let mut core = SessionControl::new(ControlConfig::new(4000, 300, 12000), t0);
    assert_eq!(core.poll_output(), None);
    core.handle_input(Input::Peer(PeerState::Connected), ms(t0, 10));
    core.handle_input(Input::Peer(PeerState::Disconnected), ms(t0, 20));
    core.handle_input(Input::Peer(PeerState::Connected), ms(t0, 30));
    assert_eq!(drain(&mut core), vec![Output::StartMedia]);
}

#[test]
fn bitrate_follows_a_drop_at_once_and_a_rise_by_a_third_per_tick() {
    let t0 = Instant::now();
    let mut core = streaming(t0, None);
    // Down at once.
    let out = run(&mut core, t0, 100, 100, 1000.0);
    assert_eq!(bitrates(&out), vec![1000]);
    // Up by a third of the gap per tick: 1000 → 2000 → 2667 → 3112 → …
    let out = run(&mut core, t0, 200, 400, 4000.0);
    assert_eq!(bitrates(&out), vec![2000, 2667, 3112]);
    assert_eq!(core.bitrate_kbps(), 3112);
    // Changes of 5 % or less are left alone.
    let out = run(&mut core, t0, 500, 2000, 4000.0);
    let last = *bitrates(&out).last().expect("it climbed");
    assert!(last > 3800 && last <= 4000, "{last}");
    let out = run(&mut core, t0, 2100, 2500, f64::from(last) * 1.04);
    assert!(bitrates(&out).is_empty(), "{out:?}");
}

#[test]
fn bitrate_stays_within_its_bounds_and_ignores_nonsense() {
    let t0 = Instant::now();
    let mut core = streaming(t0, None);
    let out = run(&mut core, t0, 100, 100, 50.0);
    assert_eq!(bitrates(&out), vec![300], "never under the minimum");
    let out = run(&mut core, t0, 200, 3000, 1e9);
    let top = *bitrates(&out).last().expect("climbs");
    assert!(
        (11_400..=12_000).contains(&top),
        "within 5 % under the maximum: {top}"
    );
    // Nonsense estimates are ignored: the last good one still holds.
    core.handle_input(Input::Estimate { bps: f64::NAN }, ms(t0, 3100));
    core.handle_input(Input::Estimate { bps: -5.0 }, ms(t0, 3100));
    core.handle_input(Input::Tick, ms(t0, 3100));
    assert_eq!(drain(&mut core), vec![]);
}

#[test]
fn no_bitrate_changes_before_the_media_runs() {
    let t0 = Instant::now();
    let mut core = SessionControl::new(ControlConfig::new(4000, 300, 12000), t0);
    let out = run(&mut core, t0, 100, 1000, 500.0);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn keyframe_requests_closer_than_the_gap_are_merged() {
    let t0 = Instant::now();
    let mut core = SessionControl::new(ControlConfig::new(4000, 300, 12000), t0);
    // Before the media runs there is no encoder to ask.
    core.handle_input(Input::KeyframeRequest, t0);
    core.handle_input(Input::Peer(PeerState::Connected), t0);
    core.handle_input(Input::MediaStarted, t0);
    assert_eq!(drain(&mut core), vec![Output::StartMedia]);
    let mut forced = Vec::new();
    for t in [0, 50, 100, 299, 300, 310, 650, 900, 951] {
        core.handle_input(Input::KeyframeRequest, ms(t0, t));
        if drain(&mut core).contains(&Output::ForceKeyframe) {
            forced.push(t);
        }
    }
    assert_eq!(forced, vec![0, 300, 650, 951]);
}

#[test]
fn the_ladder_steps_down_after_a_sustained_low_estimate_and_up_with_hysteresis() {
    let t0 = Instant::now();
    let mut core = streaming(t0, Some(1500));
    // 1 s under the floor changes nothing.
    let out = run(&mut core, t0, 100, 1000, 1000.0);
    assert!(
        out.iter()
            .all(|(_, o)| !matches!(o, Output::SetRung { .. })),
        "{out:?}"
    );
    // Back above it resets the clock.
    run(&mut core, t0, 1100, 1100, 3000.0);
    let out = run(&mut core, t0, 1200, 5000, 1000.0);
    let steps: Vec<(u64, usize)> = out
        .iter()
        .filter_map(|(t, o)| match o {
            Output::SetRung { index, rung } => {
                assert_eq!(*rung, RUNGS[*index]);
                Some((*t, *index))
            }
            _ => None,
        })
        .collect();
    // Under the floor from 1200 ms: down after 2 s; rung 1's floor is 750, so it stays there.
    assert_eq!(steps, vec![(3200, 1)]);
    assert_eq!(core.rung(), 1);
    // Between the floor and 1.5 × the floor it stays; above for 5 s it climbs back.
    let out = run(&mut core, t0, 5100, 12000, 2000.0);
    assert!(
        out.iter()
            .all(|(_, o)| !matches!(o, Output::SetRung { .. }))
    );
    let out = run(&mut core, t0, 12100, 18000, 2300.0);
    let up: Vec<u64> = out
        .iter()
        .filter_map(|(t, o)| matches!(o, Output::SetRung { index: 0, .. }).then_some(*t))
        .collect();
    assert_eq!(up, vec![17100]);
}

#[test]
fn a_disconnected_player_has_a_grace_period() {
    let t0 = Instant::now();
    let mut core = streaming(t0, None);
    core.handle_input(Input::Peer(PeerState::Disconnected), ms(t0, 1000));
    // Back within the grace: the session goes on.
    run(&mut core, t0, 1100, 5000, 4000.0);
    core.handle_input(Input::Peer(PeerState::Connected), ms(t0, 5050));
    let out = run(&mut core, t0, 5100, 7000, 4000.0);
    assert!(
        !out.iter().any(|(_, o)| matches!(o, Output::End(_))),
        "{out:?}"
    );
    // Gone for longer than the grace: it ends, once.
    core.handle_input(Input::Peer(PeerState::Disconnected), ms(t0, 8000));
    let out = run(&mut core, t0, 8100, 14000, 4000.0);
    let ends: Vec<&(u64, Output)> = out
        .iter()
        .filter(|(_, o)| matches!(o, Output::End(_)))
        .collect();
    assert_eq!(
        ends,
        vec![&(
            13100,
            Output::End(SessionEnd::transient("the player disconnected"))
        )]
    );
    assert!(core.ended());
    core.handle_input(Input::KeyframeRequest, ms(t0, 15000));
    assert_eq!(core.poll_output(), None, "nothing after the end");
}

#[test]
fn a_failed_or_closed_connection_ends_at_once() {
    let t0 = Instant::now();
    for (state, reason) in [
        (PeerState::Failed, "the connection to the player failed"),
        (PeerState::Closed, "the player closed the connection"),
    ] {
        let mut core = streaming(t0, None);
        core.handle_input(Input::Peer(state), ms(t0, 10));
        assert_eq!(
            drain(&mut core),
            vec![Output::End(SessionEnd::transient(reason))]
        );
    }
}

#[test]
fn a_player_that_never_connects_is_given_up_on() {
    let t0 = Instant::now();
    let mut core = SessionControl::new(ControlConfig::new(4000, 300, 12000), t0);
    let out = run(&mut core, t0, 100, 29_900, 4000.0);
    assert!(out.is_empty(), "{out:?}");
    let out = run(&mut core, t0, 30_000, 30_000, 4000.0);
    assert!(
        matches!(&out[..], [(30_000, Output::End(end))] if end.reason.contains("did not connect") && !end.permanent),
        "{out:?}"
    );
}

#[test]
fn the_time_limit_ends_the_session() {
    let t0 = Instant::now();
    let mut config = ControlConfig::new(4000, 300, 12000);
    config.max_duration = Some(Duration::from_secs(60));
    let mut core = SessionControl::new(config, t0);
    core.handle_input(Input::Peer(PeerState::Connected), t0);
    core.handle_input(Input::MediaStarted, t0);
    drain(&mut core);
    let out = run(&mut core, t0, 100, 59_900, 4000.0);
    assert!(!out.iter().any(|(_, o)| matches!(o, Output::End(_))));
    let out = run(&mut core, t0, 60_000, 60_000, 4000.0);
    assert!(
        out.iter().any(|(_, o)| *o
            == Output::End(SessionEnd::permanent(
                "the session reached its time limit (60 s)"
            ))),
        "{out:?}"
    );
}

#[test]
fn a_stop_ends_the_session_with_its_reason() {
    let t0 = Instant::now();
    let mut core = streaming(t0, None);
    let exited = SessionEnd::permanent("the title exited (exit status: 3)");
    core.handle_input(Input::Stop(exited.clone()), ms(t0, 5));
    core.handle_input(Input::Stop(SessionEnd::transient("later")), ms(t0, 6));
    assert_eq!(drain(&mut core), vec![Output::End(exited)]);
}

#[test]
fn figures_are_published_once_a_second() {
    let t0 = Instant::now();
    let mut core = streaming(t0, None);
    let mut samples = Vec::new();
    for i in 1..=60u64 {
        let t = ms(t0, i * 33);
        core.handle_input(
            Input::FrameSent {
                encode_ns: 4_000_000,
            },
            t,
        );
        core.handle_input(Input::Tick, t);
        samples.extend(drain(&mut core).into_iter().filter_map(|o| match o {
            Output::Metrics(m) => Some(m),
            _ => None,
        }));
    }
    assert_eq!(samples.len(), 1, "{samples:?}");
    let s = samples[0];
    assert!((s.fps - 30.0).abs() < 2.0, "{s:?}");
    assert_eq!(s.encode_us, Some(4000));
    assert_eq!(s.bitrate_kbps, 4000);
}

#[test]
fn ticks_before_their_time_do_nothing() {
    let t0 = Instant::now();
    let mut core = streaming(t0, None);
    core.handle_input(Input::Estimate { bps: 1e6 }, t0);
    core.handle_input(Input::Tick, ms(t0, 50));
    assert_eq!(core.poll_output(), None);
    assert_eq!(core.poll_timeout(), ms(t0, 100));
    core.handle_input(Input::Tick, ms(t0, 100));
    assert_eq!(core.poll_output(), Some(Output::SetBitrate { kbps: 1000 }));
    assert_eq!(core.poll_timeout(), ms(t0, 200));
}
