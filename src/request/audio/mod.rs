//! The audio endpoints: `POST /v1/audio/transcriptions` (a multipart form with the audio file)
//! and `POST /v1/audio/speech` (JSON text in, audio out). Only the fields OpenAI documents for
//! them are accepted: each new one is a cost question first.

pub mod duration;
pub mod multipart;
mod speech;
mod transcription;

pub(super) use speech::speech;
pub(super) use transcription::transcription;

use crate::error::ProxyError;

/// Characters a speech `input` may have (OpenAI's limit).
pub const MAX_SPEECH_INPUT_CHARS: usize = 4096;

/// Audio tokens a second of input audio is reserved at. OpenAI publishes no rate for its
/// transcription models; gpt-4o-transcribe's estimate of $0.006 a minute at $6 per 1M audio
/// tokens (pricing page, 2025) comes to 17 a second: 20 is above it.
pub const AUDIO_TOKENS_PER_SECOND: u64 = 20;

/// A transcript's output bound: the max output tokens of gpt-4o-transcribe and
/// gpt-4o-mini-transcribe (their model pages, checked 2026-12-06).
pub const TRANSCRIPT_MAX_OUTPUT_TOKENS: u64 = 2_000;

/// Audio tokens a byte of speech input is reserved at, at speed 1. gpt-4o-mini-tts's estimate
/// of $0.015 a minute at $12 per 1M audio tokens is 21 tokens a second; speech reads about 15
/// bytes a second of English and 12 of Chinese (4 characters of 3 bytes): 1.4 to 1.7 a byte.
/// A slower `speed` makes longer audio: the bound grows by 1/speed.
pub const SPEECH_AUDIO_TOKENS_PER_BYTE: u64 = 3;

fn invalid(message: impl Into<String>, param: &str) -> ProxyError {
    ProxyError::invalid_request(message, Some(param))
}

