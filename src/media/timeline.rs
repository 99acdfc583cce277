//! The frames of a video stream as its packets describe them, without decoding: each frame's
//! presentation timestamp in display order, and the keyframes a decoder may start at so that a
//! given frame and every later one come out exactly as from a decode of the whole stream.
//!
//! A rank seeks to such a keyframe and identifies every frame its decoder produces by timestamp,
//! dropping those before its range. Starting at "the keyframe before the frame" by time alone
//! is not enough: with open GOPs the frames displayed just before a keyframe are decoded after
//! it and need the previous GOP, and MP4's index seeks by decode time. So a keyframe serves a
//! frame only if it comes before, in decode order, every frame displayed from that one on.

use super::Rational;
use serde::{Deserialize, Serialize};

/// One packet of the video stream, in decode order, as ffprobe lists it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Packet {
    pub pts: Option<i64>,
    pub keyframe: bool,
    /// Decoded only as a reference, never shown (before an edit list's start).
    pub discard: bool,
}

impl Packet {
    /// Parses ffprobe's `pts,dts,flags` CSV line (`0,-1024,K_`, `N/A,N/A,__`).
    pub fn parse_csv(line: &str) -> Option<Packet> {
        let mut fields = line.trim().split(',');
        let pts = fields.next()?.parse().ok();
        let flags = fields.nth(1)?;
        Some(Packet {
            pts,
            keyframe: flags.contains('K'),
            discard: flags.contains('D'),
        })
    }
}

/// Where a decoder may start: at the keyframe with timestamp `pts`, every frame from display
/// index `from_frame` on comes out exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekPoint {
    pub from_frame: usize,
    pub pts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub time_base: Rational,
    /// Presentation timestamp of every shown frame, in display order (strictly increasing).
    pub pts: Vec<i64>,
    /// Ascending in `from_frame`.
    pub seek_points: Vec<SeekPoint>,
    /// Whether the container's index lands seeks exactly on keyframes (MP4, Matroska).
    pub indexed: bool,
    /// Whether some keyframe is followed in decode order by frames shown before it: an encoder
    /// making open GOPs, whose keyframes are not clean starts (H.264 frames after them may
    /// refer to pictures before them), so a decode starting at one reports errors until it
    /// has recovered.
    pub open_gops: bool,
}

