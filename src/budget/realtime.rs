//! Realtime voice calls in money: what a `response.done` usage (or an input transcription's)
//! costs, and the worst case of one turn, which bounds what a live call holds.
//!
//! The usage object (openai-node `RealtimeResponseUsage`, 2026-08): `input_tokens`,
//! `output_tokens`, `total_tokens`; `input_token_details` {`text_tokens`, `audio_tokens`,
//! `image_tokens`, `cached_tokens`, `cached_tokens_details` {`text_tokens`, `audio_tokens`,
//! `image_tokens`}}; `output_token_details` {`text_tokens`, `audio_tokens`}. Cached tokens are a
//! subset of input tokens. A transcription's `usage` of type `tokens` has the same names
//! (without output details).

use serde_json::Value;

use crate::budget::prices::{priced, Price};
use crate::budget::quota::Spend;

/// Token counts of one usage report, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RealtimeUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub text_in: u64,
    pub audio_in: u64,
    pub image_in: u64,
    pub cached_text: u64,
    pub cached_audio: u64,
    pub cached_image: u64,
    pub text_out: u64,
    pub audio_out: u64,
}

/// What one turn of a call may cost at most: a response reads at most `context_tokens` and
/// writes at most `max_output_tokens`; the user's audio before it is transcribed in at most
/// `transcription_tokens` (0: no transcription).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnLimits {
    pub context_tokens: u64,
    pub max_output_tokens: u64,
    pub transcription_tokens: u64,
}

impl RealtimeUsage {
    /// Reads a usage object; `None` when it is not one (a `duration` transcription usage,
    /// which the caller charges at the turn's worst case).
    pub fn read(usage: &Value) -> Option<Self> {
        if !usage.is_object() || usage.get("type").is_some_and(|kind| kind != "tokens") {
            return None;
        }
        let count = |value: &Value, name: &str| value.get(name).and_then(Value::as_u64).unwrap_or(0);
        let input = usage.get("input_token_details").unwrap_or(&Value::Null);
        let cached = input.get("cached_tokens_details").unwrap_or(&Value::Null);
        let output = usage.get("output_token_details").unwrap_or(&Value::Null);
        Some(Self {
            input_tokens: count(usage, "input_tokens"),
            output_tokens: count(usage, "output_tokens"),
            total_tokens: count(usage, "total_tokens"),
            text_in: count(input, "text_tokens"),
            audio_in: count(input, "audio_tokens"),
            image_in: count(input, "image_tokens"),
            cached_text: count(cached, "text_tokens"),
            cached_audio: count(cached, "audio_tokens"),
            cached_image: count(cached, "image_tokens"),
            text_out: count(output, "text_tokens"),
            audio_out: count(output, "audio_tokens"),
        })
    }

    /// Its charge at `price`: each kind at its own price (cached text and audio, each at most
    /// its kind's count, at the cached prices). Images, and input tokens the details do not
    /// explain, at the dearest input price; unexplained output at the dearest output price;
    /// tokens only the total counts at the dearest of all. Never less than OpenAI bills, so
    /// long as the prices are right.
    pub fn spend(&self, price: &Price) -> Spend {
        let (audio, audio_cached, audio_out) = price.audio_rates();
        let (dearest_in, dearest_out) = (dearest_input(price), dearest_output(price));
        let cached_text = self.cached_text.min(self.text_in);
        let cached_audio = self.cached_audio.min(self.audio_in);
        let explained_in = self.text_in.saturating_add(self.audio_in).saturating_add(self.image_in);
        let explained_out = self.text_out.saturating_add(self.audio_out);
        let input = self.input_tokens.max(explained_in);
        let output = self.output_tokens.max(explained_out);
        let counted = input.saturating_add(output);
        let only_in_total = self.total_tokens.saturating_sub(counted);
        let nano_usd = priced(&[
            (self.text_in - cached_text, price.input),
            (cached_text, price.cached_input),
            (self.audio_in - cached_audio, audio),
            (cached_audio, audio_cached),
            (self.image_in.saturating_add(input - explained_in), dearest_in),
            (self.text_out, price.output),
            (self.audio_out, audio_out),
            (output - explained_out, dearest_out),
            (only_in_total, dearest_in.max(dearest_out)),
        ]);
        Spend {
            tokens: counted.max(self.total_tokens),
            nano_usd,
        }
    }
}

/// The most one input token can cost: text, audio or image, cached or not.
fn dearest_input(price: &Price) -> u64 {
    let (audio, audio_cached, _) = price.audio_rates();
    [price.image_input, price.image_cached_input]
        .into_iter()
        .flatten()
        .fold(
            price.input.max(price.cached_input).max(audio).max(audio_cached),
            u64::max,
        )
}

/// The most one output token can cost: text or audio.
fn dearest_output(price: &Price) -> u64 {
    price.output.max(price.audio_rates().2)
}

impl TurnLimits {
    /// The worst case of one turn: the response's context cap at the dearest input price and
    /// its output cap at the dearest output price, plus the transcription's cap in and out at
    /// the transcription model's dearest prices.
    pub fn worst(&self, model: &Price, transcription: Option<&Price>) -> Spend {
        let response = Spend {
            tokens: self.context_tokens.saturating_add(self.max_output_tokens),
            nano_usd: priced(&[
                (self.context_tokens, dearest_input(model)),
                (self.max_output_tokens, dearest_output(model)),
            ]),
        };
        let heard = match transcription {
            Some(price) if self.transcription_tokens > 0 => Spend {
                tokens: self.transcription_tokens.saturating_mul(2),
                nano_usd: priced(&[
                    (self.transcription_tokens, dearest_input(price)),
                    (self.transcription_tokens, dearest_output(price)),
                ]),
            },
            Some(_) | None => Spend::default(),
        };
        response.plus(heard)
    }
}

