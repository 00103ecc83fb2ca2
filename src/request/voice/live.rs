//! GPT-Live sessions (`POST /v1/live/sessions`): the session the operator fixes, what a
//! session holds, and what its end settles. Billed per second, not per token, so its bound is
//! its length: the proxy holds the session's longest length at the dearest rate before it is
//! created, hangs it up at that length, and settles the seconds it lasted.
//!
//! Sources (developers.openai.com, stored copies checked 2026-12-06): the Live API reference
//! (`live.create`: `{session: MediaSessionConfig, transport: {type: "webrtc", sdp}}` in,
//! `{session: {id}, transport: {type, sdp}}` out; the sideband at
//! `/v1/live/sessions/{id}/attach`), the models' pages (gpt-live-1 $0.05 a minute; gpt-live-1.1
//! active $0.05, standby $0.02, billed per second, backend Responses calls billed apart), the
//! voice cost guide (creating a WebRTC session bills 15 seconds, credited once it runs), and
//! Microsoft's GPT-Live reference (omitted delegation is client delegation; `session.closed`
//! and `session.usage.updated` carry the cumulative `usage.seconds`).

use serde_json::{json, Value};

use super::call::{CallMeter, CallRules, EndReason, Step};
use super::offer::{self, Offer};
use super::{chosen_model, CallPlan, VoiceSettings};
use crate::budget::plans::Plan;
use crate::budget::prices::{per_minute, Prices};
use crate::budget::quota::Spend;
use crate::error::ProxyError;

/// What creating a WebRTC session bills even if it never runs (OpenAI's cost guide).
pub const MIN_BILLED_MS: u64 = 15_000;
/// How long a session may outlive its end in the hold: the `session.close` takes a round trip,
/// and an unanswered close is settled this much later (the call object's grace).
pub const CLOSE_SLACK_MS: u64 = 10_000;

/// The events the page's data channel may send: muting, a response, closing. Not
/// `session.update` (delegation to a Responses model, billed in tokens), nor
/// `session.instructions.append` and the other appends (the operator's instructions), nor
/// `response.item.create`.
pub const PAGE_EVENTS: [&str; 4] = [
    "session.input_audio.mute",
    "session.input_audio.unmute",
    "response.create",
    "session.close",
];

/// The event that ends a Live session (its sideband has no hang-up endpoint).
pub const CLOSE_EVENT: &str = r#"{"type":"session.close"}"#;

/// Whether a model is a GPT-Live model (its own API, billed per second).
pub fn is_live(model: &str) -> bool {
    model.starts_with("gpt-live")
}

/// What a page asks `POST /v1/live/sessions` for: a bare `application/sdp` offer, or what the
/// official SDK's `client.live.create({session, transport})` sends (JSON), of whose `session`
/// only the model and voice are read: the operator's session replaces the rest.
pub fn read_request(content_type: &str, body: &[u8]) -> Result<Offer, ProxyError> {
    if content_type.to_ascii_lowercase().starts_with("application/sdp") {
        return offer::read(content_type, body);
    }
    let asked: Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |path: &str| asked.pointer(path).and_then(Value::as_str);
    let sdp = match text("/transport/type") {
        None | Some("webrtc") => text("/transport/sdp").unwrap_or_default(),
        Some(_) => "",
    };
    Ok(Offer {
        sdp: offer::sdp(sdp.as_bytes())?,
        model: text("/session/model").map(str::to_owned),
        voice: text("/session/audio/output/voice").map(str::to_owned),
    })
}

/// What a Live session's creation bills if it never runs: 15 seconds at its rate.
pub fn creation_charge(rules: &CallRules) -> Spend {
    Spend {
        tokens: 0,
        nano_usd: per_minute(MIN_BILLED_MS, rules.price.per_minute.unwrap_or(u64::MAX)),
    }
}

/// A Live session's sideband.
pub fn attach_url(upstream_base_url: &str, id: &str) -> String {
    format!("{upstream_base_url}/live/sessions/{id}/attach")
}

