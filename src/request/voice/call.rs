//! A live call, as its object meters it: the messages the Worker sends the call object, and
//! what each sideband event asks the object to do. No I/O here: the object (edge) only
//! carries out the `Step`s.
//!
//! Event names and shapes: openai-node `src/resources/realtime/realtime.ts` (2026-08):
//! `response.created` and `response.done` carry a `response` (`RealtimeResponse`, whose
//! `usage` is `RealtimeResponseUsage`); `conversation.item.input_audio_transcription.completed`
//! carries its own `usage`; `session.created`/`session.updated` carry the whole `session`.

use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{deviation, response_over_cap};
use crate::budget::alerts::AlertRules;
use crate::budget::prices::Price;
use crate::budget::quota::{Limits, Spend};
use crate::budget::realtime::RealtimeUsage;
use crate::objects::user::PoolTerms;

/// How many times a page's change of a fixed field is reverted before the call is hung up: a
/// client that keeps changing it is not the operator's app.
pub const MAX_REVERTS: u32 = 3;

/// What the Worker sends a call object. Externally tagged (`{"start": {…}}`): an internally
/// tagged enum's deserializer buffers the whole message first, and costs wasm size for it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CallCommand {
    /// The call was created upstream: open its sideband and meter it.
    Start(Box<CallStart>),
    /// Relay a WebSocket session (`relay.rs`): answer the upgrade, open the session upstream.
    Relay(Box<CallStart>),
    /// End it now: the operator's, or (`banned`) a block or revocation.
    End { banned: bool },
}

/// Everything a call object needs to meter a call, stored so that an object that restarts
/// (evicted, or a deploy) can still hang it up and settle it.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallStart {
    /// The call's id upstream (`rtc_…`), the object's name.
    pub call: String,
    pub sub: String,
    /// The token's `iat`: a revocation after it ends the call.
    pub issued_at: Option<i64>,
    pub reservation_id: u64,
    pub limits: Limits,
    pub model: String,
    pub session: Value,
    pub turn: Spend,
    pub hold: Spend,
    /// When the call is hung up at the latest (`VOICE_MAX_SESSION_SECONDS`).
    pub ends_at_ms: i64,
    /// What the object checks and charges with, so that it parses no configuration of its
    /// own (only the key is read there): the operator's voices and output cap, the prices.
    pub rules: CallRules,
    /// The shared budgets the call's hold is leased from too, as a request's worst case is
    /// (none: a configuration without them), and where their alerts go when the call object
    /// tops its lease up. Flat fields: one more struct's deserializer costs wasm size.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolTerms>,
    #[serde(default)]
    pub pool_alerts: AlertRules,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
    /// A GPT-Live session (`live.rs`), created just after this time: billed per second from
    /// there. Left out for a Realtime call, so that a Realtime start reads as it always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_since_ms: Option<i64>,
}

/// The part of the operator's settings a live call is checked and charged with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallRules {
    pub upstream_base_url: String,
    pub voices: Vec<String>,
    pub max_output_tokens: u64,
    pub price: Price,
    pub transcription: Option<Price>,
}

/// Why a call ended, for the log and the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The budget cannot hold the next two turns' worst case.
    Budget,
    MaxSeconds,
    Operator,
    /// The user was blocked, or the call's token revoked.
    Revoked,
    /// The page kept changing a field the operator fixed.
    SessionChanged,
    /// The page asked a response above the output cap.
    ResponseOverCap,
    /// The sideband closed: the call ended upstream (the page hung up) or the socket broke.
    Closed,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Budget => "budget",
            EndReason::MaxSeconds => "max_seconds",
            EndReason::Operator => "operator",
            EndReason::Revoked => "revoked",
            EndReason::SessionChanged => "session_changed",
            EndReason::ResponseOverCap => "response_over_cap",
            EndReason::Closed => "closed",
        }
    }
}

/// What the object does about one sideband event.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Nothing,
    /// Charge this to the user's budget now, and top the hold up.
    Charge(Spend),
    /// Send this client event upstream (a `session.update` restoring the fixed session).
    Send(Value),
    HangUp(EndReason),
}

/// What a GPT-Live session reported and when the proxy ended it (`live.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveClock {
    /// The highest cumulative `usage.seconds` reported, in ms.
    pub(super) reported_ms: u64,
    /// When the proxy closed the session, or saw it close.
    pub(super) ended_ms: Option<i64>,
}

/// A live call's meter.
#[derive(Debug, Clone, PartialEq)]
pub struct CallMeter {
    /// Shared, not copied, with the object's handlers.
    pub start: Rc<CallStart>,
    /// Responses created and not yet done: each is settled at a turn's worst case if the
    /// call ends before its `response.done`.
    in_flight: u64,
    reverts: u32,
    /// What was charged, for the log.
    pub charged: Spend,
    /// A usage above a turn's worst case was charged (as reported): a bound did not hold (a
    /// page's change that landed before its revert, or a cap OpenAI does not keep).
    pub overran: bool,
    /// A Live session's reported length and end.
    pub(super) clock: LiveClock,
}