/// What a live call holds: two turns' worst case. OpenAI runs one response at a time in a
/// session, so the response that may start between one `response.done` and the hang-up
/// (a page may ask for one over its data channel at any moment) is covered too.
pub fn call_hold(turn: Spend) -> Spend {
    turn.plus(turn)
}

impl Spend {
    pub fn plus(self, other: Spend) -> Spend {
        Spend {
            tokens: self.tokens.saturating_add(other.tokens),
            nano_usd: self.nano_usd.saturating_add(other.nano_usd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::prices::Prices;
    use serde_json::json;

    fn mini() -> Price {
        Prices::parse(None).unwrap().of("gpt-realtime-2.1-mini").unwrap()
    }

    #[test]
    fn a_response_done_usage_is_charged_by_kind_with_cached_as_a_subset_of_input() {
        let usage = json!({
            "total_tokens": 821, "input_tokens": 789, "output_tokens": 32,
            "input_token_details": {
                "text_tokens": 313, "audio_tokens": 476, "cached_tokens": 640,
                "cached_tokens_details": {"text_tokens": 256, "audio_tokens": 384}
            },
            "output_token_details": {"text_tokens": 9, "audio_tokens": 23}
        });
        let spend = RealtimeUsage::read(&usage).unwrap().spend(&mini());
        // Nano-USD per token: text 600, cached text 60, audio 10,000, cached audio 300, text
        // out 2,400, audio out 20,000.
        let nano_usd = 57 * 600 + 256 * 60 + 92 * 10_000 + 384 * 300 + 9 * 2_400 + 23 * 20_000;
        assert_eq!(spend, Spend { tokens: 821, nano_usd });
    }

    #[test]
    fn tokens_the_details_do_not_explain_are_charged_at_the_dearest_price() {
        let bare =
            RealtimeUsage::read(&json!({"input_tokens": 100, "output_tokens": 10, "total_tokens": 120})).unwrap();
        // 100 × 10 (audio in) + 10 × 20 (audio out) + 10 × 20 (only in the total)
        assert_eq!(
            bare.spend(&mini()),
            Spend {
                tokens: 120,
                nano_usd: 1_400_000
            }
        );
        let images =
            RealtimeUsage::read(&json!({"input_tokens": 5, "input_token_details": {"image_tokens": 5}})).unwrap();
        assert_eq!(
            images.spend(&mini()).nano_usd,
            50_000,
            "images at the dearest input price"
        );
        let lying_cache = RealtimeUsage::read(&json!({
            "input_tokens": 10,
            "input_token_details": {"audio_tokens": 10, "cached_tokens_details": {"audio_tokens": 50}}
        }))
        .unwrap();
        assert_eq!(
            lying_cache.spend(&mini()).nano_usd,
            3_000,
            "at most the audio tokens are cached"
        );
    }

    #[test]
    fn a_duration_transcription_usage_is_not_a_token_usage() {
        assert_eq!(RealtimeUsage::read(&json!({"type": "duration", "seconds": 3})), None);
        assert_eq!(RealtimeUsage::read(&json!(null)), None);
        let heard = RealtimeUsage::read(&json!({
            "type": "tokens", "input_tokens": 30, "output_tokens": 8, "total_tokens": 38,
            "input_token_details": {"audio_tokens": 30}
        }))
        .unwrap();
        assert_eq!(
            heard.spend(&mini()),
            Spend {
                tokens: 38,
                nano_usd: 300_000 + 160_000
            }
        );
    }

    #[test]
    fn a_turn_s_worst_case_is_its_caps_at_the_dearest_prices() {
        let limits = TurnLimits {
            context_tokens: 1_000,
            max_output_tokens: 100,
            transcription_tokens: 50,
        };
        assert_eq!(
            limits.worst(&mini(), None),
            Spend {
                tokens: 1_100,
                nano_usd: 1_000 * 10_000 + 100 * 20_000
            }
        );
        assert_eq!(
            limits.worst(&mini(), Some(&mini())),
            Spend {
                tokens: 1_200,
                nano_usd: 12_000_000 + 50 * 10_000 + 50 * 20_000
            }
        );
        assert_eq!(
            call_hold(Spend { tokens: 3, nano_usd: 5 }),
            Spend {
                tokens: 6,
                nano_usd: 10
            }
        );
    }

    #[test]
    fn no_usage_within_the_caps_costs_more_than_the_turn_s_worst_case() {
        let limits = TurnLimits {
            context_tokens: 1_000,
            max_output_tokens: 100,
            transcription_tokens: 0,
        };
        let worst = limits.worst(&mini(), None);
        for (text_in, audio_in, image_in, text_out) in [
            (1_000, 0, 0, 0),
            (0, 1_000, 0, 100),
            (0, 0, 1_000, 50),
            (400, 600, 0, 100),
        ] {
            let usage = RealtimeUsage {
                input_tokens: text_in + audio_in + image_in,
                output_tokens: 100,
                total_tokens: 1_100,
                text_in,
                audio_in,
                image_in,
                text_out,
                audio_out: 100 - text_out,
                ..RealtimeUsage::default()
            };
            let spend = usage.spend(&mini());
            assert!(
                spend.nano_usd <= worst.nano_usd && spend.tokens <= worst.tokens,
                "{usage:?}"
            );
        }
    }
}
