//! Voice calls (Realtime, `POST /v1/realtime/calls`): the session the operator fixes, the
//! bound of what a call may cost, and the checks of what the page changes meanwhile.
//!
//! The page's data channel may change any session field but `model` with `session.update`
//! (OpenAI's Realtime guide), and may ask a response with its own `max_output_tokens` in
//! `response.create`. Only the sideband sees both (`session.updated`, `response.created`), so
//! the call object checks them against the fixed session here.

use serde_json::{json, Value};

use crate::budget::plans::Plan;
use crate::budget::prices::Prices;
use crate::budget::quota::Spend;
use crate::budget::realtime::{call_hold, TurnLimits};
use crate::error::ProxyError;
use crate::objects::user::VoiceSlots;

pub mod call;
pub mod live;
pub mod offer;
pub mod relay;

use call::CallRules;
use live::is_live;

/// The operator's voice settings (`VOICE_*`); which models a plan may call is the plan's
/// `voice_models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceSettings {
    pub instructions: String,
    /// The voices a page may pick (`?voice=`); the first is the default.
    pub voices: Vec<String>,
    /// Each response's output cap (`max_output_tokens`, which counts tool calls and reasoning).
    pub max_output_tokens: u64,
    /// The conversation a response reads after the instructions
    /// (`truncation.token_limits.post_instructions`).
    pub context_tokens: u64,
    /// The input transcription model, if the page gets a transcript of what it says.
    pub transcription_model: Option<String>,
    pub max_session_seconds: u64,
    pub slots: VoiceSlots,
}

/// A call checked against the plan: what to create upstream, and what it may cost.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    pub model: String,
    /// The session created upstream, and restored when the page changes a fixed field.
    pub session: Value,
    /// One turn's worst case.
    pub turn: Spend,
    /// What the call holds while it lasts: two turns' worst case.
    pub hold: Spend,
    pub rules: CallRules,
}

impl VoiceSettings {
    /// The call a page asks for (`?model=`, `?voice=`; else the plan's first voice model and
    /// the first voice), if the plan allows it.
    pub fn plan_call(
        &self,
        plan: &Plan,
        prices: &Prices,
        upstream_base_url: &str,
        model: Option<&str>,
        voice: Option<&str>,
    ) -> Result<CallPlan, ProxyError> {
        let model = chosen_model(plan, model, false)?;
        let voice = self.offered_voice(voice)?;
        // Config checks that every voice model and the transcription model have prices.
        let price = prices
            .of(model)
            .ok_or_else(|| ProxyError::misconfigured(format!("no price for voice model {model:?}")))?;
        let heard = self.transcription_model.as_deref().and_then(|name| prices.of(name));
        let turn = self.turn_limits().worst(&price, heard.as_ref());
        Ok(CallPlan {
            model: model.to_owned(),
            session: self.session(model, voice),
            turn,
            hold: call_hold(turn),
            rules: CallRules {
                upstream_base_url: upstream_base_url.to_owned(),
                voices: self.voices.clone(),
                max_output_tokens: self.max_output_tokens,
                price,
                transcription: heard,
            },
        })
    }

    /// The voice a page picks, if the operator offers it; else the first one.
    fn offered_voice<'a>(&'a self, voice: Option<&'a str>) -> Result<&'a str, ProxyError> {
        let voice = voice.or(self.voices.first().map(String::as_str)).unwrap_or_default();
        if !self.voices.iter().any(|allowed| allowed == voice) {
            return Err(ProxyError::invalid_request(
                "This voice is not offered: pick one of the operator's voices.",
                Some("voice"),
            ));
        }
        Ok(voice)
    }

    /// What one response reads at most: the instructions (a token is at least a byte of
    /// their text; no tools are allowed, so nothing else comes before the conversation) and
    /// the conversation after them, which truncation keeps under `context_tokens`. A
    /// transcription hears at most that much audio.
    pub fn turn_limits(&self) -> TurnLimits {
        let context_tokens = (self.instructions.len() as u64).saturating_add(self.context_tokens);
        TurnLimits {
            context_tokens,
            max_output_tokens: self.max_output_tokens,
            transcription_tokens: if self.transcription_model.is_some() {
                context_tokens
            } else {
                0
            },
        }
    }

