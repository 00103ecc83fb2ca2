//! The WebSocket relay (`GET /v1/realtime?model=…`): every client event passes the proxy, so
//! each is checked here before it reaches OpenAI, and the page learns of a refusal from an
//! OpenAI-shaped `error` event.
//!
//! Client events: openai-node `RealtimeClientEvent` (2026-08): `session.update`,
//! `input_audio_buffer.{append,commit,clear}`, `output_audio_buffer.clear`,
//! `conversation.item.{create,retrieve,truncate,delete}`, `response.{create,cancel}`.
//!
//! A `session.update` loses the fields that would change what the operator fixed and goes on
//! with the rest: `@openai/agents-realtime` sends its whole configuration in one update (audio
//! formats and turn detection beside its own instructions), and what it may set is harmless.
//! A `response.create` is one request, whose meaning a removed field would change: it is
//! refused whole.

use serde_json::{json, Map, Value};

use super::call::{CallRules, EndReason};
use super::response_over_cap;

/// The subprotocol a browser's WebSocket offers and the relay echoes.
pub const SUBPROTOCOL: &str = "realtime";
/// The subprotocol that carries the key (here: the user token) in a browser.
const KEY_PROTOCOL: &str = "openai-insecure-api-key.";
/// Relay calls are named by the proxy (`relay_…`); WebRTC calls by OpenAI (`rtc_…`).
pub const RELAY_PREFIX: &str = "relay_";

/// Whether `call` is a relay's: its end closes sockets, there is no call to hang up upstream.
pub fn is_relay(call: &str) -> bool {
    call.starts_with(RELAY_PREFIX)
}

/// The user token in `Sec-WebSocket-Protocol` (`realtime, openai-insecure-api-key.<token>, …`),
/// if `realtime` is offered beside it.
pub fn token_in_protocols(protocols: &str) -> Option<&str> {
    let token = protocols
        .split(',')
        .find_map(|protocol| protocol.trim().strip_prefix(KEY_PROTOCOL));
    token.filter(|_| offers_realtime(protocols))
}

/// Whether `Sec-WebSocket-Protocol` offers `realtime`: then it is echoed, and only it.
pub fn offers_realtime(protocols: &str) -> bool {
    protocols.split(',').any(|protocol| protocol.trim() == SUBPROTOCOL)
}

/// What the relay does with one client event: send `forward` upstream, `refusal` (an `error`
/// event) back to the page; either or both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checked {
    pub forward: Option<String>,
    pub refusal: Option<String>,
}

/// Checks one client event (`text`) against the rules and the operator's session (`fixed`).
pub fn check_client_event(rules: &CallRules, fixed: &Value, text: &str) -> Checked {
    let Ok(mut event) = serde_json::from_str::<Value>(text) else {
        return refused(None, "invalid_json", "A client event is one JSON object.", None);
    };
    let event_id = event.get("event_id").and_then(Value::as_str).map(str::to_owned);
    let event_id = event_id.as_deref();
    match event.get("type").and_then(Value::as_str).unwrap_or_default() {
        "input_audio_buffer.append"
        | "input_audio_buffer.commit"
        | "input_audio_buffer.clear"
        | "output_audio_buffer.clear"
        | "conversation.item.create"
        | "conversation.item.retrieve"
        | "conversation.item.truncate"
        | "conversation.item.delete"
        | "response.cancel" => Checked {
            forward: Some(text.to_owned()),
            refusal: None,
        },
        "response.create" => match refused_response(rules, event.get("response").unwrap_or(&Value::Null)) {
            None => Checked {
                forward: Some(text.to_owned()),
                refusal: None,
            },
            Some(param) => refused(
                event_id,
                "response_not_allowed",
                "This response asks for more than the operator allows; it was not sent.",
                Some(param),
            ),
        },
        "session.update" => {
            let Some(session) = event.get_mut("session").and_then(Value::as_object_mut) else {
                return refused(
                    event_id,
                    "invalid_value",
                    "session.update needs a session.",
                    Some("session"),
                );
            };
            let removed = strip_fixed(rules, fixed, session);
            if removed.is_empty() {
                return Checked {
                    forward: Some(text.to_owned()),
                    refusal: None,
                };
            }
            Checked {
                forward: Some(event.to_string()),
                refusal: refused(
                    event_id,
                    "fixed_session_field",
                    "The operator fixed these session fields; the rest of the update was sent.",
                    Some(&removed.join(",")),
                )
                .refusal,
            }
        }
        _ => refused(
            event_id,
            "event_not_allowed",
            "This client event is not relayed.",
            Some("type"),
        ),
    }
}