/// "`name` why": one formatting site for every field's refusal (each `format!` costs wasm).
fn refuse(name: &str, why: &str) -> ProxyError {
    invalid(format!("`{name}` {why}"), name)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::duration::tests::wav;
    use super::*;
    use crate::budget::prices::{per_million, per_minute};
    use crate::budget::usage::Usage;
    use crate::config::Config;
    use crate::request::{parse, ApiRequest};
    use crate::routes::ApiRoute;

    fn config() -> Config {
        Config::for_tests(&[
            (
                "TRANSCRIBE_MODELS",
                "gpt-transcribe,whisper-1,gpt-4o-transcribe,gpt-4o-mini-transcribe",
            ),
            ("SPEECH_MODELS", "gpt-4o-mini-tts,tts-1,tts-1-hd"),
            ("DAILY_BUDGET_USD", "5"),
        ])
        .unwrap()
    }

    /// A transcription form with `fields` and `file` as `a.{ext}`.
    fn form(fields: &[(&str, &str)], ext: &str, file: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend(format!("--b0\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes());
        }
        body.extend(
            format!("--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.{ext}\"\r\nContent-Type: audio/{ext}\r\n\r\n").bytes(),
        );
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--b0--\r\n");
        body
    }

    fn transcribe(body: &[u8], config: &Config) -> Result<ApiRequest, ProxyError> {
        parse(
            ApiRoute::Transcriptions,
            body,
            &config.requests,
            &config.default_plan,
            "alice",
        )
    }

    fn speak(body: Value, config: &Config) -> Result<ApiRequest, ProxyError> {
        let bytes = body.to_string();
        parse(
            ApiRoute::Speech,
            bytes.as_bytes(),
            &config.requests,
            &config.default_plan,
            "alice",
        )
    }

    fn param(error: ProxyError) -> Option<String> {
        let ProxyError::InvalidRequest { param, .. } = error else {
            return None;
        };
        param
    }

    fn sent(request: &ApiRequest, client: &[u8]) -> Vec<u8> {
        request.upstream_pieces(client).concat()
    }

    #[test]
    fn a_transcription_is_rebuilt_around_the_client_s_file_with_the_checked_fields_only() {
        let file = wav(16_000, 16_000);
        let body = form(
            &[
                ("model", "gpt-4o-transcribe"),
                ("prompt", "Names: Zoë"),
                ("stream", "true"),
                ("language", "en"),
            ],
            "wav",
            &file,
        );
        let config = config();
        let request = transcribe(&body, &config).unwrap();
        assert!(request.stream);
        assert_eq!(request.upstream_content_type(), "multipart/form-data; boundary=b0");
        let upstream = sent(&request, &body);
        let form = super::multipart::parse(&upstream).unwrap();
        let names: Vec<_> = form.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["model", "stream", "prompt", "language", "file"]);
        assert_eq!(
            &upstream[form.fields[4].value.clone()],
            &file[..],
            "the file, byte for byte"
        );
        assert_eq!(form.fields[4].filename, Some("audio.wav"));
        assert_eq!(request.attachment.as_ref().unwrap().file.len(), file.len());
        // 1 s of audio: 20 audio tokens, the prompt's and language's 13 bytes, 2,000 out.
        assert_eq!(request.reserve_tokens, 20 + 13 + 2_000);
        assert_eq!(
            request.reserve_nano_usd,
            per_million(13, 2_500_000_000) + per_million(20, 2_500_000_000) + per_million(2_000, 10_000_000_000)
        );
        assert_eq!(request.prompt_chars, 12);
    }

    #[test]
    fn a_model_priced_per_minute_is_reserved_its_duration_bound() {
        let config = config();
        let wav_body = form(&[("model", "gpt-transcribe")], "wav", &wav(8_000, 8_000 * 90));
        let request = transcribe(&wav_body, &config).unwrap();
        assert_eq!(request.reserve_nano_usd, per_minute(90_000, 4_500_000), "90 s, exactly");
        let webm = form(&[("model", "whisper-1"), ("stream", "true")], "webm", &[7; 7_500]);
        let request = transcribe(&webm, &config).unwrap();
        assert_eq!(
            request.reserve_nano_usd,
            per_minute(10_000, 6_000_000),
            "7,500 bytes at 6 kbit/s"
        );
        assert!(!request.stream, "whisper-1 does not stream");
        assert!(!String::from_utf8_lossy(&sent(&request, &webm)).contains("name=\"stream\""));
    }

    #[test]
    fn a_transcription_outside_its_plan_is_refused_before_anything_is_reserved() {
        let config = config();
        let file = wav(8_000, 8_000);
        let refused = |fields: &[(&str, &str)], ext: &str, file: &[u8]| transcribe(&form(fields, ext, file), &config);
        assert!(matches!(
            refused(&[("model", "gpt-4o-mini")], "wav", &file),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [u8], &'a str);
        let cases: [Case; 8] = [
            (&[], "wav", &file, "model"),
            (&[("model", "whisper-1"), ("model", "tts-1")], "wav", &file, "model"),
            (
                &[("model", "whisper-1"), ("known_speaker_references[]", "data:")],
                "wav",
                &file,
                "known_speaker_references[]",
            ),
            (
                &[("model", "whisper-1"), ("response_format", "xml")],
                "wav",
                &file,
                "response_format",
            ),
            (&[("model", "whisper-1"), ("stream", "yes")], "wav", &file, "stream"),
            (
                &[("model", "whisper-1"), ("temperature", "3")],
                "wav",
                &file,
                "temperature",
            ),
            (&[("model", "whisper-1")], "exe", &file, "file"),
            (&[("model", "whisper-1")], "webm", &[0; 450_001], "file"),
        ];
        for (fields, ext, file, field) in cases {
            assert_eq!(
                param(refused(fields, ext, file).unwrap_err()).as_deref(),
                Some(field),
                "{fields:?}"
            );
        }
        assert!(
            refused(&[("model", "whisper-1")], "webm", &[0; 450_000]).is_ok(),
            "600 s at 6 kbit/s"
        );
        let long_prompt = "p".repeat(8_001);
        assert_eq!(
            param(refused(&[("model", "whisper-1"), ("prompt", &long_prompt)], "wav", &file).unwrap_err()).as_deref(),
            Some("prompt")
        );
        let no_file = b"--b0\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b0--";
        assert_eq!(
            param(transcribe(no_file, &config).unwrap_err()).as_deref(),
            Some("file")
        );
        let off = Config::for_tests(&[]).unwrap();
        assert!(matches!(
            transcribe(&form(&[("model", "whisper-1")], "wav", &file), &off),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
    }

    #[test]
    fn temperature_is_a_decimal_from_0_to_1() {
        let config = config();
        let with = |temperature: &str| {
            let body = form(
                &[("model", "whisper-1"), ("temperature", temperature)],
                "wav",
                &wav(8_000, 80),
            );
            transcribe(&body, &config)
        };
        for temperature in ["0", "0.2", "1", "1.00"] {
            assert!(with(temperature).is_ok(), "{temperature:?}");
        }
        for temperature in ["", ".5", "1.", "1.5", "-0", "0.5e1", "01", "2"] {
            assert_eq!(
                param(with(temperature).unwrap_err()).as_deref(),
                Some("temperature"),
                "{temperature:?}"
            );
        }
    }

    #[test]
    fn speech_priced_per_character_costs_its_characters_whatever_the_answer_says() {
        let config = config();
        let request = speak(json!({"model": "tts-1", "input": "Héllo!", "voice": "alloy"}), &config).unwrap();
        assert_eq!(request.reserve_nano_usd, per_million(6, 15_000_000_000));
        assert_eq!(request.reserve_tokens, 6);
        assert!(!request.stream && request.audio_out.is_none());
        let tariff = request.tariff();
        let odd = Usage {
            prompt_tokens: 999_999,
            ..Usage::default()
        };
        assert_eq!(tariff.charge(Some(&odd)), request.reserve());
        assert_eq!(tariff.charge(None), request.reserve());
        let sse = speak(
            json!({"model": "tts-1-hd", "input": "a", "voice": "alloy", "stream_format": "sse"}),
            &config,
        );
        assert!(sse.unwrap().stream);
    }

    #[test]
    fn speech_priced_per_token_is_asked_for_a_stream_and_turned_back_into_audio() {
        let config = config();
        let body = json!({"model": "gpt-4o-mini-tts", "input": "Hello there", "voice": {"id": "voice_1"},
            "response_format": "wav", "speed": 0.5, "instructions": "calm"});
        let request = speak(body, &config).unwrap();
        assert!(request.stream);
        assert_eq!(request.audio_out, Some("audio/wav"));
        let upstream: Value = serde_json::from_str(request.upstream_body()).unwrap();
        assert_eq!(upstream["stream_format"], "sse");
        let text = request.upstream_body().len() as u64;
        let audio = 11 * SPEECH_AUDIO_TOKENS_PER_BYTE * 2;
        assert_eq!(request.reserve_tokens, text + audio);
        assert_eq!(
            request.reserve_nano_usd,
            per_million(text, 600_000_000) + per_million(audio, 12_000_000_000)
        );
        let done = Usage {
            prompt_tokens: 5,
            completion_tokens: 60,
            total_tokens: 65,
            audio_output_tokens: 60,
            ..Usage::default()
        };
        let spent = request.tariff().charge(Some(&done));
        assert_eq!(
            spent.nano_usd,
            per_million(5, 600_000_000) + per_million(60, 12_000_000_000)
        );
        let sse = speak(
            json!({"model": "gpt-4o-mini-tts", "input": "a", "voice": "x", "stream_format": "sse"}),
            &config,
        );
        assert_eq!(sse.unwrap().audio_out, None, "the client's own stream passes as it is");
    }

    #[test]
    fn speech_outside_its_limits_is_refused() {
        let config = config();
        let base = json!({"model": "gpt-4o-mini-tts", "input": "hi", "voice": "alloy"});
        let with = |key: &str, value: Value| {
            let mut body = base.clone();
            body[key] = value;
            speak(body, &config)
        };
        assert!(matches!(
            with("model", json!("gpt-4o-mini")),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
        for (key, value) in [
            ("input", json!("")),
            ("input", json!("x".repeat(MAX_SPEECH_INPUT_CHARS + 1))),
            ("voice", json!(5)),
            ("speed", json!(0.1)),
            ("speed", json!("fast")),
            ("response_format", json!("ogg")),
            ("stream_format", json!("chunks")),
            ("user", json!("bob")),
        ] {
            assert_eq!(
                param(with(key, value.clone()).unwrap_err()).as_deref(),
                Some(key),
                "{key}: {value}"
            );
        }
        assert!(with("input", json!("é".repeat(MAX_SPEECH_INPUT_CHARS))).is_ok());
        let short = Config::for_tests(&[("SPEECH_MODELS", "tts-1"), ("MAX_PROMPT_CHARS", "10")]).unwrap();
        let long = json!({"model": "tts-1", "input": "x".repeat(11), "voice": "alloy"});
        assert_eq!(
            param(speak(long, &short).unwrap_err()).as_deref(),
            Some("input"),
            "MAX_PROMPT_CHARS"
        );
    }

    #[test]
    fn a_duration_the_price_cannot_read_is_charged_the_reservation() {
        let config = config();
        let request = transcribe(
            &form(&[("model", "gpt-4o-transcribe")], "wav", &wav(8_000, 800)),
            &config,
        )
        .unwrap();
        let seconds = Usage {
            duration_millis: Some(1_000),
            ..Usage::default()
        };
        assert_eq!(request.tariff().charge(Some(&seconds)), request.reserve());
    }

    proptest! {
        /// Whatever OpenAI may bill within the documented bounds (audio tokens at most 20 a
        /// second of the file's bound, text at most a token a byte, 2,000 out; seconds at
        /// most the bound), the reservation covers it: the mock bills inside these bounds.
        #[test]
        fn a_transcription_s_reservation_covers_any_bill_within_its_bounds(
            model in prop::sample::select(vec!["gpt-transcribe", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]),
            wav_file in any::<bool>(),
            size in 1usize..400_000,
            prompt in "[a-zé ]{0,40}",
            fractions in [0.0f64..=1.0, 0.0f64..=1.0, 0.0f64..=1.0],
        ) {
            let config = config();
            let file = if wav_file { wav(8_000, size) } else { vec![1; size] };
            let body = form(&[("model", model), ("prompt", &prompt)], if wav_file { "wav" } else { "mp3" }, &file);
            let request = transcribe(&body, &config).unwrap();
            let millis = super::duration::bound_millis(&file);
            // Each part anywhere up to its bound, the others too; the bounds as stated, not
            // the constants, so that lowering one fails here.
            let scale = |n: u64, fraction: f64| (n as f64 * fraction) as u64;
            let audio = scale(millis.div_ceil(1000) * 20, fractions[0]);
            let text = scale(prompt.len() as u64, fractions[1]);
            let output = scale(2_000, fractions[2]);
            let tokens = Usage {
                prompt_tokens: audio + text,
                audio_input_tokens: audio,
                completion_tokens: output,
                total_tokens: audio + text + output,
                ..Usage::default()
            };
            let duration = Usage { duration_millis: Some(scale(millis, fractions[0])), ..Usage::default() };
            for usage in [tokens, duration] {
                let spent = request.tariff().charge(Some(&usage));
                prop_assert!(!request.tariff().overran(spent), "{model}: {usage:?} charged {spent:?} over {:?}", request.reserve());
            }
        }

        /// The fuzz target's invariant on stable: never a panic, and an accepted form is
        /// rebuilt into one that parses again with the client's file byte for byte.
        #[test]
        fn any_form_is_refused_or_rebuilt_around_its_file(
            prompt in "[^\r]{0,30}",
            file in prop::collection::vec(any::<u8>(), 0..300),
            noise in prop::collection::vec(any::<u8>(), 0..64),
            at in any::<prop::sample::Index>(),
        ) {
            let config = config();
            let mut body = form(&[("model", "whisper-1"), ("prompt", &prompt)], "ogg", &file);
            let _ = transcribe(&[&body[..], &noise].concat(), &config);
            let cut = at.index(body.len());
            body.splice(cut..cut, noise.iter().copied());
            if let Ok(request) = transcribe(&body, &config) {
                let sent = sent(&request, &body);
                let rebuilt = super::multipart::parse(&sent).unwrap();
                let file = rebuilt.fields.iter().find(|field| field.name == "file").unwrap();
                let original = request.attachment.as_ref().unwrap().file.clone();
                prop_assert_eq!(&sent[file.value.clone()], &body[original]);
            }
        }

        #[test]
        fn a_speech_reservation_covers_any_bill_within_its_bounds(
            input in "[a-zé语][a-zé语 ]{0,199}",
            speed in 0.25f64..=4.0,
            fraction in 0.0f64..=1.0,
        ) {
            let config = config();
            let request = speak(json!({"model": "gpt-4o-mini-tts", "input": input, "voice": "alloy", "speed": speed}), &config).unwrap();
            let slowdown = (1.0 / speed.min(1.0)).ceil() as u64;
            let audio = ((input.len() as u64 * 3 * slowdown) as f64 * fraction) as u64;
            let text = (input.len() as f64 * fraction) as u64;
            let usage = Usage {
                prompt_tokens: text,
                completion_tokens: audio,
                total_tokens: text + audio,
                audio_output_tokens: audio,
                ..Usage::default()
            };
            prop_assert!(!request.tariff().overran(request.tariff().charge(Some(&usage))));
        }
    }
}
