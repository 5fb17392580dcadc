//! H.264 RTP depacketisation (RFC 6184, packetization-mode 1): single NAL units, STAP-A and
//! FU-A in, Annex B access units out, one per RTP timestamp.
//!
//! Sans-IO: [`Depacketizer::push`] takes one packet's sequence number, timestamp, marker bit
//! and payload and returns the access units it completed (none, one, or two when a unit
//! without a marker bit is ended by the next unit's only packet). A gap in the sequence numbers
//! breaks the unit it falls in; a broken unit is never handed to the decoder (it would smear
//! the picture until the next keyframe), and from then on units are dropped until a keyframe
//! arrives. [`Pushed::request_keyframe`] says when the caller should ask the sender for one
//! (RTCP PLI); rate-limiting those requests is the caller's business.

/// Annex B start code put in front of every NAL unit.
const START_CODE: [u8; 4] = [0, 0, 0, 1];

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// One complete access unit in Annex B byte-stream form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    /// NAL units, each behind a 4-byte start code.
    pub data: Vec<u8>,
    /// The RTP timestamp (90 kHz) all its packets carried.
    pub rtp_timestamp: u32,
    /// True if it carries an IDR slice or a sequence parameter set.
    pub keyframe: bool,
}

/// What one [`Depacketizer::push`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The units this packet completed, oldest first: the previous one when the timestamp
    /// moved on without a marker bit, and this packet's own on its marker bit.
    pub units: Vec<AccessUnit>,
    /// The stream is broken until the next keyframe: ask the sender for one.
    pub request_keyframe: bool,
}

/// Counters for the stats overlay and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Access units handed out.
    pub units: u64,
    /// Packets missing from the sequence.
    pub lost_packets: u64,
    /// Packets that arrived after a later one (dropped: reordering is not repaired).
    pub late_packets: u64,
    /// Units dropped because they were broken or waited for a keyframe.
    pub dropped_units: u64,
    /// Payloads that were not valid RFC 6184.
    pub malformed: u64,
}