impl CallMeter {
    pub fn new(start: CallStart) -> Self {
        Self {
            start: Rc::new(start),
            in_flight: 0,
            reverts: 0,
            charged: Spend::default(),
            overran: false,
            clock: LiveClock::default(),
        }
    }

    /// The step one sideband event asks for. An event that is not JSON or not known asks
    /// for nothing: only the events named here cost money or change what is fixed.
    pub fn on_event(&mut self, text: &str) -> Step {
        let rules = &self.start.rules;
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return Step::Nothing;
        };
        if self.start.live_since_ms.is_some() {
            return self.on_live_event(&event);
        }
        let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "response.created" => {
                self.in_flight = self.in_flight.saturating_add(1);
                let response = event.get("response").unwrap_or(&Value::Null);
                if response_over_cap(rules.max_output_tokens, response) {
                    return Step::HangUp(EndReason::ResponseOverCap);
                }
                Step::Nothing
            }
            "response.done" => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let usage = event.get("response").and_then(|response| response.get("usage"));
                // A response without usage is charged its worst case.
                let spent = usage
                    .and_then(RealtimeUsage::read)
                    .map_or(self.start.turn, |usage| usage.spend(&rules.price));
                self.charge(spent)
            }
            "conversation.item.input_audio_transcription.completed" => {
                let usage = event.get("usage").unwrap_or(&Value::Null);
                let spent = match (RealtimeUsage::read(usage), &rules.transcription) {
                    (Some(usage), Some(price)) => usage.spend(price),
                    // Billed by duration, or a transcription the operator did not set up:
                    // charged a whole turn, which holds any transcription's worst case.
                    (Some(_), None) | (None, _) => self.start.turn,
                };
                self.charge(spent)
            }
            "session.created" | "session.updated" => {
                let session = event.get("session").unwrap_or(&Value::Null);
                if deviation(&rules.voices, &self.start.session, session).is_none() {
                    return Step::Nothing;
                }
                // OpenAI's own first session (the relay's, before the operator's update
                // lands) is reverted but not held against the page.
                self.reverts += u32::from(kind == "session.updated");
                if self.reverts > MAX_REVERTS {
                    return Step::HangUp(EndReason::SessionChanged);
                }
                Step::Send(json!({ "type": "session.update", "session": self.start.session }))
            }
            _ => Step::Nothing,
        }
    }

    fn charge(&mut self, spent: Spend) -> Step {
        self.charged = self.charged.plus(spent);
        let turn = self.start.turn;
        self.overran |= spent.tokens > turn.tokens || spent.nano_usd > turn.nano_usd;
        Step::Charge(spent)
    }

    /// What the call's end (`now_ms`) settles besides what was charged: each response still
    /// under way at its worst case (none is billed past it while the hold covers it); a Live
    /// session's seconds.
    pub fn settlement(&mut self, now_ms: i64) -> Spend {
        if let Some(since) = self.start.live_since_ms {
            let spent = self.live_settlement(since, now_ms);
            self.overran |= spent.nano_usd > self.start.hold.nano_usd;
            return spent;
        }
        Spend {
            tokens: self.start.turn.tokens.saturating_mul(self.in_flight),
            nano_usd: self.start.turn.nano_usd.saturating_mul(self.in_flight),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::budget::prices::Prices;
    use crate::objects::user::VoiceSlots;

    use crate::request::voice::{CallPlan, VoiceSettings};

    fn voice() -> VoiceSettings {
        VoiceSettings {
            instructions: "Be brief.".into(),
            voices: vec!["marin".into()],
            max_output_tokens: 100,
            context_tokens: 1_000,
            transcription_model: None,
            max_session_seconds: 60,
            slots: VoiceSlots {
                max_concurrent: 1,
                per_day: 1,
            },
        }
    }

    /// A call as the Worker hands it over (`edge::voice::hand_over`).
    pub(in crate::request::voice) fn start_of(
        call: CallPlan,
        ends_at_ms: i64,
        live_since_ms: Option<i64>,
    ) -> CallStart {
        CallStart {
            call: "rtc_1".into(),
            sub: "alice".into(),
            issued_at: Some(1),
            reservation_id: 0,
            limits: Limits {
                rate: None,
                max_streams: None,
                daily_tokens: None,
                daily_nano_usd: None,
            },
            model: call.model,
            session: call.session,
            turn: call.turn,
            hold: call.hold,
            ends_at_ms,
            rules: call.rules,
            pools: vec![],
            pool_alerts: AlertRules::default(),
            alert_webhook: None,
            live_since_ms,
        }
    }

    fn meter() -> CallMeter {
        let price = Prices::parse(None).unwrap().of("gpt-realtime-2.1-mini").unwrap();
        let voice = voice();
        let turn = voice.turn_limits().worst(&price, None);
        let call = CallPlan {
            model: "gpt-realtime-2.1-mini".into(),
            session: voice.session("gpt-realtime-2.1-mini", "marin"),
            turn,
            hold: turn.plus(turn),
            rules: CallRules {
                upstream_base_url: "https://api.openai.com/v1".into(),
                voices: voice.voices.clone(),
                max_output_tokens: voice.max_output_tokens,
                price,
                transcription: None,
            },
        };
        CallMeter::new(start_of(call, 0, None))
    }

    #[test]
    fn a_response_done_is_charged_its_usage_and_one_without_usage_its_worst_case() {
        let mut meter = meter();
        let done = json!({"type": "response.done", "response": {"usage": {
            "input_tokens": 10, "output_tokens": 5, "total_tokens": 15,
            "input_token_details": {"audio_tokens": 10}, "output_token_details": {"audio_tokens": 5}
        }}});
        assert_eq!(
            meter.on_event(&done.to_string()),
            Step::Charge(Spend {
                tokens: 15,
                nano_usd: 10 * 10_000 + 5 * 20_000
            })
        );
        let bare = json!({"type": "response.done", "response": {}}).to_string();
        assert_eq!(meter.on_event(&bare), Step::Charge(meter.start.turn));
        assert!(!meter.overran, "a turn's worst case is no overrun");
        let huge = json!({"type": "response.done", "response": {"usage": {"output_tokens": 100_000}}});
        meter.on_event(&huge.to_string());
        assert!(meter.overran);
        assert_eq!(meter.on_event("not json"), Step::Nothing);
        assert_eq!(meter.on_event(r#"{"type":"response.audio.delta"}"#), Step::Nothing);
    }

    #[test]
    fn a_response_under_way_at_the_end_is_settled_at_its_worst_case() {
        let mut meter = meter();
        let created = json!({"type": "response.created", "response": {"max_output_tokens": 100}}).to_string();
        assert_eq!(meter.on_event(&created), Step::Nothing);
        assert_eq!(meter.settlement(0), meter.start.turn);
        meter.on_event(r#"{"type":"response.done","response":{"usage":{"input_tokens":1}}}"#);
        assert_eq!(meter.settlement(0), Spend::default());
    }

    #[test]
    fn a_response_asking_more_output_hangs_up_and_a_changed_session_is_reverted_then_hung_up() {
        let mut meter = meter();
        let greedy = json!({"type": "response.created", "response": {"max_output_tokens": "inf"}}).to_string();
        assert_eq!(meter.on_event(&greedy), Step::HangUp(EndReason::ResponseOverCap));
        let mut session = meter.start.session.clone();
        session["max_output_tokens"] = json!(4096);
        let created = json!({"type": "session.created", "session": session}).to_string();
        assert!(
            matches!(meter.on_event(&created), Step::Send(_)),
            "OpenAI's defaults reverted"
        );
        let updated = json!({"type": "session.updated", "session": session}).to_string();
        for _ in 0..MAX_REVERTS {
            let Step::Send(revert) = meter.on_event(&updated) else {
                panic!("not reverted");
            };
            assert_eq!(revert["type"], "session.update");
            assert_eq!(revert["session"]["max_output_tokens"], 100);
        }
        assert_eq!(meter.on_event(&updated), Step::HangUp(EndReason::SessionChanged));
        let fixed = json!({"type": "session.updated", "session": meter.start.session}).to_string();
        assert_eq!(meter.on_event(&fixed), Step::Nothing);
    }

    #[test]
    fn a_transcription_is_charged_at_its_model_s_price_or_a_whole_turn() {
        let mut meter = meter();
        let heard = json!({"type": "conversation.item.input_audio_transcription.completed",
            "usage": {"type": "duration", "seconds": 4}})
        .to_string();
        assert_eq!(meter.on_event(&heard), Step::Charge(meter.start.turn));
        let mut start = Rc::try_unwrap(meter.start).unwrap();
        start.rules.transcription = Some(start.rules.price);
        let mut meter = CallMeter::new(start);
        let tokens = json!({"type": "conversation.item.input_audio_transcription.completed",
            "usage": {"type": "tokens", "input_tokens": 20, "output_tokens": 4, "total_tokens": 24,
                "input_token_details": {"audio_tokens": 20}}})
        .to_string();
        assert_eq!(
            meter.on_event(&tokens),
            Step::Charge(Spend {
                tokens: 24,
                nano_usd: 20 * 10_000 + 4 * 20_000
            })
        );
    }
}
