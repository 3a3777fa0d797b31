//! Voice notes: whatever audio an API user uploads becomes what WhatsApp plays as a
//! push-to-talk note — mono Ogg/Opus (`audio/ogg; codecs=opus`) with its duration and a
//! 64-bar waveform, computed here because the protocol crate leaves all three to callers.
//!
//! Everything is pure Rust (symphonia decodes WAV/MP3/FLAC/AAC/Vorbis, opus-rs encodes,
//! the `ogg` crate muxes), so no system codec or ffmpeg is needed. CPU-heavy: callers run
//! it on a blocking thread. Its own crate because two engines need it: whatsapp-web sends
//! the note itself, the Cloud API uploads it to Meta (which also wants Ogg/Opus).

use ogg::writing::PacketWriteEndInfo;
use opus_rs::{Application, OpusDecoder, OpusEncoder};
use std::io::Cursor;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// How many bars WhatsApp's voice-note waveform has.
pub const WAVEFORM_SAMPLES: usize = 64;

/// The MIME type WhatsApp requires for voice notes.
pub const VOICE_MIME: &str = "audio/ogg; codecs=opus";

/// Opus always counts granule positions at 48 kHz, whatever rate it encoded.
const OPUS_GRANULE_RATE: u64 = 48_000;
/// The rate we encode speech at: Opus wideband, what WhatsApp's own voice notes carry.
const ENCODE_RATE: u32 = 16_000;
/// 20 ms frames.
const FRAME: usize = (ENCODE_RATE as usize) / 50;
/// libopus' encoder delay at 48 kHz (what opusenc writes as pre-skip).
const PRE_SKIP: u16 = 312;
/// Longest voice note accepted (WhatsApp's own limit is far lower in practice).
const MAX_SECONDS: u64 = 30 * 60;

/// A voice note ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceNote {
    /// Mono Ogg/Opus.
    pub data: Vec<u8>,
    pub mime_type: &'static str,
    /// Whole seconds, at least 1.
    pub seconds: u32,
    /// [`WAVEFORM_SAMPLES`] loudness values, 0–100.
    pub waveform: Vec<u8>,
}

/// Why audio could not become a voice note.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("unsupported or unreadable audio ({0})")]
    Unsupported(String),
    #[error("the audio contains no samples")]
    Empty,
    #[error("the audio is longer than {MAX_SECONDS} seconds")]
    TooLong,
    #[error("could not encode the voice note: {0}")]
    Encode(String),
}

/// Decoded audio: mono samples in [-1, 1] at `rate`.
struct Pcm {
    samples: Vec<f32>,
    rate: u32,
}

/// Turns uploaded audio (any format symphonia reads, or Ogg/Opus) into a voice note.
/// Mono Ogg/Opus is kept as is; everything else is decoded and encoded to Opus.
pub fn prepare_voice_note(data: &[u8], mime_type: &str) -> Result<VoiceNote, AudioError> {
    if is_ogg_opus(data) {
        let (pcm, channels) = decode_ogg_opus(data)?;
        check_length(&pcm)?;
        if channels == 1 {
            return Ok(VoiceNote {
                data: data.to_vec(),
                mime_type: VOICE_MIME,
                seconds: seconds(&pcm),
                waveform: waveform(&pcm.samples),
            });
        }
        return encode_voice(&pcm);
    }
    let pcm = decode_any(data, mime_type)?;
    check_length(&pcm)?;
    encode_voice(&pcm)
}

fn check_length(pcm: &Pcm) -> Result<(), AudioError> {
    if pcm.samples.is_empty() || pcm.rate == 0 {
        return Err(AudioError::Empty);
    }
    if pcm.samples.len() as u64 / u64::from(pcm.rate) > MAX_SECONDS {
        return Err(AudioError::TooLong);
    }
    Ok(())
}

fn seconds(pcm: &Pcm) -> u32 {
    let s = (pcm.samples.len() as u64).div_ceil(u64::from(pcm.rate.max(1)));
    u32::try_from(s.max(1)).unwrap_or(u32::MAX)
}

