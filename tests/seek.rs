//! A rank decodes only its own range: it seeks to a keyframe and keeps exactly the frames of its
//! range. Checked against a decode from frame 0 on the GOP structures and containers that make
//! seeking hard (open GOPs with B-frames, edit lists, non-zero start times, MPEG-TS, VP8), for
//! every start frame, with the frames decoded bounded by the range plus one GOP. Probing counts
//! frames by demuxing alone.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use stylemill::frame::FrameSize;
use stylemill::media::decode::Decoder;
use stylemill::media::probe::{probe, VideoInfo};

const SIZE: FrameSize = FrameSize {
    width: 160,
    height: 120,
};
/// Keyframe interval of the made clips.
const GOP: usize = 12;

/// Clips whose keyframes are every `GOP` frames, in the layouts that make seeking hard.
fn clips(dir: &Path) -> Vec<PathBuf> {
    let source = "testsrc2=size=160x120:rate=25";
    let gop = GOP.to_string();
    let open = dir.join("open-gop.mp4");
    let x264 = |output: &Path, params: &str| {
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            source,
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-g",
            &gop,
            "-bf",
            "3",
            "-x264-params",
            params,
            "-pix_fmt",
            "yuv420p",
            output.to_str().unwrap(),
        ])
    };
    x264(&open, "open-gop=1");
    let closed = dir.join("closed-gop-pyramid.mp4");
    x264(&closed, "b-pyramid=normal");
    let remux = |name: &str, input_options: &[&str], output_options: &[&str]| {
        let output = dir.join(name);
        let mut args = input_options.to_vec();
        args.extend(["-i", open.to_str().unwrap(), "-c", "copy"]);
        args.extend(output_options);
        args.push(output.to_str().unwrap());
        ffmpeg(&args);
        output
    };
    // Cut between keyframes by stream copy: MP4 keeps the GOP's head as discarded frames
    // before an edit list's start.
    let edit_list = remux("edit-list.mp4", &["-ss", "0.52"], &[]);
    let offset = remux("start-3.3s.mkv", &[], &["-output_ts_offset", "3.3"]);
    let transport = remux("broadcast.ts", &[], &[]);
    let vp8 = dir.join("alt-ref.webm");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        source,
        "-t",
        "4",
        "-c:v",
        "libvpx",
        "-g",
        &gop,
        "-auto-alt-ref",
        "1",
        "-lag-in-frames",
        "16",
        "-b:v",
        "300k",
        vp8.to_str().unwrap(),
    ]);
    vec![open, closed, edit_list, offset, transport, vp8]
}

fn decode_range(info: &VideoInfo, range: std::ops::Range<usize>) -> (Vec<Vec<u8>>, usize) {
    let mut decoder = Decoder::open(info, &info.path, range.clone(), SIZE).unwrap();
    let frames = range
        .map(|_| decoder.next_frame().unwrap().expect("a frame").data)
        .collect();
    assert_eq!(decoder.next_frame().unwrap(), None, "the range ends");
    (frames, decoder.frames_decoded())
}

#[test]
fn every_range_decodes_exactly_the_frames_of_a_decode_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for clip in clips(dir.path()) {
        let name = clip.file_name().unwrap().to_string_lossy().into_owned();
        let reference: Vec<Vec<u8>> = decode(&clip, SIZE, false)
            .into_iter()
            .map(|f| f.data)
            .collect();
        let info = probe(&clip, &name).unwrap();
        assert_eq!(
            info.frames,
            reference.len(),
            "{name}: frames counted by demuxing"
        );
        assert!(info.timeline.is_some(), "{name} has timestamps to seek by");
        for start in 0..info.frames {
            let end = (start + 5).min(info.frames);
            let (frames, decoded) = decode_range(&info, start..end);
            assert!(
                frames == reference[start..end],
                "{name}: frames {start}..{end} differ from a decode from frame 0"
            );
            // A container without an index (MPEG-TS) is entered one keyframe earlier. At the
            // end of an open-GOP stream ffmpeg withholds the frames after a seek into the last
            // GOP, and the decoder starts again one keyframe earlier.
            let gops = if name.ends_with(".ts") { 2 } else { 1 };
            let allowed = if end == info.frames {
                2 * (end - start) + (2 * gops + 1) * GOP
            } else {
                end - start + gops * GOP
            };
            assert!(
                decoded <= allowed,
                "{name}: {decoded} frames decoded for frames {start}..{end}, more than {allowed}"
            );
        }
    }
}

#[test]
fn a_decoder_goes_on_into_the_next_range_without_seeking() {
    let dir = tempfile::tempdir().unwrap();
    let clip = &clips(dir.path())[0];
    let info = probe(clip, "open-gop.mp4").unwrap();
    let reference = decode(clip, SIZE, false);
    let mut decoder = Decoder::open(&info, &info.path, 30..40, SIZE).unwrap();
    for expected in &reference[30..40] {
        assert_eq!(&decoder.next_frame().unwrap().unwrap(), expected);
    }
    assert_eq!(decoder.next_frame().unwrap(), None);
    decoder.extend_to(50);
    for expected in &reference[40..50] {
        assert_eq!(&decoder.next_frame().unwrap().unwrap(), expected);
    }
    assert!(decoder.frames_decoded() <= 20 + GOP);
}

#[test]
fn probing_counts_frames_without_decoding_them() {
    // Packets intact, a keyframe's picture data garbage: a decode fails, a demux does not
    // notice.
    let dir = tempfile::tempdir().unwrap();
    let clip = &clips(dir.path())[1];
    let damaged = dir.path().join("damaged.mp4");
    damage_keyframe(clip, 4, &damaged);
    let info = probe(&damaged, "damaged.mp4").unwrap();
    assert_eq!(info.frames, 100);
    let mut decoder = Decoder::open(&info, &info.path, 0..info.frames, SIZE).unwrap();
    let failure = (0..info.frames)
        .map(|_| decoder.next_frame())
        .find_map(Result::err)
        .expect("decoding the damaged frames fails");
    let message = failure.to_string();
    assert!(
        message.contains("damaged.mp4 is truncated or corrupt: decoding failed near frame "),
        "{message}"
    );
}

/// The error a decode of `range` fails with, read slowly (as a rank that stylizes between
/// frames), or `None` if every frame of the range decodes.
fn failure(info: &VideoInfo, path: &Path, range: std::ops::Range<usize>) -> Option<String> {
    let mut decoder = Decoder::open(info, path, range.clone(), info.size).unwrap();
    for _ in range {
        std::thread::sleep(std::time::Duration::from_millis(20));
        match decoder.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the decoder ended early"),
            Err(error) => return Some(error.to_string()),
        }
    }
    None
}

#[test]
fn a_corrupt_keyframe_is_named_near_itself_even_by_a_slow_reader_of_the_range_before() {
    // ffmpeg decodes ahead of the frames read, so its errors about the damaged keyframe at
    // frame 24 arrive while a slow reader still takes frames 0..24. A decode that fails names
    // a frame near the damage, whichever range it was reading.
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.mp4");
    damage_keyframe(&small_gop_clip(dir.path(), 48), 2, &damaged);
    let info = probe(&damaged, "damaged.mp4").unwrap();
    if let Some(error) = failure(&info, &damaged, 0..24) {
        assert!(blames_near(&error, 24), "the range before: {error}");
    }
    let error = failure(&info, &damaged, 24..48).expect("the damaged range fails");
    assert!(blames_near(&error, 24), "the damaged range: {error}");
}