impl Timeline {
    /// The timeline of `packets` (decode order), or why there is none.
    pub fn new(
        packets: &[Packet],
        time_base: Rational,
        indexed: bool,
    ) -> Result<Timeline, &'static str> {
        let mut shown: Vec<(i64, usize)> = Vec::with_capacity(packets.len());
        for (position, packet) in packets.iter().enumerate() {
            if !packet.discard {
                let pts = packet
                    .pts
                    .ok_or("its video packets do not all carry timestamps")?;
                shown.push((pts, position));
            }
        }
        shown.sort_unstable();
        if shown.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err("two of its frames share a timestamp");
        }
        let pts: Vec<i64> = shown.iter().map(|&(pts, _)| pts).collect();
        // earliest_decoded[d]: the first decode position among the frames shown from d on.
        let mut earliest_decoded = vec![usize::MAX; shown.len() + 1];
        for d in (0..shown.len()).rev() {
            earliest_decoded[d] = earliest_decoded[d + 1].min(shown[d].1);
        }
        let mut seek_points: Vec<SeekPoint> = packets
            .iter()
            .enumerate()
            .filter(|(_, p)| p.keyframe)
            .filter_map(|(position, packet)| {
                let key_pts = packet.pts?;
                let shown_after = pts.partition_point(|&p| p < key_pts);
                let decoded_after = earliest_decoded.partition_point(|&e| e < position);
                let from_frame = shown_after.max(decoded_after);
                (from_frame < pts.len()).then_some(SeekPoint {
                    from_frame,
                    pts: key_pts,
                })
            })
            .collect();
        seek_points.sort_by_key(|p| (p.from_frame, p.pts));
        let open_gops = packets.iter().enumerate().any(|(position, key)| {
            key.keyframe
                && packets[position + 1..]
                    .iter()
                    .take_while(|p| !p.keyframe)
                    .any(|p| !p.discard && p.pts.zip(key.pts).is_some_and(|(p, k)| p < k))
        });
        Ok(Timeline {
            time_base,
            pts,
            seek_points,
            indexed,
            open_gops,
        })
    }

    /// Whether every frame falls on the grid of `rate` from the first frame, within half a
    /// tick of the time base: a constant rate whose timestamps were only rounded to the
    /// container's ticks (Matroska's milliseconds hold 15 or 30000/1001 frames/s inexactly).
    pub fn follows_rate(&self, rate: Rational) -> bool {
        let (tb_num, tb_den) = (
            i128::from(self.time_base.num),
            i128::from(self.time_base.den),
        );
        let (rate_num, rate_den) = (i128::from(rate.num), i128::from(rate.den));
        self.pts.iter().enumerate().all(|(i, &pts)| {
            let ticks = i128::from(pts - self.pts[0]);
            // |ticks * tb - i / rate| <= tb / 2, times 2 * tb_den * rate_num.
            let error = 2 * ticks * tb_num * rate_num - 2 * i as i128 * rate_den * tb_den;
            error.abs() <= tb_num * rate_num
        })
    }

    /// The seek point (an index into `seek_points`) for a decode that must produce frame
    /// `first` exactly; `None` to decode from the start. In a container without an index the
    /// search for a keyframe's time may land just after it, so there the decode starts one
    /// keyframe earlier.
    pub fn seek_point_for(&self, first: usize) -> Option<usize> {
        let serving = self
            .seek_points
            .partition_point(|p| p.from_frame <= first)
            .checked_sub(1)?;
        if self.indexed {
            Some(serving)
        } else {
            serving.checked_sub(1)
        }
    }

    /// The `-ss` argument (seconds, with `-seek_timestamp 1`) that makes ffmpeg start at seek
    /// point `point`; `None` when its time is negative (decode from the start instead).
    ///
    /// ffmpeg's command line moves the target 3/23 s earlier for inputs with B-frames in
    /// formats that do not seek by presentation time (Matroska, WebM, MPEG-TS). In an indexed
    /// container that lands one keyframe early, so there the target is the keyframe's time plus
    /// that, kept below the next keyframe's time (so that MP4, which seeks by presentation time,
    /// still lands on this keyframe). A container without an index is searched by timestamp
    /// and lands near the target: there the target is the keyframe's time itself.
    pub fn seek_argument(&self, point: usize) -> Option<String> {
        let key_pts = self.seek_points[point].pts;
        let start = self.micros(key_pts, true);
        let next = self
            .seek_points
            .iter()
            .map(|p| p.pts)
            .filter(|&pts| pts > key_pts)
            .min()
            .map(|pts| self.micros(pts, false) - 1);
        let backoff = if self.indexed {
            CLI_SEEK_BACKOFF_MICROS
        } else {
            0
        };
        let target = (start + backoff).min(next.unwrap_or(i128::MAX)).max(start);
        (start >= 0).then(|| format!("{}.{:06}", target / 1_000_000, target % 1_000_000))
    }

    /// `pts` in microseconds, rounded up or down.
    fn micros(&self, pts: i64, up: bool) -> i128 {
        let Rational { num, den } = self.time_base;
        let scaled = pts as i128 * num as i128 * 1_000_000;
        let floor = scaled.div_euclid(den as i128);
        floor + i128::from(up && scaled.rem_euclid(den as i128) != 0)
    }
}

