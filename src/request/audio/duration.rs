//! How long an audio file can play: the bound its transcription is reserved for.
//!
//! A PCM WAV file states its rate in its header, so its duration is exact: every byte after
//! the `data` chunk's header, at the rate its `fmt ` chunk gives (the bytes, not the chunk's
//! declared size, which a file can understate). Other containers (mp3, mp4/m4a, ogg, webm,
//! flac) would need a demuxer to be read, so their bound comes from their size at the lowest
//! bitrate any accepted codec encodes speech at: Opus's 6 kbit/s (RFC 6716, section 2.1.1).
//! A file encoded below it would play longer than its bound: the charge is then above the
//! reservation and logged as an `overrun`.

/// The lowest bitrate a non-WAV file is assumed to have, in bits per second.
pub const MIN_BITS_PER_SECOND: u64 = 6_000;

/// The most milliseconds `file` can play.
pub fn bound_millis(file: &[u8]) -> u64 {
    wav_millis(file).unwrap_or_else(|| millis_at(file.len() as u64, MIN_BITS_PER_SECOND / 8))
}

/// `bytes` at `bytes_per_second`, in milliseconds rounded up.
fn millis_at(bytes: u64, bytes_per_second: u64) -> u64 {
    bytes.saturating_mul(1000).div_ceil(bytes_per_second.max(1))
}

/// A PCM (or float) WAV file's duration, if its header is whole and consistent.
fn wav_millis(file: &[u8]) -> Option<u64> {
    if file.get(..4)? != b"RIFF" || file.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut bytes_per_second = None;
    while let Some(header) = file.get(at..at + 8) {
        let size = u64::from(u32::from_le_bytes([header[4], header[5], header[6], header[7]]));
        let body = at + 8;
        match &header[..4] {
            b"fmt " => bytes_per_second = Some(pcm_rate(file.get(body..body + 16)?)?),
            b"data" => return Some(millis_at((file.len() - body) as u64, bytes_per_second?)),
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.checked_add(usize::try_from(size + size % 2).ok()?)?;
    }
    None
}

/// Bytes per second of a `fmt ` chunk: integer PCM (1), float (3) or extensible (0xFFFE),
/// computed from the sample rate and frame size (the declared byte rate is not trusted).
fn pcm_rate(fmt: &[u8]) -> Option<u64> {
    let word = |at: usize| u16::from_le_bytes([fmt[at], fmt[at + 1]]);
    let format = word(0);
    let channels = u64::from(word(2));
    let sample_rate = u64::from(u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]));
    let bits = u64::from(word(14));
    let frame = channels * bits.div_ceil(8);
    (matches!(format, 1 | 3 | 0xFFFE) && frame > 0 && sample_rate > 0).then_some(sample_rate * frame)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A mono 16-bit PCM WAV file of `samples` samples at `rate` Hz.
    pub fn wav(rate: u32, samples: usize) -> Vec<u8> {
        let data = samples * 2;
        let mut file = Vec::new();
        file.extend_from_slice(b"RIFF");
        file.extend_from_slice(&(36 + data as u32).to_le_bytes());
        file.extend_from_slice(b"WAVEfmt ");
        file.extend_from_slice(&16u32.to_le_bytes());
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&1u16.to_le_bytes());
        file.extend_from_slice(&rate.to_le_bytes());
        file.extend_from_slice(&(rate * 2).to_le_bytes());
        file.extend_from_slice(&2u16.to_le_bytes());
        file.extend_from_slice(&16u16.to_le_bytes());
        file.extend_from_slice(b"data");
        file.extend_from_slice(&(data as u32).to_le_bytes());
        file.resize(file.len() + data, 0);
        file
    }

    #[test]
    fn a_wav_file_plays_for_its_samples_at_its_rate() {
        assert_eq!(bound_millis(&wav(16_000, 16_000)), 1000);
        assert_eq!(bound_millis(&wav(8_000, 4_001)), 501, "rounded up");
        let mut understated = wav(16_000, 32_000);
        understated[40..44].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            bound_millis(&understated),
            2000,
            "the bytes count, not the declared size"
        );
    }

    #[test]
    fn other_files_are_bounded_by_their_size_at_the_lowest_bitrate() {
        assert_eq!(bound_millis(&[0; 750]), 1000);
        assert_eq!(bound_millis(b"ID3 mp3 data"), 16);
        let mut compressed = wav(16_000, 100);
        compressed[20] = 2; // ADPCM: the rate in the header is not the bytes' rate
        assert_eq!(bound_millis(&compressed), millis_at(compressed.len() as u64, 750));
        let no_fmt = [&b"RIFF\0\0\0\0WAVEdata\x04\0\0\0"[..], &[0; 4]].concat();
        assert_eq!(bound_millis(&no_fmt), millis_at(no_fmt.len() as u64, 750));
    }
}
