//! The session's sound: Opus packets decoded with libopus (48 kHz stereo), measured, and
//! played through GStreamer (`appsrc ! audioconvert ! audioresample ! <sink>`).
//!
//! The sink is `autoaudiosink` unless one is named; if no sink starts (no sound server, no
//! device) the sound is still decoded and measured, the reason is kept for the player, and the
//! session goes on without it.

use std::sync::Mutex;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
/// The longest Opus packet: 120 ms.
const MAX_FRAME: usize = RATE as usize * 120 / 1000;

/// What the decoded sound looked like so far.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct AudioLevel {
    /// Packets decoded.
    pub packets: u64,
    /// Packets libopus refused.
    pub bad_packets: u64,
    /// Samples decoded, per channel.
    pub samples: u64,
    /// Largest absolute sample seen, full scale = 1.0.
    pub peak: f32,
    /// RMS of the latest packet, full scale = 1.0.
    pub rms: f32,
}

struct State {
    decoder: opus::Decoder,
    pcm: Vec<i16>,
    level: AudioLevel,
}

/// Decodes and plays one Opus stream.
pub struct AudioOut {
    state: Mutex<State>,
    playback: Option<(gst::Pipeline, gst_app::AppSrc)>,
    /// Why there is no playback, if there is none.
    silent_because: Option<String>,
}

impl std::fmt::Debug for AudioOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioOut")
            .field("playing", &self.playback.is_some())
            .field("silent_because", &self.silent_because)
            .finish_non_exhaustive()
    }
}

impl AudioOut {
    /// A decoder and, if one starts, a playback pipeline into `sink` (`autoaudiosink` when
    /// `None`; `none` for no playback).
    pub fn new(sink: Option<&str>) -> Result<AudioOut, String> {
        let decoder = opus::Decoder::new(RATE, opus::Channels::Stereo)
            .map_err(|e| format!("libopus: {e}"))?;
        let (playback, silent_because) = match sink {
            Some("none") => (
                None,
                Some("sound output is off (--audio-sink none)".to_owned()),
            ),
            _ => match start_playback(sink.unwrap_or("autoaudiosink")) {
                Ok(p) => (Some(p), None),
                Err(why) => {
                    tracing::warn!("no sound output: {why}; the sound is decoded but not played");
                    (None, Some(why))
                }
            },
        };
        Ok(AudioOut {
            state: Mutex::new(State {
                decoder,
                pcm: vec![0; MAX_FRAME * CHANNELS],
                level: AudioLevel::default(),
            }),
            playback,
            silent_because,
        })
    }

    /// Decodes one packet, measures it and plays it.
    pub fn packet(&self, payload: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let State {
            decoder,
            pcm,
            level,
        } = &mut *state;
        let frames = match decoder.decode(payload, pcm, false) {
            Ok(n) => n,
            Err(e) => {
                level.bad_packets += 1;
                tracing::debug!("an Opus packet did not decode: {e}");
                return;
            }
        };
        let samples = &pcm[..frames * CHANNELS];
        level.packets += 1;
        level.samples += frames as u64;
        let mut sum = 0.0f64;
        for &s in samples {
            let v = f32::from(s) / 32768.0;
            level.peak = level.peak.max(v.abs());
            sum += f64::from(v * v);
        }
        level.rms = if samples.is_empty() {
            0.0
        } else {
            (sum / samples.len() as f64).sqrt() as f32
        };
        if let Some((_, src)) = &self.playback {
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            let _ = src.push_buffer(gst::Buffer::from_slice(bytes));
        }
    }

    /// The level so far.
    pub fn level(&self) -> AudioLevel {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).level
    }

    /// Why the sound is not played, if it is not.
    pub fn silent_because(&self) -> Option<&str> {
        self.silent_because.as_deref()
    }
}

impl Drop for AudioOut {
    fn drop(&mut self) {
        if let Some((pipeline, _)) = &self.playback {
            let _ = pipeline.set_state(gst::State::Null);
        }
    }
}

fn start_playback(sink: &str) -> Result<(gst::Pipeline, gst_app::AppSrc), String> {
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("rate", RATE as i32)
                .field("channels", CHANNELS as i32)
                .field("layout", "interleaved")
                .build(),
        )
        .is_live(true)
        .do_timestamp(true)
        .format(gst::Format::Time)
        // At most 100 ms waits for the device, the oldest going first: a device that plays a
        // little slower than the node's clock must not let the sound fall further and further
        // behind the picture.
        .max_bytes(RATE as u64 * CHANNELS as u64 * 2 / 10)
        .leaky_type(gst_app::AppLeakyType::Downstream)
        .build();
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|_| format!("the GStreamer element {name} is not installed"))
    };
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let out = make(sink)?;
    if out.has_property("sync") {
        // Play as it arrives: the stream is live and paced by the node.
        out.set_property("sync", false);
    }
    pipeline
        .add_many([src.upcast_ref(), &convert, &resample, &out])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([src.upcast_ref(), &convert, &resample, &out])
        .map_err(|e| e.to_string())?;
    if pipeline.set_state(gst::State::Playing).is_err() {
        let _ = pipeline.set_state(gst::State::Null);
        return Err(format!(
            "the sound output {sink} did not start (no sound server or device?)"
        ));
    }
    Ok((pipeline, src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_decodes_to_a_measured_level_and_garbage_is_counted() {
        let mut encoder =
            opus::Encoder::new(RATE, opus::Channels::Stereo, opus::Application::Audio)
                .expect("encoder");
        let out = AudioOut::new(Some("none")).expect("decoder");
        assert!(out.silent_because().is_some());
        let mut packet = vec![0u8; 4000];
        for i in 0..25 {
            let pcm: Vec<i16> = (0..960)
                .flat_map(|n| {
                    let t = (i * 960 + n) as f32 / RATE as f32;
                    let s = ((t * 660.0 * std::f32::consts::TAU).sin() * 8000.0) as i16;
                    [s, s]
                })
                .collect();
            let len = encoder.encode(&pcm, &mut packet).expect("encode");
            out.packet(&packet[..len]);
        }
        out.packet(&[0xff; 3]);
        let level = out.level();
        assert_eq!(level.packets, 25);
        assert_eq!(level.samples, 25 * 960);
        assert!(level.peak > 0.15 && level.peak < 0.4, "{level:?}");
        assert!(level.rms > 0.1, "{level:?}");
        assert!(level.bad_packets >= 1, "{level:?}");
    }
}