impl VoiceSettings {
    /// The Live session a page asks for (its `session.model`, or `?model=`; else the plan's
    /// first Live model; a voice of the operator's), if the plan allows it.
    pub fn plan_live(
        &self,
        plan: &Plan,
        prices: &Prices,
        upstream_base_url: &str,
        model: Option<&str>,
        voice: Option<&str>,
    ) -> Result<CallPlan, ProxyError> {
        let model = chosen_model(plan, model, true)?;
        let voice = self.offered_voice(voice)?;
        let price = prices.of(model).filter(|price| price.per_minute.is_some());
        let price = price.ok_or_else(|| ProxyError::misconfigured(format!("no price per minute for {model:?}")))?;
        let held_ms = self.max_session_seconds.saturating_mul(1000).max(MIN_BILLED_MS) + CLOSE_SLACK_MS;
        let hold = Spend {
            tokens: 0,
            nano_usd: per_minute(held_ms, price.per_minute.unwrap_or(u64::MAX)),
        };
        Ok(CallPlan {
            model: model.to_owned(),
            session: self.live_session(model, voice),
            turn: hold,
            hold,
            rules: CallRules {
                upstream_base_url: upstream_base_url.to_owned(),
                voices: self.voices.clone(),
                max_output_tokens: 0,
                price,
                transcription: None,
            },
        })
    }

    /// The session created upstream (`MediaSessionConfig`): the operator's model, instructions
    /// and voice, client delegation (no backend billed in tokens), and a data channel that
    /// cannot change any of them.
    pub fn live_session(&self, model: &str, voice: &str) -> Value {
        json!({
            "model": model,
            "instructions": self.instructions,
            "audio": { "output": { "voice": voice } },
            "delegation": { "type": "client" },
            "client": { "data_channel": { "allowed_client_events": PAGE_EVENTS } },
        })
    }
}