/// What ffmpeg's command line subtracts from a seek target in formats that do not seek by
/// presentation time when a stream has B-frames (`3 * AV_TIME_BASE / 23`), plus one.
const CLI_SEEK_BACKOFF_MICROS: i128 = 3 * 1_000_000 / 23 + 1;

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(list: &[(i64, &str)]) -> Vec<Packet> {
        list.iter()
            .map(|&(pts, flags)| Packet {
                pts: Some(pts),
                keyframe: flags.contains('K'),
                discard: flags.contains('D'),
            })
            .collect()
    }

    /// The keyframe timestamp a decode that must produce frame `first` starts at.
    fn seek_for(timeline: &Timeline, first: usize) -> Option<i64> {
        timeline
            .seek_point_for(first)
            .map(|i| timeline.seek_points[i].pts)
    }

    const TB: Rational = Rational { num: 1, den: 25 };

    #[test]
    fn csv_lines_parse_with_and_without_timestamps() {
        assert_eq!(
            Packet::parse_csv("0,-1024,K_"),
            Some(Packet {
                pts: Some(0),
                keyframe: true,
                discard: false
            })
        );
        assert_eq!(
            Packet::parse_csv("N/A,N/A,_D"),
            Some(Packet {
                pts: None,
                keyframe: false,
                discard: true
            })
        );
        assert_eq!(Packet::parse_csv(""), None);
    }

    #[test]
    fn a_closed_gop_keyframe_serves_the_frames_from_itself() {
        // I0 P3 B1 B2 | I4 P7 B5 B6 (decode order; numbers are display times).
        let list = packets(&[
            (0, "K"),
            (3, ""),
            (1, ""),
            (2, ""),
            (4, "K"),
            (7, ""),
            (5, ""),
            (6, ""),
        ]);
        let timeline = Timeline::new(&list, TB, true).unwrap();
        assert_eq!(timeline.pts, (0..8).collect::<Vec<_>>());
        assert!(!timeline.open_gops);
        assert_eq!(seek_for(&timeline, 3), Some(0));
        assert_eq!(seek_for(&timeline, 4), Some(4));
        assert_eq!(seek_for(&timeline, 7), Some(4));
        let unindexed = Timeline::new(&list, TB, false).unwrap();
        assert_eq!(seek_for(&unindexed, 7), Some(0), "one keyframe earlier");
        assert_eq!(seek_for(&unindexed, 3), None);
    }

    #[test]
    fn an_open_gop_keyframe_does_not_serve_its_leading_frames() {
        // I2 B0 B1 P5 B3 B4 | I8 B6 B7 P11 B9 B10: B6 and B7 are decoded after I8.
        let list = packets(&[
            (2, "K"),
            (0, ""),
            (1, ""),
            (5, ""),
            (3, ""),
            (4, ""),
            (8, "K"),
            (6, ""),
            (7, ""),
            (11, ""),
            (9, ""),
            (10, ""),
        ]);
        let timeline = Timeline::new(&list, TB, true).unwrap();
        assert_eq!(
            seek_for(&timeline, 0),
            None,
            "before the first keyframe's frames"
        );
        assert_eq!(seek_for(&timeline, 2), Some(2));
        assert_eq!(seek_for(&timeline, 6), Some(2), "a leading frame of I8");
        assert_eq!(seek_for(&timeline, 7), Some(2));
        assert_eq!(seek_for(&timeline, 8), Some(8));
        assert!(timeline.open_gops);
    }

    #[test]
    fn discarded_packets_are_not_frames() {
        let list = packets(&[(-2, "KD"), (-1, "D"), (0, ""), (1, ""), (2, "K")]);
        let timeline = Timeline::new(&list, TB, true).unwrap();
        assert_eq!(timeline.pts, vec![0, 1, 2]);
        assert_eq!(
            seek_for(&timeline, 0),
            Some(-2),
            "the discarded keyframe serves frame 0"
        );
        assert_eq!(seek_for(&timeline, 2), Some(2));
    }

    #[test]
    fn missing_or_repeated_timestamps_give_no_timeline() {
        let mut list = packets(&[(0, "K"), (1, "")]);
        list[1].pts = None;
        assert!(Timeline::new(&list, TB, true).is_err());
        assert!(Timeline::new(&packets(&[(0, "K"), (0, "")]), TB, true).is_err());
    }

    #[test]
    fn seek_targets_allow_for_the_command_lines_backoff_but_stay_before_the_next_keyframe() {
        let rate = Rational {
            num: 1001,
            den: 30000,
        };
        let list = packets(&[(-3, "K"), (1, "K"), (30, "K"), (33, "K")]);
        let timeline = Timeline::new(&list, rate, true).unwrap();
        assert_eq!(timeline.seek_argument(0), None, "a negative time");
        // Frame 1 at 0.033366.. s (rounded up), plus 0.130435 s.
        assert_eq!(timeline.seek_argument(1).as_deref(), Some("0.163802"));
        // Frame 30 at 1.001 s; the next keyframe (1.1011 s) comes sooner than the backoff.
        assert_eq!(timeline.seek_argument(2).as_deref(), Some("1.101099"));
        assert_eq!(timeline.seek_argument(3).as_deref(), Some("1.231535"));
        let unindexed = Timeline::new(&list, rate, false).unwrap();
        assert_eq!(unindexed.seek_argument(3).as_deref(), Some("1.101100"));
    }
}