fn encode_voice(pcm: &Pcm) -> Result<VoiceNote, AudioError> {
    let speech = resample(&pcm.samples, pcm.rate, ENCODE_RATE);
    let data = encode_ogg_opus(&speech, pcm.rate)?;
    Ok(VoiceNote {
        data,
        mime_type: VOICE_MIME,
        seconds: seconds(pcm),
        waveform: waveform(&pcm.samples),
    })
}

/// WhatsApp's waveform: the loudness of 64 equal slices, scaled so the loudest is 100.
pub fn waveform(samples: &[f32]) -> Vec<u8> {
    let mut bars = vec![0f32; WAVEFORM_SAMPLES];
    if samples.is_empty() {
        return vec![0; WAVEFORM_SAMPLES];
    }
    for (i, bar) in bars.iter_mut().enumerate() {
        let start = i * samples.len() / WAVEFORM_SAMPLES;
        let end = ((i + 1) * samples.len() / WAVEFORM_SAMPLES).max(start + 1);
        let slice = &samples[start.min(samples.len() - 1)..end.min(samples.len())];
        *bar = slice.iter().map(|s| s.abs()).sum::<f32>() / slice.len() as f32;
    }
    let max = bars.iter().copied().fold(0f32, f32::max);
    bars.iter()
        .map(|b| {
            if max > 0.0 {
                // In 0..=100 by construction, so the cast cannot truncate.
                (b / max * 100.0).round().clamp(0.0, 100.0) as u8
            } else {
                0
            }
        })
        .collect()
}

/// Sample-rate conversion good enough for speech: a box filter when shrinking (a cheap
/// low-pass, so high frequencies do not fold back as noise), linear interpolation when
/// growing.
fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = f64::from(from) / f64::from(to);
    let out_len = ((input.len() as f64) / ratio).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for i in 0..out_len {
        let pos = i as f64 * ratio;
        if ratio > 1.0 {
            let start = pos.floor() as usize;
            let end = ((pos + ratio).floor() as usize).clamp(start + 1, input.len());
            let slice = &input[start.min(input.len() - 1)..end];
            out.push(slice.iter().sum::<f32>() / slice.len() as f32);
        } else {
            let idx = pos.floor() as usize;
            let frac = (pos - idx as f64) as f32;
            let a = input[idx.min(input.len() - 1)];
            let b = input[(idx + 1).min(input.len() - 1)];
            out.push(a + (b - a) * frac);
        }
    }
    out
}

fn is_ogg_opus(data: &[u8]) -> bool {
    // The first Ogg page of an Opus stream carries exactly the OpusHead packet, whose
    // magic starts right after the 27-byte page header and its segment table.
    if data.len() < 36 || &data[..4] != b"OggS" {
        return false;
    }
    let segments = usize::from(data[26]);
    let start = 27 + segments;
    data.get(start..start + 8) == Some(b"OpusHead")
}

fn decode_ogg_opus(data: &[u8]) -> Result<(Pcm, u8), AudioError> {
    let bad = |e: String| AudioError::Unsupported(format!("ogg/opus: {e}"));
    let mut reader = ogg::PacketReader::new(Cursor::new(data));
    let head = reader
        .read_packet()
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no OpusHead".into()))?;
    if head.data.len() < 19 || &head.data[..8] != b"OpusHead" {
        return Err(bad("no OpusHead".into()));
    }
    let channels = head.data[9];
    let pre_skip = usize::from(u16::from_le_bytes([head.data[10], head.data[11]]));
    let mut decoder =
        OpusDecoder::new(OPUS_GRANULE_RATE as i32, 1).map_err(|e| bad(e.to_string()))?;
    let mut samples = Vec::new();
    let mut frame = vec![0f32; 5760];
    let mut last_granule = 0u64;
    let mut index = 0usize;
    while let Some(packet) = reader.read_packet().map_err(|e| bad(e.to_string()))? {
        index += 1;
        if index == 1 {
            // OpusTags: metadata only.
            continue;
        }
        last_granule = packet.absgp_page();
        let n = decoder
            .decode(&packet.data, frame.len(), &mut frame)
            .map_err(|e| bad(e.to_string()))?;
        samples.extend_from_slice(&frame[..n.min(frame.len())]);
    }
    // The last granule position says where the audio really ends (the final frame is
    // padded); the pre-skip says how much decoder warm-up to drop at the start.
    let end = usize::try_from(last_granule).unwrap_or(usize::MAX);
    samples.truncate(end.min(samples.len()));
    let samples = samples.split_off(pre_skip.min(samples.len()));
    Ok((
        Pcm {
            samples,
            rate: OPUS_GRANULE_RATE as u32,
        },
        channels,
    ))
}

