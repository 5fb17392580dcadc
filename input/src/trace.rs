//! Pointer traces: the plain-text recording format both clients write, and the stops found in it.
//!
//! A trace is what a client saw of the pointer (or of an analog stick, scaled to pixels): one
//! sample per input event, with the client's timestamp. The predictor is measured on traces
//! ([`crate::predict::evaluate`]); the synthetic ones come from [`crate::corpus`], recorded
//! ones from a client.
//!
//! # Format (version 1)
//!
//! UTF-8 text, one record per line, fields separated by spaces or tabs; `\n` or `\r\n` line
//! ends.
//!
//! ```text
//! # stratus-trace v1 rate_hz=1000 source=browser pointermove, 2560x1440
//! # Anything after a `#` at the start of a line is a comment.
//! 0 640 360 0
//! 1012 641 360 0
//! 1998 643.5 359 1
//! stop 250000 900 400 0.8 -0.6
//! ```
//!
//! - **Header**, the first line: `# stratus-trace v1`, then `key=value` items. `rate_hz=<n>` is
//!   the nominal sample rate (0 or absent: unknown). `source=<text>` says where the trace comes
//!   from; it must be the last item and its value runs to the end of the line. Unknown keys are
//!   ignored, so later writers can add items.
//! - **Sample**: `t_us x y buttons`. `t_us` is an integer timestamp in microseconds, never
//!   smaller than the previous sample's (equal timestamps are allowed: browsers coalesce);
//!   `x` and `y` are the position in pixels (decimals allowed, finite, magnitude at most
//!   [`MAX_COORDINATE`]); `buttons` is the pressed-button bit mask (bit 0 primary, as in the DOM's
//!   `MouseEvent.buttons`).
//! - **Stop** (optional, written by the synthesiser): `stop t_us x y dir_x dir_y`, a move that
//!   ended at `t_us` at `(x, y)` travelling along the unit vector `(dir_x, dir_y)`. Recorded
//!   traces have none; [`Trace::stops_or_detected`] then finds stops from the speed.
//! - Blank lines and lines starting with `#` are ignored.
//!
//! Files conventionally end in `.trace` (`stratus-bench predict --traces DIR` reads those).
//!
//! Parsing never panics and is bounded: at most [`MAX_SAMPLES`] samples; every error names its
//! 1-based line ([`TraceError::line`]).
//!
//! ```
//! use input::trace::Trace;
//!
//! let text = "# stratus-trace v1 rate_hz=125 source=doc\n0 10 20 0\n8000 12 21 0\n";
//! let trace = Trace::parse(text)?;
//! assert_eq!(trace.meta.rate_hz, 125);
//! assert_eq!(trace.samples[1].x, 12.0);
//! assert_eq!(Trace::parse(&trace.to_string())?, trace);
//! assert_eq!(Trace::parse("# stratus-trace v1\n0 1 2\n").unwrap_err().line(), Some(2));
//! # Ok::<(), input::trace::TraceError>(())
//! ```

use std::fmt;

/// The format version this module reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The header's first word.
pub const MAGIC: &str = "stratus-trace";
/// The most samples one trace may hold (over an hour at 1000 Hz).
pub const MAX_SAMPLES: usize = 4_000_000;
/// The largest coordinate magnitude accepted, in pixels.
pub const MAX_COORDINATE: f64 = 1.0e7;
/// Offending text quoted in an error is cut to this many characters.
const MAX_QUOTED_CHARS: usize = 40;

/// Speed above which [`detect_stops`] considers the pointer moving, px/s.
pub const MOVE_SPEED_PX_S: f64 = 150.0;
/// Speed below which a moving pointer has stopped, px/s.
pub const STOP_SPEED_PX_S: f64 = 40.0;
/// Window over which [`detect_stops`] measures speed.
pub const SPEED_WINDOW_US: u64 = 16_000;
/// A move shorter than this is not a move (tremor, a nudge), px.
pub const MIN_MOVE_PX: f64 = 10.0;

/// One pointer sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Client timestamp, microseconds.
    pub t_us: u64,
    /// Horizontal position, pixels.
    pub x: f64,
    /// Vertical position, pixels.
    pub y: f64,
    /// Pressed buttons, bit 0 primary (the DOM's `MouseEvent.buttons`).
    pub buttons: u32,
}

/// The end of a move: where and when the pointer stopped, and the direction it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stop {
    /// When the move ended, microseconds.
    pub t_us: u64,
    /// Where it ended, pixels.
    pub x: f64,
    /// Where it ended, pixels.
    pub y: f64,
    /// Unit vector of the move's direction, x component.
    pub dir_x: f64,
    /// Unit vector of the move's direction, y component.
    pub dir_y: f64,
}

