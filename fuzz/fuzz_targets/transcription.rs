//! Arbitrary bytes as a transcription form: never a panic, and a form the policy accepts is
//! rebuilt into one that parses again, with the client's file byte for byte and a reservation
//! that covers the audio's duration bound.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openai_edge_proxy::testing::audio::{parse_form, parse_transcription};
use openai_edge_proxy::testing::config::Config;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let vars = [
            ("JWT_SECRET", "a-fuzz-secret-that-is-32-bytes-long!"),
            ("TRANSCRIBE_MODELS", "whisper-1,gpt-4o-transcribe"),
            ("DAILY_BUDGET_USD", "5"),
        ];
        Config::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
            .expect("the fuzz configuration is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_transcription(data, config()) else {
        return;
    };
    let sent = request.upstream_pieces(data).concat();
    let form = parse_form(&sent).expect("the rebuilt form parses");
    let file = form
        .fields
        .iter()
        .find(|field| field.name == "file")
        .expect("the file is sent");
    let original = request.attachment.as_ref().expect("a form has its file").file.clone();
    assert_eq!(&sent[file.value.clone()], &data[original]);
    assert!(
        request.reserve_nano_usd > 0,
        "every admitted transcription reserves dollars"
    );
});
