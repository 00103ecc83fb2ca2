//! Voice calls (`VOICE_*`): the session the operator fixes and how many calls a user may make.
//! Which models a plan may call is `VOICE_MODELS`, read with the plan.

use super::vars::{Lookup, Vars};
use crate::budget::plans::Plan;
use crate::budget::prices::Prices;
use crate::error::ProxyError;
use crate::objects::user::VoiceSlots;
use crate::request::voice::live::is_live;
use crate::request::voice::VoiceSettings;
use crate::secret::Secret;

pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful voice assistant. Keep your answers short.";
/// OpenAI ends a Realtime session after 60 minutes.
const MAX_SESSION_SECONDS: u64 = 3_600;

/// The voice settings, when some plan allows a voice model; `None` otherwise (the route is
/// then refused like a model no plan allows). Every voice model and the transcription model
/// need a price: a call's hold is computed from it, with or without a dollar budget.
pub(super) fn voice_settings<'a>(
    vars: &Vars<impl Lookup>,
    mut plans: impl Iterator<Item = &'a Plan>,
    prices: &Prices,
) -> Result<Option<VoiceSettings>, ProxyError> {
    let mut voice_models = Vec::new();
    for plan in plans.by_ref() {
        // Seconds are not tokens: a token budget alone would not bound a Live session.
        if plan.user_limits.daily_nano_usd.is_none() && plan.voice_models.iter().any(|model| is_live(model)) {
            return Err(ProxyError::misconfigured(format!(
                "plan {:?} allows a GPT-Live model in VOICE_MODELS without DAILY_BUDGET_USD",
                plan.name
            )));
        }
        voice_models.extend(plan.voice_models.iter().cloned());
    }
    if voice_models.is_empty() {
        return Ok(None);
    }
    let transcription_model = vars.text("VOICE_TRANSCRIPTION_MODEL");
    // A GPT-Live model is billed per minute, a Realtime model per audio token.
    let unpriced = voice_models
        .iter()
        .find(|model| {
            prices.of(model).is_none_or(|price| match is_live(model) {
                true => price.per_minute.is_none(),
                false => price.audio_input.is_none() || price.audio_output.is_none(),
            })
        })
        .or(transcription_model.as_ref().filter(|model| prices.of(model).is_none()));
    if let Some(model) = unpriced {
        return Err(ProxyError::misconfigured(format!(
            "VOICE_MODELS or VOICE_TRANSCRIPTION_MODEL: {model:?} has no price (a voice model's needs audio_input and audio_output, a GPT-Live model's per_minute)"
        )));
    }
    Ok(Some(VoiceSettings {
        // Never empty: a session without instructions gets OpenAI's default ones, which the
        // bound would not count and which would differ from the fixed session at every check.
        instructions: vars
            .raw("VOICE_INSTRUCTIONS")
            .filter(|text| !text.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_INSTRUCTIONS.to_owned()),
        voices: vars.list("VOICE_VOICES").unwrap_or_else(|| vec!["marin".to_owned()]),
        max_output_tokens: vars.number("VOICE_MAX_OUTPUT_TOKENS", 1_024, 1..=4_096)?,
        context_tokens: vars.number("VOICE_CONTEXT_TOKENS", 8_000, 1_000..=120_000)?,
        transcription_model,
        max_session_seconds: vars.number("VOICE_MAX_SESSION_SECONDS", 600, 10..=MAX_SESSION_SECONDS)?,
        slots: VoiceSlots {
            max_concurrent: vars.number("VOICE_MAX_CONCURRENT", 1, 1..=10)?,
            per_day: vars.number("VOICE_SESSIONS_PER_DAY", 20, 1..=10_000)?,
        },
    }))
}

/// The key alone, for a call object: everything else it needs comes with the call, so it
/// parses no configuration (a second caller of the whole parse would cost wasm size).
pub fn call_key(lookup: impl Fn(&str) -> Option<String>) -> Option<Secret> {
    Vars::new(lookup).trimmed_secret("OPENAI_API_KEY")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn voice_is_off_without_voice_models_and_its_instructions_are_never_empty() {
        assert!(Config::for_tests(&[]).unwrap().voice.is_none());
        let on = |extra: &[(&str, &str)]| {
            // The first pair of a name wins: the test's own before the default.
            let mut vars = extra.to_vec();
            vars.push(("VOICE_MODELS", "gpt-realtime-2.1-mini"));
            Config::for_tests(&vars).map(|config| config.voice.unwrap())
        };
        assert_eq!(on(&[]).unwrap().instructions, DEFAULT_INSTRUCTIONS);
        assert_eq!(
            on(&[("VOICE_INSTRUCTIONS", "  ")]).unwrap().instructions,
            DEFAULT_INSTRUCTIONS
        );
        assert_eq!(
            on(&[("VOICE_INSTRUCTIONS", "Be brief.")]).unwrap().instructions,
            "Be brief."
        );
        for (name, value) in [
            ("VOICE_MODELS", "gpt-4o-mini"),
            ("VOICE_TRANSCRIPTION_MODEL", "unpriced-transcribe"),
            ("VOICE_MAX_SESSION_SECONDS", "3601"),
        ] {
            let detail = on(&[(name, value)]).unwrap_err().log_detail().unwrap();
            assert!(
                detail.contains("VOICE") || detail.contains("MODEL_PRICES"),
                "{name}: {detail}"
            );
        }
        let live = |prices: &str| {
            let vars = [
                ("VOICE_MODELS", "gpt-live-1.1"),
                ("MODEL_PRICES", prices),
                ("DAILY_BUDGET_USD", "1"),
            ];
            on(&vars)
        };
        assert!(live("{}").is_ok(), "GPT-Live's built-in price is per minute");
        let tokens_only = on(&[("VOICE_MODELS", "gpt-live-1.1"), ("DAILY_TOKEN_BUDGET", "100000")]);
        let detail = tokens_only.unwrap_err().log_detail().unwrap();
        assert!(detail.contains("DAILY_BUDGET_USD"), "{detail}");
        assert!(live(r#"{"gpt-live-1.1":{"input":1,"output":1,"audio_input":1,"audio_output":1}}"#).is_err());
        assert_eq!(
            on(&[("VOICE_TRANSCRIPTION_MODEL", "gpt-realtime-2.1-mini")])
                .unwrap()
                .transcription_model
                .as_deref(),
            Some("gpt-realtime-2.1-mini")
        );
    }
}