/// Reassembles H.264 access units from RTP payloads.
#[derive(Debug)]
pub struct Depacketizer {
    unit: Vec<u8>,
    unit_ts: Option<u32>,
    unit_key: bool,
    unit_broken: bool,
    /// An FU-A fragment sequence is open (its start was seen and its end not yet).
    fu_open: bool,
    next_seq: Option<u16>,
    /// Units are dropped until one carrying a keyframe arrives.
    waiting_keyframe: bool,
    stats: DepacketizerStats,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Depacketizer {
    /// A depacketizer that waits for the stream's first keyframe.
    pub fn new() -> Self {
        Self {
            unit: Vec::with_capacity(64 * 1024),
            unit_ts: None,
            unit_key: false,
            unit_broken: false,
            fu_open: false,
            next_seq: None,
            waiting_keyframe: true,
            stats: DepacketizerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// Takes one RTP packet of the stream.
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Pushed {
        let mut out = Pushed::default();
        if let Some(expected) = self.next_seq {
            let ahead = seq.wrapping_sub(expected) as i16;
            if ahead < 0 {
                self.stats.late_packets += 1;
                return out;
            }
            if ahead > 0 {
                self.stats.lost_packets += ahead as u64;
                if self.unit_ts.is_some_and(|ts| ts != timestamp) {
                    // The unit in progress lost its tail.
                    self.unit_broken = true;
                    self.finish(&mut out);
                }
                // This packet's unit may have lost its head (or is the one that lost packets).
                self.unit_broken = true;
            }
        }
        self.next_seq = Some(seq.wrapping_add(1));
        if self.unit_ts.is_some_and(|ts| ts != timestamp) {
            self.finish(&mut out);
        }
        self.unit_ts = Some(timestamp);
        if !self.append(payload) {
            self.stats.malformed += 1;
            self.unit_broken = true;
        }
        if marker {
            self.finish(&mut out);
        }
        out
    }

    /// Appends a payload's NAL units to the unit in progress; false if it is malformed.
    fn append(&mut self, payload: &[u8]) -> bool {
        let Some(&header) = payload.first() else {
            return false;
        };
        if header & 0x80 != 0 {
            return false; // forbidden_zero_bit
        }
        match header & 0x1f {
            1..=23 => {
                self.fu_open = false;
                self.nal(payload);
                true
            }
            NAL_STAP_A => {
                self.fu_open = false;
                let mut rest = &payload[1..];
                while !rest.is_empty() {
                    if rest.len() < 2 {
                        return false;
                    }
                    let size = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    let Some(nal) = rest.get(2..2 + size).filter(|n| !n.is_empty()) else {
                        return false;
                    };
                    self.nal(nal);
                    rest = &rest[2 + size..];
                }
                true
            }
            NAL_FU_A => {
                let Some(&fu) = payload.get(1) else {
                    return false;
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                let data = &payload[2..];
                if start {
                    let nal_header = (header & 0xe0) | (fu & 0x1f);
                    self.nal_header(nal_header);
                    self.unit.push(nal_header);
                    self.fu_open = true;
                } else if !self.fu_open {
                    return false; // a continuation without its start
                }
                self.unit.extend_from_slice(data);
                if end {
                    self.fu_open = false;
                }
                true
            }
            _ => false,
        }
    }

    fn nal(&mut self, nal: &[u8]) {
        self.nal_header(nal[0]);
        self.unit.extend_from_slice(nal);
    }

    /// Starts a NAL unit in the output and notes what it is.
    fn nal_header(&mut self, header: u8) {
        if matches!(header & 0x1f, NAL_IDR | NAL_SPS) {
            self.unit_key = true;
        }
        self.unit.extend_from_slice(&START_CODE);
    }

    /// Ends the unit in progress: hands it out if whole and decodable, else drops it.
    fn finish(&mut self, out: &mut Pushed) {
        let ts = self.unit_ts.take();
        let keyframe = std::mem::take(&mut self.unit_key);
        let broken = std::mem::take(&mut self.unit_broken) || self.fu_open;
        self.fu_open = false;
        let data = std::mem::take(&mut self.unit);
        self.unit = Vec::with_capacity(data.capacity());
        let Some(rtp_timestamp) = ts else {
            return;
        };
        if broken {
            self.stats.dropped_units += 1;
            self.waiting_keyframe = true;
            out.request_keyframe = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        if self.waiting_keyframe && !keyframe {
            self.stats.dropped_units += 1;
            out.request_keyframe = true;
            return;
        }
        self.waiting_keyframe = false;
        self.stats.units += 1;
        out.units.push(AccessUnit {
            data,
            rtp_timestamp,
            keyframe,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xe0, 0x1f];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn stap(nals: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x78];
        for n in nals {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    fn fu(nal: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let header = nal[0];
        let body = &nal[1..];
        let chunks: Vec<&[u8]> = body.chunks(chunk).collect();
        chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut fu = header & 0x1f;
                if i == 0 {
                    fu |= 0x80;
                }
                if i == chunks.len() - 1 {
                    fu |= 0x40;
                }
                let mut p = vec![(header & 0xe0) | NAL_FU_A, fu];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| [&START_CODE[..], n].concat())
            .collect()
    }

    #[test]
    fn keyframe_from_stap_a_and_fu_a_then_a_single_nal_frame() {
        let idr: Vec<u8> = [0x65]
            .into_iter()
            .chain((0..200).map(|i| i as u8))
            .collect();
        let mut d = Depacketizer::new();
        assert_eq!(
            d.push(10, 1000, false, &stap(&[SPS, PPS])),
            Pushed::default()
        );
        let frags = fu(&idr, 64);
        assert_eq!(frags.len(), 4);
        let mut last = Pushed::default();
        for (i, f) in frags.iter().enumerate() {
            last = d.push(11 + i as u16, 1000, i == frags.len() - 1, f);
        }
        let unit = last.units.pop().expect("the keyframe");
        assert!(unit.keyframe && !last.request_keyframe);
        assert_eq!(unit.rtp_timestamp, 1000);
        assert_eq!(unit.data, annex_b(&[SPS, PPS, &idr]));

        let p = [0x41, 1, 2, 3];
        let next = d.push(15, 4000, true, &p).units.pop().expect("a P frame");
        assert_eq!((next.data, next.keyframe), (annex_b(&[&p]), false));
        assert_eq!(d.stats().units, 2);
    }

    #[test]
    fn a_timestamp_change_ends_a_unit_without_a_marker() {
        let mut d = Depacketizer::new();
        assert!(
            d.push(1, 1, false, &stap(&[SPS, PPS, &[0x65, 9]]))
                .units
                .is_empty()
        );
        let out = d.push(2, 2, false, &[0x41, 7]);
        let ts: Vec<u32> = out.units.iter().map(|u| u.rtp_timestamp).collect();
        assert_eq!(ts, [1]);
        // Unit 2 ends when unit 3's only packet arrives, and unit 3 ends on its marker: both
        // come out of the one push, oldest first.
        let out = d.push(3, 3, true, &[0x41, 8]);
        let ts: Vec<u32> = out.units.iter().map(|u| u.rtp_timestamp).collect();
        assert_eq!(ts, [2, 3]);
        assert_eq!(out.units[1].data, annex_b(&[&[0x41, 8]]));
        assert_eq!(d.stats().units, 3);
    }

    #[test]
    fn waits_for_a_keyframe_at_the_start() {
        let mut d = Depacketizer::new();
        let out = d.push(1, 1, true, &[0x41, 1]);
        assert!(out.units.is_empty() && out.request_keyframe);
        assert!(d.push(2, 2, true, &[0x65, 1]).units.len() == 1);
    }

    #[test]
    fn a_lost_packet_drops_units_until_the_next_keyframe() {
        let idr: Vec<u8> = [0x65].into_iter().chain(0..100).collect();
        let mut d = Depacketizer::new();
        assert!(d.push(1, 1, true, &[0x65, 0]).units.len() == 1);
        let frags = fu(&idr, 30);
        // Unit 2 loses its second fragment.
        assert!(d.push(2, 2, false, &frags[0]).units.is_empty());
        let out = d.push(4, 2, false, &frags[2]);
        assert!(out.units.is_empty());
        let out = d.push(5, 2, true, &frags[3]);
        assert!(out.units.is_empty() && out.request_keyframe, "{out:?}");
        // A P frame after the loss cannot be decoded: dropped, keyframe asked for again.
        let out = d.push(6, 3, true, &[0x41, 1]);
        assert!(out.units.is_empty() && out.request_keyframe);
        // The keyframe repairs the stream.
        let out = d.push(7, 4, true, &[0x65, 2]);
        assert!(out.units.first().is_some_and(|u| u.keyframe) && !out.request_keyframe);
        let s = d.stats();
        assert_eq!((s.lost_packets, s.dropped_units, s.units), (1, 2, 2));
    }

    #[test]
    fn losing_a_whole_unit_tail_breaks_it_and_the_next() {
        let mut d = Depacketizer::new();
        assert!(d.push(1, 1, true, &[0x65, 0]).units.len() == 1);
        assert!(d.push(2, 2, false, &[0x41, 1]).units.is_empty());
        // Packet 3 (unit 2's marker) and packet 4 (unit 3's head) are lost.
        let out = d.push(5, 3, true, &[0x41, 3]);
        assert!(out.units.is_empty() && out.request_keyframe);
        assert_eq!(d.stats().dropped_units, 2);
    }

    #[test]
    fn late_and_malformed_packets_never_panic_or_pass() {
        let mut d = Depacketizer::new();
        assert!(d.push(10, 1, true, &[0x65, 0]).units.len() == 1);
        assert!(d.push(9, 1, true, &[0x65, 0]).units.is_empty());
        assert_eq!(d.stats().late_packets, 1);
        for bad in [
            &[][..],
            &[0x80],
            &[0x78, 0, 9, 1],
            &[0x78, 0],
            &[0x7c],
            &[0x7c, 0x05],
            &[0x1e, 0],
        ] {
            d.push(11, 2, true, bad);
            d.push(12, 3, true, &[0x65, 1]);
            d.next_seq = Some(11);
        }
        // A continuation fragment without its start is malformed too.
        let out = d.push(11, 4, true, &[0x7c, 0x45, 1, 2]);
        assert!(out.units.is_empty() && out.request_keyframe);
        assert!(d.stats().malformed >= 6, "{:?}", d.stats());
        // Random bytes, any length: no panic.
        let mut x = 0x1234_5678_u32;
        for seq in 0..2000u16 {
            let len = (seq % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            d.push(seq, u32::from(seq / 3), seq % 3 == 2, &bytes);
        }
    }
}