/// The `error` event of a hang-up, sent to the page before its socket is closed.
pub fn ended_event(reason: EndReason) -> String {
    error_event(None, reason.name(), "The proxy ended this session.", None)
}

fn refused(event_id: Option<&str>, code: &str, message: &str, param: Option<&str>) -> Checked {
    Checked {
        forward: None,
        refusal: Some(error_event(event_id, code, message, param)),
    }
}

/// An `error` server event (openai-node `RealtimeErrorEvent`), naming the client's event.
fn error_event(event_id: Option<&str>, code: &str, message: &str, param: Option<&str>) -> String {
    json!({
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    })
    .to_string()
}

/// The first part of a `response.create`'s `response` that the operator does not allow: its
/// own instructions, tools, prompt or input (which truncation does not bound), a voice not
/// offered, or an output cap above the operator's.
fn refused_response(rules: &CallRules, response: &Value) -> Option<&'static str> {
    let present = |key: &str| response.get(key).is_some_and(|v| !v.is_null() && v != &json!([]));
    let own = ["instructions", "tools", "prompt", "input"]
        .into_iter()
        .find(|key| present(key));
    if own.is_some() {
        return own;
    }
    if response_over_cap(rules.max_output_tokens, response) {
        return Some("max_output_tokens");
    }
    let voice = response.pointer("/audio/output/voice");
    voice
        .is_some_and(|voice| !offered(rules, voice))
        .then_some("audio.output.voice")
}

fn offered(rules: &CallRules, voice: &Value) -> bool {
    rules.voices.iter().any(|allowed| voice == allowed.as_str())
}

/// Removes from a `session.update`'s `session` each field that would change what the operator
/// fixed, or that the relay does not know (a new field is a cost question first); returns
/// their names. A field equal to the fixed one stays.
fn strip_fixed(rules: &CallRules, fixed: &Value, session: &mut Map<String, Value>) -> Vec<String> {
    let mut removed = Vec::new();
    session.retain(|key, value| {
        let kept = match key.as_str() {
            "output_modalities" | "tool_choice" | "tracing" | "include" | "parallel_tool_calls" | "reasoning" => true,
            "type" => value == "realtime",
            "model" | "instructions" | "max_output_tokens" | "truncation" => fixed.get(key) == Some(value),
            "tools" => value.is_null() || value == &json!([]),
            "prompt" => value.is_null(),
            "audio" => strip_audio(rules, fixed, value, &mut removed),
            _ => false,
        };
        if !kept {
            removed.push(key.clone());
        }
        kept
    });
    removed
}