    /// The session sent with the call (openai-node `RealtimeSessionCreateRequest`).
    pub fn session(&self, model: &str, voice: &str) -> Value {
        let transcription = self
            .transcription_model
            .as_ref()
            .map_or(Value::Null, |model| json!({ "model": model }));
        json!({
            "type": "realtime",
            "model": model,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "truncation": {
                "type": "retention_ratio",
                "retention_ratio": 0.8,
                "token_limits": { "post_instructions": self.context_tokens },
            },
            "tools": [],
            "tool_choice": "none",
            "audio": {
                "input": { "transcription": transcription },
                "output": { "voice": voice },
            },
        })
    }
}

/// The model a page asks for (else the plan's first of the API), if the plan allows it and it
/// is one of the API's: a GPT-Live model (`live`) has its own (`live.rs`).
fn chosen_model<'a>(plan: &'a Plan, model: Option<&'a str>, live: bool) -> Result<&'a str, ProxyError> {
    let of_api = |model: &&str| is_live(model) == live;
    let model = model
        .or(plan.voice_models.iter().map(String::as_str).find(of_api))
        .unwrap_or_default();
    if !of_api(&model) || !plan.voice_models.iter().any(|allowed| allowed == model) {
        return Err(ProxyError::ModelNotAllowed {
            model: model.to_owned(),
        });
    }
    Ok(model)
}

/// The first field of `session` (a `session.updated`'s) that differs from what the
/// operator fixed in `fixed`, or `None`; `voices`: the operator's. A voice of the operator's list is the page's to
/// choose; fields that cost nothing (turn detection, formats, noise reduction) are too.
pub fn deviation(voices: &[String], fixed: &Value, session: &Value) -> Option<&'static str> {
    let at = |value: &Value, path: &[&str]| path.iter().try_fold(value, |v, key| v.get(*key)).cloned();
    let absent = |value: Option<Value>| value.is_none_or(|v| v.is_null() || v == json!([]));
    let same = |path: &[&str]| at(fixed, path) == at(session, path);
    if !same(&["instructions"]) {
        return Some("instructions");
    }
    if !same(&["max_output_tokens"]) {
        return Some("max_output_tokens");
    }
    if !same(&["truncation", "type"]) || !same(&["truncation", "token_limits", "post_instructions"]) {
        return Some("truncation");
    }
    if !absent(at(session, &["tools"])) {
        return Some("tools");
    }
    if !absent(at(session, &["prompt"])) {
        return Some("prompt");
    }
    let heard = |value: &Value| at(value, &["audio", "input", "transcription", "model"]).filter(|m| !m.is_null());
    if heard(fixed) != heard(session) {
        return Some("audio.input.transcription");
    }
    let voice = at(session, &["audio", "output", "voice"]);
    if voice.is_some_and(|voice| !voices.iter().any(|allowed| voice == allowed.as_str())) {
        return Some("audio.output.voice");
    }
    None
}