/// The header's items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceMeta {
    /// Nominal sample rate in Hz; 0 when unknown.
    pub rate_hz: u32,
    /// Where the trace comes from (free text, one line).
    pub source: String,
}

/// A pointer trace. See the module docs for its text form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// The header's items.
    pub meta: TraceMeta,
    /// Samples in time order.
    pub samples: Vec<Sample>,
    /// Known ends of moves (synthetic traces); empty for recorded ones.
    pub stops: Vec<Stop>,
}

/// Why a trace did not parse. Every variant but [`TraceError::Empty`] names its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The input has no header line.
    #[error("empty trace: expected a `# {MAGIC} v{FORMAT_VERSION}` header")]
    Empty,
    /// The first line is not a trace header.
    #[error("line {line}: not a trace header (expected `# {MAGIC} v{FORMAT_VERSION} ...`)")]
    NotAHeader {
        /// Line number.
        line: usize,
    },
    /// The header names a version this code does not read.
    #[error("line {line}: unsupported trace version `{version}` (this reads v{FORMAT_VERSION})")]
    UnsupportedVersion {
        /// Line number.
        line: usize,
        /// The version as written.
        version: String,
    },
    /// A header item is malformed.
    #[error("line {line}: bad header item `{item}`: {reason}")]
    BadHeaderItem {
        /// Line number.
        line: usize,
        /// The item as written (shortened).
        item: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A record has the wrong number of fields.
    #[error("line {line}: expected {expected}, found {found} fields")]
    FieldCount {
        /// Line number.
        line: usize,
        /// The record's shape.
        expected: &'static str,
        /// How many fields there were.
        found: usize,
    },
    /// A field does not parse or is out of range.
    #[error("line {line}: bad {field} `{value}`: expected {expected}")]
    BadField {
        /// Line number.
        line: usize,
        /// Which field.
        field: &'static str,
        /// The value as written (shortened).
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A sample's timestamp is before the previous one's.
    #[error("line {line}: time goes backwards ({t_us} µs after {previous} µs)")]
    TimeBackwards {
        /// Line number.
        line: usize,
        /// This sample's time.
        t_us: u64,
        /// The previous sample's time.
        previous: u64,
    },
    /// The trace holds more than [`MAX_SAMPLES`] samples.
    #[error("line {line}: too many samples (at most {MAX_SAMPLES})")]
    TooManySamples {
        /// Line number.
        line: usize,
    },
}

impl TraceError {
    /// The 1-based line the error is on, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            TraceError::Empty => None,
            TraceError::NotAHeader { line }
            | TraceError::UnsupportedVersion { line, .. }
            | TraceError::BadHeaderItem { line, .. }
            | TraceError::FieldCount { line, .. }
            | TraceError::BadField { line, .. }
            | TraceError::TimeBackwards { line, .. }
            | TraceError::TooManySamples { line } => Some(*line),
        }
    }
}

fn quote(s: &str) -> String {
    s.chars().take(MAX_QUOTED_CHARS).collect()
}

fn parse_u64(line: usize, field: &'static str, s: &str) -> Result<u64, TraceError> {
    s.parse().map_err(|_| TraceError::BadField {
        line,
        field,
        value: quote(s),
        expected: "an unsigned integer",
    })
}

fn parse_coord(line: usize, field: &'static str, s: &str) -> Result<f64, TraceError> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= MAX_COORDINATE => Ok(v),
        _ => Err(TraceError::BadField {
            line,
            field,
            value: quote(s),
            expected: "a finite number of pixels of magnitude at most 1e7",
        }),
    }
}

fn parse_header(line: usize, text: &str) -> Result<TraceMeta, TraceError> {
    let rest = text
        .strip_prefix('#')
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix(MAGIC))
        .filter(|r| r.is_empty() || r.starts_with(char::is_whitespace))
        .ok_or(TraceError::NotAHeader { line })?
        .trim_start();
    let (version, mut rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if version != format!("v{FORMAT_VERSION}") {
        return Err(TraceError::UnsupportedVersion {
            line,
            version: quote(version),
        });
    }
    let mut meta = TraceMeta::default();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        if let Some(source) = rest.strip_prefix("source=") {
            meta.source = source.trim_end().to_string();
            break;
        }
        let (item, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        rest = tail;
        let Some((key, value)) = item.split_once('=') else {
            return Err(TraceError::BadHeaderItem {
                line,
                item: quote(item),
                reason: "expected key=value",
            });
        };
        if key == "rate_hz" {
            meta.rate_hz = value.parse().map_err(|_| TraceError::BadHeaderItem {
                line,
                item: quote(item),
                reason: "rate_hz must be an unsigned integer",
            })?;
        }
    }
    Ok(meta)
}