impl CallMeter {
    /// A Live session's event: usage is noted (settled at the end, the whole length being held
    /// from the start); a session whose fixed fields changed, that delegates to a Responses
    /// model, or that ran past its cap by OpenAI's count, is hung up.
    pub(super) fn on_live_event(&mut self, event: &Value) -> Step {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "session.usage.updated" | "session.closed" => {
                let seconds = event.pointer("/usage/seconds").and_then(Value::as_f64).unwrap_or(0.0);
                // Rounded up to the ms; a negative or absurd count saturates.
                let reported = (seconds * 1000.0).ceil() as u64;
                self.clock.reported_ms = self.clock.reported_ms.max(reported);
                let cap = self
                    .start
                    .ends_at_ms
                    .saturating_sub(self.start.live_since_ms.unwrap_or(0));
                match kind == "session.closed" {
                    // Ended upstream: the wall clock stops now, even if the socket lingers.
                    true => Step::HangUp(EndReason::Closed),
                    false if self.clock.reported_ms >= cap.max(0) as u64 => Step::HangUp(EndReason::MaxSeconds),
                    false => Step::Nothing,
                }
            }
            // A delegated Responses call, billed in tokens: the fixed client delegation did not
            // hold, and what it bills is not metered here.
            "response.event" => Step::HangUp(EndReason::SessionChanged),
            // The data channel may not send `session.update`; only a change that got past that
            // shows here (`session.started` is the session as the proxy created it).
            "session.updated" => {
                let session = event.get("session").unwrap_or(&Value::Null);
                let fixed = &self.start.session;
                // A field the snapshot leaves out (or null) is not a change.
                let changed = |path: &str| {
                    session
                        .pointer(path)
                        .is_some_and(|now| !now.is_null() && fixed.pointer(path) != Some(now))
                };
                let voice = session.pointer("/audio/output/voice").and_then(Value::as_str);
                if changed("/model")
                    || changed("/instructions")
                    || changed("/delegation/type")
                    || voice.is_some_and(|voice| !self.start.rules.voices.iter().any(|v| v == voice))
                {
                    return Step::HangUp(EndReason::SessionChanged);
                }
                Step::Nothing
            }
            _ => Step::Nothing,
        }
    }

    /// Notes that the session ended now (the proxy closed it, or saw it close): the wall clock
    /// stops here, not when the settlement lands.
    pub fn mark_end(&mut self, now_ms: i64) {
        self.clock.ended_ms.get_or_insert(now_ms);
    }

    /// A Live session's charge: the longer of what OpenAI reported and the wall clock from
    /// just before its creation to its end (the bill is above neither), at least the 15 seconds
    /// its creation bills, at the active rate (standby is cheaper).
    pub(super) fn live_settlement(&self, live_since_ms: i64, now_ms: i64) -> Spend {
        let ended = self.clock.ended_ms.unwrap_or(now_ms);
        let wall_ms = ended.saturating_sub(live_since_ms).max(0) as u64;
        let used_ms = wall_ms.max(self.clock.reported_ms).max(MIN_BILLED_MS);
        match self.start.rules.price.per_minute {
            Some(rate) => Spend {
                tokens: 0,
                nano_usd: per_minute(used_ms, rate),
            },
            None => self.start.hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::objects::user::VoiceSlots;
    use crate::request::voice::call::tests::start_of;

    const BASE: &str = "https://api.openai.com/v1";
    /// gpt-live-1's $0.05 a minute, in nano-USD.
    const PER_MINUTE: u64 = 50_000_000;

    fn settings(max_session_seconds: u64) -> VoiceSettings {
        VoiceSettings {
            instructions: "Be brief.".into(),
            voices: vec!["marin".into(), "cedar".into()],
            max_output_tokens: 500,
            context_tokens: 4_000,
            transcription_model: None,
            max_session_seconds,
            slots: VoiceSlots {
                max_concurrent: 1,
                per_day: 10,
            },
        }
    }

    fn config() -> Config {
        let vars = [
            ("VOICE_MODELS", "gpt-realtime-2.1-mini,gpt-live-1,gpt-live-1.1"),
            ("DAILY_BUDGET_USD", "1"),
        ];
        Config::for_tests(&vars).unwrap()
    }

    fn live_meter(since: i64, max_seconds: i64) -> CallMeter {
        let config = config();
        let plan = settings(600)
            .plan_live(&config.default_plan, &config.requests.prices, BASE, None, None)
            .unwrap();
        CallMeter::new(start_of(plan, since + max_seconds * 1000, Some(since)))
    }

    #[test]
    fn a_live_session_holds_its_longest_length_at_the_active_rate_with_the_operator_s_session() {
        let config = config();
        let (plan, prices) = (&config.default_plan, &config.requests.prices);
        let live = settings(600).plan_live(plan, prices, BASE, None, None).unwrap();
        assert_eq!(live.model, "gpt-live-1", "the plan's first Live model");
        // (600 s + 10 s of slack) at $0.05 a minute
        assert_eq!(live.hold.nano_usd, per_minute(610_000, PER_MINUTE));
        assert_eq!(live.hold.tokens, 0);
        assert_eq!(
            live.session,
            json!({
                "model": "gpt-live-1",
                "instructions": "Be brief.",
                "audio": {"output": {"voice": "marin"}},
                "delegation": {"type": "client"},
                "client": {"data_channel": {"allowed_client_events": PAGE_EVENTS}},
            })
        );
        let short = settings(10)
            .plan_live(plan, prices, BASE, Some("gpt-live-1.1"), Some("cedar"))
            .unwrap();
        assert_eq!(
            short.hold.nano_usd,
            per_minute(25_000, PER_MINUTE),
            "never less than the 15 s a creation bills"
        );
        assert_eq!(short.session["audio"]["output"]["voice"], "cedar");
        for model in ["gpt-realtime-2.1-mini", "gpt-live-2"] {
            assert!(matches!(
                settings(600).plan_live(plan, prices, BASE, Some(model), None),
                Err(ProxyError::ModelNotAllowed { .. })
            ));
        }
        assert!(matches!(
            settings(600).plan_live(plan, prices, BASE, None, Some("alloy")),
            Err(ProxyError::InvalidRequest { .. })
        ));
        assert!(!PAGE_EVENTS
            .iter()
            .any(|event| event.starts_with("session.update") || event.contains("append")));
        assert_eq!(creation_charge(&live.rules).nano_usd, per_minute(15_000, PER_MINUTE));
        assert_eq!(
            attach_url(BASE, "live_1"),
            "https://api.openai.com/v1/live/sessions/live_1/attach"
        );
    }

    #[test]
    fn a_live_request_is_the_sdk_s_json_or_a_bare_offer_and_only_its_model_voice_and_sdp_are_read() {
        let sdp = "v=0\r\ns=-\r\n";
        let json = json!({
            "session": {"model": "gpt-live-1", "instructions": "Talk for an hour.", "audio": {"output": {"voice": "cedar"}}},
            "transport": {"type": "webrtc", "sdp": sdp},
        });
        let asked = read_request("application/json", json.to_string().as_bytes()).unwrap();
        assert_eq!(
            asked,
            Offer {
                sdp: sdp.into(),
                model: Some("gpt-live-1".into()),
                voice: Some("cedar".into())
            }
        );
        let bare = read_request("application/sdp", sdp.as_bytes()).unwrap();
        assert_eq!((bare.sdp.as_str(), bare.model), (sdp, None));
        for body in [
            json!({"session": {"model": "gpt-live-1"}, "transport": {"type": "sip", "sdp": sdp}}).to_string(),
            json!({"session": {"model": "gpt-live-1"}, "transport": {"type": "webrtc", "sdp": "not sdp"}}).to_string(),
            "{".to_owned(),
        ] {
            assert!(matches!(
                read_request("application/json", body.as_bytes()),
                Err(ProxyError::InvalidRequest { .. })
            ));
        }
    }

    #[test]
    fn a_live_session_is_settled_at_the_longer_of_its_reported_and_wall_clock_length_and_at_least_15_s() {
        let mut meter = live_meter(1_000_000, 600);
        let usage = |seconds: f64| json!({"type": "session.closed", "usage": {"seconds": seconds}}).to_string();
        assert_eq!(meter.on_event(&usage(42.0)), Step::HangUp(EndReason::Closed));
        assert_eq!(
            meter.settlement(1_000_000 + 5_000).nano_usd,
            42 * PER_MINUTE / 60,
            "reported"
        );
        meter.mark_end(1_000_000 + 90_000);
        assert_eq!(
            meter.settlement(1_000_000 + 200_000).nano_usd,
            90 * PER_MINUTE / 60,
            "the wall clock stops at the end"
        );
        let mut fresh = live_meter(1_000_000, 600);
        assert_eq!(fresh.settlement(1_000_000 + 2_000).nano_usd, 15 * PER_MINUTE / 60);
        let mut fractional = live_meter(0, 600);
        fractional.on_event(&usage(20.0001));
        assert_eq!(fractional.settlement(0).nano_usd, per_minute(20_001, PER_MINUTE));
    }

    #[test]
    fn a_live_session_past_its_cap_or_with_a_changed_fixed_field_is_hung_up() {
        let mut meter = live_meter(0, 60);
        let updated =
            |seconds: u64| json!({"type": "session.usage.updated", "usage": {"seconds": seconds}}).to_string();
        assert_eq!(meter.on_event(&updated(59)), Step::Nothing);
        assert_eq!(meter.on_event(&updated(60)), Step::HangUp(EndReason::MaxSeconds));
        let session = meter.start.session.clone();
        let started = json!({"type": "session.started", "session": session}).to_string();
        assert_eq!(meter.on_event(&started), Step::Nothing);
        let delegated = json!({"type": "response.event", "response_event": {"type": "response.done"}}).to_string();
        assert_eq!(meter.on_event(&delegated), Step::HangUp(EndReason::SessionChanged));
        for (path, value) in [
            ("/instructions", json!("Talk for an hour.")),
            (
                "/delegation",
                json!({"type": "responses", "responses": {"model": "gpt-6-astra"}}),
            ),
            ("/audio/output/voice", json!("alloy")),
            ("/model", json!("gpt-live-1.1")),
        ] {
            let mut changed = session.clone();
            *changed.pointer_mut(path).unwrap() = value;
            let event = json!({"type": "session.updated", "session": changed}).to_string();
            assert_eq!(
                meter.on_event(&event),
                Step::HangUp(EndReason::SessionChanged),
                "{path}"
            );
        }
        let mut other_voice = session.clone();
        other_voice["audio"]["output"]["voice"] = json!("cedar");
        let event = json!({"type": "session.updated", "session": other_voice}).to_string();
        assert_eq!(meter.on_event(&event), Step::Nothing, "a voice of the operator's");
    }
}