/// The duration of an audio file from its container header, without decoding it (`None`
/// when the header does not say, as in MP3s without a Xing/Info frame).
pub fn duration_seconds(data: &[u8], mime_type: &str) -> Option<u32> {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(data.to_vec())), Default::default());
    let mut hint = Hint::new();
    if let Some(essence) = mime_type.split(';').next() {
        hint.mime_type(essence.trim());
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .ok()?;
    let track = probed
        .format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)?;
    let frames = track.codec_params.n_frames?;
    let rate = u64::from(track.codec_params.sample_rate?.max(1));
    u32::try_from(frames.div_ceil(rate).max(1)).ok()
}

fn decode_any(data: &[u8], mime_type: &str) -> Result<Pcm, AudioError> {
    let unsupported = |e: SymphoniaError| AudioError::Unsupported(e.to_string());
    let mss = MediaSourceStream::new(Box::new(Cursor::new(data.to_vec())), Default::default());
    let mut hint = Hint::new();
    if let Some(essence) = mime_type.split(';').next() {
        hint.mime_type(essence.trim());
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(unsupported)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(unsupported)?;
    let mut samples = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(unsupported(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt packet is skipped, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(unsupported(e)),
        };
        let spec = *decoded.spec();
        rate = spec.rate;
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks(channels) {
            samples.push(frame.iter().sum::<f32>() / channels as f32);
        }
        if samples.len() as u64 > MAX_SECONDS * u64::from(rate.max(1)) {
            return Err(AudioError::TooLong);
        }
    }
    Ok(Pcm { samples, rate })
}

fn encode_ogg_opus(speech: &[f32], input_rate: u32) -> Result<Vec<u8>, AudioError> {
    let enc = |e: &str| AudioError::Encode(e.to_owned());
    let mut encoder = OpusEncoder::new(ENCODE_RATE as i32, 1, Application::Voip).map_err(enc)?;
    encoder.bitrate_bps = 24_000;

    let serial: u32 = rand::random();
    let mut writer = ogg::PacketWriter::new(Vec::new());
    let io = |e: std::io::Error| AudioError::Encode(e.to_string());

    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(1); // channels
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family: mono/stereo
    writer
        .write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)
        .map_err(io)?;

    let vendor = b"wagate";
    let mut tags = Vec::new();
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());
    writer
        .write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)
        .map_err(io)?;

    // One extra frame of silence flushes the encoder's look-ahead; the final granule
    // position then trims playback to the real length.
    let real_48k = speech.len() as u64 * OPUS_GRANULE_RATE / u64::from(ENCODE_RATE);
    let mut padded = speech.to_vec();
    let frames = speech.len().div_ceil(FRAME) + 1;
    padded.resize(frames * FRAME, 0.0);
    let per_frame_48k = FRAME as u64 * OPUS_GRANULE_RATE / u64::from(ENCODE_RATE);
    let mut packet = vec![0u8; 1500];
    for (i, chunk) in padded.chunks(FRAME).enumerate() {
        let n = encoder.encode(chunk, FRAME, &mut packet).map_err(enc)?;
        let last = i + 1 == frames;
        let granule = if last {
            u64::from(PRE_SKIP) + real_48k
        } else {
            u64::from(PRE_SKIP) + (i as u64 + 1) * per_frame_48k
        };
        let info = if last {
            PacketWriteEndInfo::EndStream
        } else if (i + 1) % 50 == 0 {
            // About one page per second keeps pages small and seeking cheap.
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        writer
            .write_packet(packet[..n].to_vec(), serial, info, granule)
            .map_err(io)?;
    }
    Ok(writer.into_inner())
}