/// The `audio` part: formats, noise reduction, turn detection and speed are the page's; the
/// voice one the operator offers; the transcription model the operator's. False: no object.
fn strip_audio(rules: &CallRules, fixed: &Value, audio: &mut Value, removed: &mut Vec<String>) -> bool {
    let Some(audio) = audio.as_object_mut() else {
        return false;
    };
    let fixed_model = fixed.pointer("/audio/input/transcription/model");
    for (direction, part) in audio.iter_mut() {
        let Some(fields) = part.as_object_mut() else {
            removed.push(format!("audio.{direction}"));
            *part = json!({});
            continue;
        };
        fields.retain(|key, value| {
            let kept = match (direction.as_str(), key.as_str()) {
                ("input", "format" | "noise_reduction" | "turn_detection") | ("output", "format" | "speed") => true,
                ("input", "transcription") => value.get("model").filter(|m| !m.is_null()) == fixed_model,
                ("output", "voice") => offered(rules, value),
                _ => false,
            };
            if !kept {
                removed.push(format!("audio.{direction}.{key}"));
            }
            kept
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::prices::Prices;
    use crate::objects::user::VoiceSlots;
    use crate::request::voice::VoiceSettings;

    fn rules_and_session(transcription: Option<&str>) -> (CallRules, Value) {
        let voice = VoiceSettings {
            instructions: "Be brief.".into(),
            voices: vec!["marin".into(), "cedar".into()],
            max_output_tokens: 100,
            context_tokens: 1_000,
            transcription_model: transcription.map(str::to_owned),
            max_session_seconds: 60,
            slots: VoiceSlots {
                max_concurrent: 1,
                per_day: 1,
            },
        };
        let price = Prices::parse(None).unwrap().of("gpt-realtime-2.1-mini").unwrap();
        let rules = CallRules {
            upstream_base_url: "https://api.openai.com/v1".into(),
            voices: voice.voices.clone(),
            max_output_tokens: voice.max_output_tokens,
            price,
            transcription: None,
        };
        (rules, voice.session("gpt-realtime-2.1-mini", "marin"))
    }

    fn check(event: Value) -> (Option<Value>, Option<Value>) {
        let (rules, fixed) = rules_and_session(None);
        let checked = check_client_event(&rules, &fixed, &event.to_string());
        let parse = |text: Option<String>| text.map(|text| serde_json::from_str::<Value>(&text).unwrap());
        (parse(checked.forward), parse(checked.refusal))
    }

    #[test]
    fn the_token_comes_from_the_key_subprotocol_beside_realtime() {
        let offered = "realtime, openai-insecure-api-key.eyJ.a.b, openai-agents-sdk.0.20.0";
        assert_eq!(token_in_protocols(offered), Some("eyJ.a.b"));
        assert_eq!(
            token_in_protocols("openai-insecure-api-key.eyJ.a.b"),
            None,
            "no realtime"
        );
        assert_eq!(token_in_protocols("realtime"), None);
        assert!(offers_realtime(offered) && offers_realtime("realtime") && !offers_realtime("realtime2"));
        assert!(is_relay("relay_00ab") && !is_relay("rtc_1"));
    }

    #[test]
    fn harmless_events_pass_as_sent_and_unknown_ones_are_refused() {
        for kind in [
            "input_audio_buffer.append",
            "conversation.item.create",
            "response.cancel",
        ] {
            let event = json!({"type": kind, "audio": "AAAA"});
            assert_eq!(check(event.clone()), (Some(event), None), "{kind}");
        }
        for kind in ["transcription_session.update", "session.delete", ""] {
            let (forward, refusal) = check(json!({"type": kind, "event_id": "evt_9"}));
            assert_eq!(forward, None, "{kind}");
            let refusal = refusal.unwrap();
            assert_eq!(refusal["type"], "error");
            assert_eq!(refusal["error"]["code"], "event_not_allowed");
            assert_eq!(refusal["error"]["event_id"], "evt_9");
        }
        let (rules, fixed) = rules_and_session(None);
        let garbage = check_client_event(&rules, &fixed, "{not json");
        assert!(garbage.forward.is_none() && garbage.refusal.is_some());
    }

    #[test]
    fn a_session_update_loses_the_fixed_fields_it_would_change_and_keeps_the_rest() {
        let update = json!({"type": "session.update", "event_id": "evt_1", "session": {
            "type": "realtime",
            "model": "gpt-realtime-2",
            "instructions": "Talk for an hour.",
            "max_output_tokens": "inf",
            "truncation": "disabled",
            "tools": [{"type": "function", "name": "f"}],
            "tool_choice": "auto",
            "output_modalities": ["audio"],
            "temperature": 1.2,
            "audio": {
                "input": {"format": {"type": "audio/pcm"}, "transcription": {"model": "gpt-4o-transcribe"}, "turn_detection": {"type": "semantic_vad"}},
                "output": {"voice": "alloy", "speed": 1.1},
            },
        }});
        let (forward, refusal) = check(update);
        let session = &forward.unwrap()["session"];
        assert_eq!(
            session,
            &json!({
                "type": "realtime",
                "tool_choice": "auto",
                "output_modalities": ["audio"],
                "audio": {
                    "input": {"format": {"type": "audio/pcm"}, "turn_detection": {"type": "semantic_vad"}},
                    "output": {"speed": 1.1},
                },
            })
        );
        let error = &refusal.unwrap()["error"];
        assert_eq!(error["code"], "fixed_session_field");
        assert_eq!(error["event_id"], "evt_1");
        for field in [
            "model",
            "instructions",
            "max_output_tokens",
            "truncation",
            "tools",
            "temperature",
            "audio.input.transcription",
            "audio.output.voice",
        ] {
            assert!(
                error["param"].as_str().unwrap().split(',').any(|f| f == field),
                "{field}"
            );
        }
    }

    #[test]
    fn a_session_update_that_keeps_the_fixed_values_passes_as_sent() {
        let (rules, fixed) = rules_and_session(Some("gpt-4o-mini-transcribe"));
        let update = json!({"type": "session.update", "session": {
            "model": fixed["model"], "instructions": fixed["instructions"], "max_output_tokens": 100,
            "truncation": fixed["truncation"], "tools": [], "prompt": null,
            "audio": {"input": {"transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"}},
                "output": {"voice": "cedar"}},
        }})
        .to_string();
        assert_eq!(
            check_client_event(&rules, &fixed, &update),
            Checked {
                forward: Some(update),
                refusal: None
            }
        );
        let odd = json!({"type": "session.update", "session": {"audio": "loud", "voice": "alloy"}});
        let checked = check_client_event(&rules, &fixed, &odd.to_string());
        assert_eq!(
            checked.forward.as_deref(),
            Some(r#"{"session":{},"type":"session.update"}"#)
        );
        let odd = json!({"type": "session.update", "session": {"audio": {"input": 1}}});
        let checked = check_client_event(&rules, &fixed, &odd.to_string());
        assert_eq!(
            checked.forward.as_deref(),
            Some(r#"{"session":{"audio":{"input":{}}},"type":"session.update"}"#)
        );
        let off = json!({"type": "session.update", "session": {"audio": {"input": {"transcription": null}}}});
        let checked = check_client_event(&rules, &fixed, &off.to_string());
        assert!(checked.refusal.is_some(), "the operator's transcription stays on");
    }

    #[test]
    fn a_response_create_asking_more_or_bringing_its_own_is_refused_whole() {
        let plain = json!({"type": "response.create"});
        assert_eq!(check(plain.clone()), (Some(plain), None));
        let within = json!({"type": "response.create", "response": {"max_output_tokens": 100, "conversation": "auto", "tools": []}});
        assert_eq!(check(within.clone()), (Some(within), None));
        for (response, param) in [
            (json!({"max_output_tokens": 101}), "max_output_tokens"),
            (json!({"max_output_tokens": "inf"}), "max_output_tokens"),
            (json!({"instructions": "Sing."}), "instructions"),
            (json!({"tools": [{"type": "function", "name": "f"}]}), "tools"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt"),
            (json!({"conversation": "none", "input": [{"type": "message"}]}), "input"),
            (json!({"audio": {"output": {"voice": "alloy"}}}), "audio.output.voice"),
        ] {
            let (forward, refusal) = check(json!({"type": "response.create", "response": response}));
            assert_eq!(forward, None, "{param}");
            let error = &refusal.unwrap()["error"];
            assert_eq!(error["code"], "response_not_allowed");
            assert_eq!(error["param"], param);
        }
    }

    #[test]
    fn a_hang_up_is_an_error_event_naming_the_reason() {
        let event: Value = serde_json::from_str(&ended_event(EndReason::Budget)).unwrap();
        assert_eq!(event["type"], "error");
        assert_eq!(event["error"]["code"], "budget");
    }
}