/// Whether a response (a `response.created`'s) may write more than the fixed cap: its own
/// `max_output_tokens` from the page's `response.create`, a number above it or `inf`.
pub fn response_over_cap(max_output_tokens: u64, response: &Value) -> bool {
    match response.get("max_output_tokens") {
        None | Some(Value::Null) => false,
        Some(cap) => cap.as_u64().is_none_or(|cap| cap > max_output_tokens),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(transcription: Option<&str>) -> VoiceSettings {
        VoiceSettings {
            instructions: "Be brief.".into(),
            voices: vec!["marin".into(), "cedar".into()],
            max_output_tokens: 500,
            context_tokens: 4_000,
            transcription_model: transcription.map(str::to_owned),
            max_session_seconds: 600,
            slots: VoiceSlots {
                max_concurrent: 1,
                per_day: 10,
            },
        }
    }

    const BASE: &str = "https://api.openai.com/v1";

    fn config() -> Config {
        Config::for_tests(&[("VOICE_MODELS", "gpt-realtime-2.1-mini,gpt-realtime-2")]).unwrap()
    }

    #[test]
    fn a_call_is_the_plan_s_voice_model_and_an_offered_voice_with_the_operator_s_session() {
        let config = config();
        let plan = &config.default_plan;
        let prices = &config.requests.prices;
        let call = settings(None).plan_call(plan, prices, BASE, None, None).unwrap();
        assert_eq!(call.model, "gpt-realtime-2.1-mini");
        assert_eq!(call.session["audio"]["output"]["voice"], "marin");
        assert_eq!(call.session["max_output_tokens"], 500);
        assert_eq!(call.session["truncation"]["token_limits"]["post_instructions"], 4_000);
        assert_eq!(call.session["tools"], json!([]));
        // (9 + 4,000) tokens in at $10/1M (audio), 500 out at $20/1M (audio)
        assert_eq!(
            call.turn,
            Spend {
                tokens: 4_509,
                nano_usd: 4_009 * 10_000 + 500 * 20_000
            }
        );
        assert_eq!(call.hold.nano_usd, 2 * call.turn.nano_usd);
        let dear = settings(None)
            .plan_call(plan, prices, BASE, Some("gpt-realtime-2"), Some("cedar"))
            .unwrap();
        assert_eq!(dear.turn.nano_usd, 4_009 * 32_000 + 500 * 64_000);
        assert!(matches!(
            settings(None).plan_call(plan, prices, BASE, Some("gpt-4o-mini"), None),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
        assert!(matches!(
            settings(None).plan_call(plan, prices, BASE, None, Some("alloy")),
            Err(ProxyError::InvalidRequest { .. })
        ));
        let no_voice = Config::for_tests(&[]).unwrap();
        assert!(matches!(
            settings(None).plan_call(&no_voice.default_plan, prices, BASE, None, None),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
    }

    #[test]
    fn a_transcription_adds_its_worst_case_to_each_turn() {
        let config = config();
        let with = settings(Some("gpt-realtime-2.1-mini"))
            .plan_call(&config.default_plan, &config.requests.prices, BASE, None, None)
            .unwrap();
        assert_eq!(
            with.session["audio"]["input"]["transcription"]["model"],
            "gpt-realtime-2.1-mini"
        );
        assert_eq!(
            with.turn.nano_usd,
            4_009 * 10_000 + 500 * 20_000 + 4_009 * 10_000 + 4_009 * 20_000
        );
    }

    #[test]
    fn a_page_s_session_update_of_a_fixed_field_is_a_deviation_and_of_others_not() {
        let voice = settings(None);
        let fixed = voice.session("gpt-realtime-2.1-mini", "marin");
        let mut echoed = fixed.clone();
        echoed["turn_detection"] = json!({"type": "semantic_vad"});
        echoed["audio"]["output"]["voice"] = json!("cedar");
        echoed["audio"]["input"]["transcription"] = Value::Null;
        assert_eq!(deviation(&voice.voices, &fixed, &echoed), None);
        for (path, value, field) in [
            ("max_output_tokens", json!("inf"), "max_output_tokens"),
            ("max_output_tokens", json!(4096), "max_output_tokens"),
            ("instructions", json!("Talk for an hour."), "instructions"),
            ("truncation", json!("disabled"), "truncation"),
            ("tools", json!([{"type": "function", "name": "f"}]), "tools"),
            ("prompt", json!({"id": "pmpt_1"}), "prompt"),
        ] {
            let mut changed = fixed.clone();
            changed[path] = value;
            assert_eq!(deviation(&voice.voices, &fixed, &changed), Some(field), "{path}");
        }
        let mut other_voice = fixed.clone();
        other_voice["audio"]["output"]["voice"] = json!("alloy");
        assert_eq!(
            deviation(&voice.voices, &fixed, &other_voice),
            Some("audio.output.voice")
        );
        let mut heard = fixed.clone();
        heard["audio"]["input"]["transcription"] = json!({"model": "gpt-4o-transcribe"});
        assert_eq!(
            deviation(&voice.voices, &fixed, &heard),
            Some("audio.input.transcription")
        );
    }

    #[test]
    fn a_response_asking_more_than_the_cap_is_over_it() {
        let voice = settings(None);
        assert!(!response_over_cap(voice.max_output_tokens, &json!({"id": "resp_1"})));
        assert!(!response_over_cap(
            voice.max_output_tokens,
            &json!({"max_output_tokens": 500})
        ));
        assert!(response_over_cap(
            voice.max_output_tokens,
            &json!({"max_output_tokens": 501})
        ));
        assert!(response_over_cap(
            voice.max_output_tokens,
            &json!({"max_output_tokens": "inf"})
        ));
    }
}