/// Test audio for the engines' own tests.
#[doc(hidden)]
pub mod testing {
    /// A WAV file (16-bit PCM) of a tone whose loudness ramps up then down.
    pub fn wav(rate: u32, channels: u16, seconds: f32) -> Vec<u8> {
        let frames = (rate as f32 * seconds) as usize;
        let mut pcm = Vec::with_capacity(frames * channels as usize * 2);
        for i in 0..frames {
            let t = i as f32 / rate as f32;
            let envelope = 1.0 - (2.0 * i as f32 / frames as f32 - 1.0).abs();
            let s = (t * 440.0 * std::f32::consts::TAU).sin() * envelope * 0.8;
            let v = (s * i16::MAX as f32) as i16;
            for _ in 0..channels {
                pcm.extend_from_slice(&v.to_le_bytes());
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + pcm.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
        out.extend_from_slice(&(channels * 2).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(pcm.len() as u32).to_le_bytes());
        out.extend_from_slice(&pcm);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::wav;
    use super::*;

    #[test]
    fn wav_becomes_a_mono_ogg_opus_voice_note() {
        let note = prepare_voice_note(&wav(44_100, 2, 2.5), "audio/wav").unwrap();
        assert_eq!(note.mime_type, "audio/ogg; codecs=opus");
        assert_eq!(note.seconds, 3);
        assert_eq!(note.waveform.len(), WAVEFORM_SAMPLES);
        assert!(is_ogg_opus(&note.data));

        // The first page is OpusHead: version 1, mono, pre-skip 312, input rate 44.1 kHz.
        let mut r = ogg::PacketReader::new(Cursor::new(note.data.clone()));
        let head = r.read_packet().unwrap().unwrap();
        assert_eq!(&head.data[..8], b"OpusHead");
        assert_eq!(head.data[9], 1);
        assert_eq!(u16::from_le_bytes([head.data[10], head.data[11]]), 312);
        assert_eq!(
            u32::from_le_bytes(head.data[12..16].try_into().unwrap()),
            44_100
        );

        // Decoding it back gives 2.5 s of audio.
        let (pcm, channels) = decode_ogg_opus(&note.data).unwrap();
        assert_eq!(channels, 1);
        let secs = pcm.samples.len() as f32 / pcm.rate as f32;
        assert!((secs - 2.5).abs() < 0.03, "{secs}");

        // The envelope rises to the middle and falls again.
        let w = &note.waveform;
        assert!(w[32] > 80 && w[31] > 80, "{w:?}");
        assert!(w[1] < 20 && w[62] < 20, "{w:?}");
        // Nearly bitrate-sized: 24 kb/s for 2.5 s plus headers.
        assert!(note.data.len() < 20_000, "{}", note.data.len());
    }

    #[test]
    fn mono_ogg_opus_is_kept_as_is() {
        let first = prepare_voice_note(&wav(16_000, 1, 1.2), "audio/x-wav").unwrap();
        let again = prepare_voice_note(&first.data, "audio/ogg").unwrap();
        assert_eq!(again.data, first.data);
        assert_eq!(again.seconds, 2);
        assert_eq!(again.waveform.len(), WAVEFORM_SAMPLES);
    }

    #[test]
    fn garbage_and_silence_are_refused_clearly() {
        assert!(matches!(
            prepare_voice_note(b"definitely not audio", "audio/mpeg"),
            Err(AudioError::Unsupported(_))
        ));
        assert!(matches!(
            prepare_voice_note(&wav(8_000, 1, 0.0), "audio/wav"),
            Err(AudioError::Empty)
        ));
    }

    #[test]
    fn audio_file_duration_from_its_header() {
        assert_eq!(duration_seconds(&wav(8_000, 1, 2.2), "audio/wav"), Some(3));
        assert_eq!(duration_seconds(b"nope", "audio/mpeg"), None);
    }

    #[test]
    fn waveform_shape() {
        assert_eq!(waveform(&[]), vec![0; 64]);
        let ramp: Vec<f32> = (0..6400).map(|i| i as f32 / 6400.0).collect();
        let w = waveform(&ramp);
        assert_eq!(w.len(), 64);
        assert_eq!(w[63], 100);
        assert!(w.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn resampling_keeps_duration() {
        let one_sec = vec![0.5f32; 44_100];
        assert_eq!(resample(&one_sec, 44_100, 16_000).len(), 16_000);
        assert_eq!(resample(&vec![0.5f32; 8_000], 8_000, 16_000).len(), 16_000);
        assert!(
            resample(&one_sec, 44_100, 16_000)
                .iter()
                .all(|s| (s - 0.5).abs() < 1e-4)
        );
    }
}