impl Trace {
    /// Parses the text form (see the module docs). Never panics; errors name their line.
    pub fn parse(text: &str) -> Result<Trace, TraceError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let (first, header) = lines.next().ok_or(TraceError::Empty)?;
        let meta = parse_header(first, header.trim())?;
        let mut trace = Trace {
            meta,
            ..Trace::default()
        };
        let mut fields: Vec<&str> = Vec::with_capacity(6);
        for (line, text) in lines {
            let text = text.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            fields.clear();
            // At most 7 fields are looked at, so a line of a million tokens costs no memory.
            fields.extend(text.split_ascii_whitespace().take(7));
            if fields[0] == "stop" {
                if fields.len() != 6 {
                    return Err(TraceError::FieldCount {
                        line,
                        expected: "6 fields `stop t_us x y dir_x dir_y`",
                        found: text.split_ascii_whitespace().count(),
                    });
                }
                trace.stops.push(Stop {
                    t_us: parse_u64(line, "t_us", fields[1])?,
                    x: parse_coord(line, "x", fields[2])?,
                    y: parse_coord(line, "y", fields[3])?,
                    dir_x: parse_coord(line, "dir_x", fields[4])?,
                    dir_y: parse_coord(line, "dir_y", fields[5])?,
                });
                continue;
            }
            if fields.len() != 4 {
                return Err(TraceError::FieldCount {
                    line,
                    expected: "4 fields `t_us x y buttons`",
                    found: text.split_ascii_whitespace().count(),
                });
            }
            let sample = Sample {
                t_us: parse_u64(line, "t_us", fields[0])?,
                x: parse_coord(line, "x", fields[1])?,
                y: parse_coord(line, "y", fields[2])?,
                buttons: fields[3].parse().map_err(|_| TraceError::BadField {
                    line,
                    field: "buttons",
                    value: quote(fields[3]),
                    expected: "an unsigned 32-bit bit mask",
                })?,
            };
            if let Some(prev) = trace.samples.last()
                && sample.t_us < prev.t_us
            {
                return Err(TraceError::TimeBackwards {
                    line,
                    t_us: sample.t_us,
                    previous: prev.t_us,
                });
            }
            if trace.samples.len() >= MAX_SAMPLES {
                return Err(TraceError::TooManySamples { line });
            }
            trace.samples.push(sample);
        }
        Ok(trace)
    }

    /// Writes the text form. Floats are written in their shortest exact form, so
    /// [`Trace::parse`] reads back an equal trace (line breaks in `source` become spaces).
    pub fn write(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(
            out,
            "# {MAGIC} v{FORMAT_VERSION} rate_hz={}",
            self.meta.rate_hz
        )?;
        let source = self.meta.source.replace(['\n', '\r'], " ");
        let source = source.trim();
        if !source.is_empty() {
            write!(out, " source={source}")?;
        }
        writeln!(out)?;
        for s in &self.samples {
            writeln!(out, "{} {} {} {}", s.t_us, s.x, s.y, s.buttons)?;
        }
        for s in &self.stops {
            writeln!(
                out,
                "stop {} {} {} {} {}",
                s.t_us, s.x, s.y, s.dir_x, s.dir_y
            )?;
        }
        Ok(())
    }

    /// Duration from the first to the last sample, microseconds.
    pub fn duration_us(&self) -> u64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => b.t_us - a.t_us,
            _ => 0,
        }
    }

    /// The position at `t_us`, linearly interpolated between the samples around it; `None`
    /// outside the trace.
    pub fn position_at(&self, t_us: u64) -> Option<(f64, f64)> {
        let i = self.samples.partition_point(|s| s.t_us < t_us);
        let b = self.samples.get(i)?;
        if b.t_us == t_us || i == 0 {
            return (b.t_us == t_us).then_some((b.x, b.y));
        }
        let a = &self.samples[i - 1];
        let f = (t_us - a.t_us) as f64 / (b.t_us - a.t_us) as f64;
        Some((a.x + (b.x - a.x) * f, a.y + (b.y - a.y) * f))
    }

    /// The trace's known stops, or if it has none (a recording), those [`detect_stops`] finds.
    pub fn stops_or_detected(&self) -> Vec<Stop> {
        if self.stops.is_empty() {
            detect_stops(&self.samples)
        } else {
            self.stops.clone()
        }
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

/// Finds the ends of moves in recorded samples: the speed over the last [`SPEED_WINDOW_US`]
/// rises above [`MOVE_SPEED_PX_S`], then falls below [`STOP_SPEED_PX_S`]; a move that covered
/// at least [`MIN_MOVE_PX`] ends there, at that sample's time and position. (A min-jerk move
/// crawls for its last few tens of milliseconds, so this lands within about 30 ms of the true
/// end; very short, slow moves go unseen.)
pub fn detect_stops(samples: &[Sample]) -> Vec<Stop> {
    let mut stops = Vec::new();
    let mut start: Option<(f64, f64)> = None;
    let mut j = 0;
    for (i, s) in samples.iter().enumerate() {
        while j < i && samples[j + 1].t_us + SPEED_WINDOW_US <= s.t_us {
            j += 1;
        }
        let a = &samples[j];
        if s.t_us < a.t_us + SPEED_WINDOW_US / 2 {
            continue;
        }
        let dt = (s.t_us - a.t_us) as f64 * 1e-6;
        let speed = (s.x - a.x).hypot(s.y - a.y) / dt;
        match start {
            None if speed > MOVE_SPEED_PX_S => start = Some((a.x, a.y)),
            Some((x0, y0)) if speed < STOP_SPEED_PX_S => {
                start = None;
                let (dx, dy) = (s.x - x0, s.y - y0);
                let len = dx.hypot(dy);
                if len >= MIN_MOVE_PX {
                    stops.push(Stop {
                        t_us: s.t_us,
                        x: s.x,
                        y: s.y,
                        dir_x: dx / len,
                        dir_y: dy / len,
                    });
                }
            }
            _ => {}
        }
    }
    stops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_items_and_comments() {
        let t = Trace::parse(
            "#  stratus-trace v1 future=1 rate_hz=500 source=a b  c \r\n\n# note\n 5\t1.5 -2 3 \r\n",
        )
        .expect("parses");
        assert_eq!(t.meta.rate_hz, 500);
        assert_eq!(t.meta.source, "a b  c");
        assert_eq!(
            t.samples,
            vec![Sample {
                t_us: 5,
                x: 1.5,
                y: -2.0,
                buttons: 3
            }]
        );
    }

    #[test]
    fn errors_name_their_line() {
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("", None, "empty trace"),
            ("0 1 2 0\n", Some(1), "not a trace header"),
            (
                "# stratus-trace v2\n",
                Some(1),
                "unsupported trace version `v2`",
            ),
            ("# stratus-trace v1 rate_hz=x\n", Some(1), "rate_hz"),
            ("# stratus-trace v1 junk\n", Some(1), "key=value"),
            (
                "# stratus-trace v1\n\n0 1 2\n",
                Some(3),
                "expected 4 fields",
            ),
            ("# stratus-trace v1\n-1 1 2 0\n", Some(2), "bad t_us `-1`"),
            ("# stratus-trace v1\n0 NaN 2 0\n", Some(2), "bad x `NaN`"),
            ("# stratus-trace v1\n0 1 1e9 0\n", Some(2), "bad y `1e9`"),
            ("# stratus-trace v1\n0 1 2 -1\n", Some(2), "bad buttons"),
            (
                "# stratus-trace v1\n9 1 2 0\n8 1 2 0\n",
                Some(3),
                "backwards",
            ),
            ("# stratus-trace v1\nstop 1 2 3\n", Some(2), "stop t_us"),
        ];
        for (text, line, needle) in cases {
            let err = Trace::parse(text).expect_err(text);
            assert_eq!(err.line(), *line, "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn interpolates_positions() {
        let t = Trace::parse("# stratus-trace v1\n0 0 0 0\n1000 10 -10 0\n1000 11 -11 0\n")
            .expect("parses");
        assert_eq!(t.position_at(500), Some((5.0, -5.0)));
        assert_eq!(t.position_at(0), Some((0.0, 0.0)));
        assert_eq!(t.position_at(1001), None);
        assert_eq!(t.duration_us(), 1000);
    }

    #[test]
    fn detects_a_stop() {
        // 200 ms still, 200 ms at 1000 px/s to the right, then still: one stop near 400 ms.
        let samples: Vec<Sample> = (0..800u64)
            .map(|ms| {
                let x = (ms.clamp(200, 400) - 200) as f64 * 1.0;
                Sample {
                    t_us: ms * 1000,
                    x,
                    y: 0.0,
                    buttons: 0,
                }
            })
            .collect();
        let stops = detect_stops(&samples);
        assert_eq!(stops.len(), 1, "{stops:?}");
        assert!((400_000..=416_000).contains(&stops[0].t_us), "{stops:?}");
        assert_eq!(
            (stops[0].x, stops[0].dir_x, stops[0].dir_y),
            (200.0, 1.0, 0.0)
        );
    }
}
