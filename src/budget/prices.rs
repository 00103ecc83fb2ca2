//! Money: model prices and what a request costs in dollars.
//!
//! Amounts are whole nano-dollars (1e-9 USD) in a `u64`: exact (no float ever touches a
//! charge), up to $18 billion, and fine enough that ten tokens of the cheapest model
//! ($0.10 per million: 1,000 nano-USD) are never rounded to zero. A price is nano-USD per
//! million tokens, so every published price (at most 9 decimals of a dollar) is exact too.
//! A charge rounds up, never down: the operator never pays for what was not counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::cost::Cost;
use crate::budget::money::{parse_usd, MAX_USD};
use crate::budget::usage::Usage;
use crate::error::ProxyError;

const TOKENS_PER_PRICE_UNIT: u128 = 1_000_000;

/// A model's price, in nano-USD per million tokens (or per minute, per million characters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: u64,
    /// Prompt tokens OpenAI reports as cached (`prompt_tokens_details.cached_tokens`).
    pub cached_input: u64,
    pub output: u64,
    /// Audio tokens read (transcription), when priced apart from text input.
    pub audio_input: Option<u64>,
    /// Audio tokens written (speech), when priced apart from text output.
    pub audio_output: Option<u64>,
    /// Per minute of audio (`usage: {type: "duration", seconds}`).
    pub per_minute: Option<u64>,
    /// Per million characters of speech input (tts-1, tts-1-hd).
    pub per_million_characters: Option<u64>,
}

/// Default prices (USD per 1M tokens: input, cached input, output), standard tier, from
/// OpenAI's pricing page (https://platform.openai.com/docs/pricing), checked 2026-11-24.
/// Exact names only: a dated snapshot may cost something else (gpt-4o-2024-05-13 did), so it
/// needs its own `MODEL_PRICES` entry.
const DEFAULT_PRICES: [(&str, &str, &str, &str); 5] = [
    ("gpt-4o-mini", "0.15", "0.075", "0.60"),
    ("gpt-4o", "2.50", "1.25", "10.00"),
    ("gpt-4.1", "2.00", "0.50", "8.00"),
    ("gpt-4.1-mini", "0.40", "0.10", "1.60"),
    ("gpt-4.1-nano", "0.10", "0.025", "0.40"),
];

/// Audio models' defaults, in `MODEL_PRICES`' own form (USD), from each model's page under
/// https://developers.openai.com/api/docs/models/ (checked 2026-12-06): transcription per
/// minute or per 1M audio tokens, speech per 1M characters or per 1M tokens.
const DEFAULT_AUDIO_PRICES: &str = r#"{
"gpt-transcribe":{"input":0,"output":0,"per_minute":0.0045},
"whisper-1":{"input":0,"output":0,"per_minute":0.006},
"gpt-4o-transcribe":{"input":2.50,"audio_input":2.50,"output":10.00},
"gpt-4o-mini-transcribe":{"input":1.25,"audio_input":1.25,"output":5.00},
"gpt-4o-mini-tts":{"input":0.60,"output":0,"audio_output":12.00},
"tts-1":{"input":0,"output":0,"per_million_characters":15.00},
"tts-1-hd":{"input":0,"output":0,"per_million_characters":30.00}}"#;

/// Every model's price: the defaults, overridden model by model by `MODEL_PRICES`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    by_model: BTreeMap<String, Price>,
}

impl Prices {
    /// The defaults with `model_prices` (the JSON of `MODEL_PRICES`, if set) over them.
    pub fn parse(model_prices: Option<&str>) -> Result<Prices, ProxyError> {
        let mut by_model = BTreeMap::new();
        for (model, input, cached, output) in DEFAULT_PRICES {
            let price = |usd: &str| parse_usd(usd).unwrap_or(u64::MAX);
            by_model.insert(
                model.to_owned(),
                Price {
                    input: price(input),
                    cached_input: price(cached),
                    output: price(output),
                    ..Price::default()
                },
            );
        }
        let invalid = |why: String| ProxyError::misconfigured(format!("MODEL_PRICES: {why}"));
        for raw in std::iter::once(DEFAULT_AUDIO_PRICES).chain(model_prices) {
            let Ok(Value::Object(models)) = serde_json::from_str::<Value>(raw) else {
                return Err(invalid(
                    r#"not a JSON object like {"gpt-4o-mini":{"input":0.15,"output":0.6,"cached_input":0.075}}"#.into(),
                ));
            };
            for (model, entry) in models {
                let price = parse_price(&entry).map_err(|why| invalid(format!("{model:?}: {why}")))?;
                by_model.insert(model, price);
            }
        }
        Ok(Prices { by_model })
    }

    pub fn of(&self, model: &str) -> Option<Price> {
        self.by_model.get(model).copied()
    }
}

/// `{"input": USD, "output": USD, "cached_input": USD (optional, else the input price)}`.
fn parse_price(entry: &Value) -> Result<Price, String> {
    let Value::Object(fields) = entry else {
        return Err("must be an object with `input` and `output` (USD per 1M tokens)".into());
    };
    if let Some(unknown) = fields.keys().find(|k| {
        !matches!(
            k.as_str(),
            "input"
                | "output"
                | "cached_input"
                | "audio_input"
                | "audio_output"
                | "per_minute"
                | "per_million_characters"
        )
    }) {
        return Err(format!(
            "unknown field `{unknown}` (expected input, output, cached_input, audio_input, audio_output, per_minute, per_million_characters)"
        ));
    }
    let usd = |name: &str| -> Result<Option<u64>, String> {
        fields
            .get(name)
            .map(|value| {
                usd_value(value)
                    .ok_or_else(|| format!("`{name}` is not an amount of USD (0 to {MAX_USD}, at most 9 decimals)"))
            })
            .transpose()
    };
    let input = usd("input")?.ok_or("`input` is required")?;
    let output = usd("output")?.ok_or("`output` is required")?;
    Ok(Price {
        input,
        cached_input: usd("cached_input")?.unwrap_or(input),
        output,
        audio_input: usd("audio_input")?,
        audio_output: usd("audio_output")?,
        per_minute: usd("per_minute")?,
        per_million_characters: usd("per_million_characters")?,
    })
}

/// A JSON number or a string holding one, as nano-USD.
pub fn usd_value(value: &Value) -> Option<u64> {
    match value {
        // serde_json prints a parsed f64 in its shortest exact form ("0.15"), so the decimal
        // digits the operator wrote are the ones read here.
        Value::Number(number) => parse_usd(&number.to_string()),
        Value::String(text) => parse_usd(text.trim()),
        Value::Null | Value::Bool(_) | Value::Array(_) | Value::Object(_) => None,
    }
}

impl Price {
    /// `input`, `cached` and `output` tokens at this price, rounded up to the next nano-USD.
    fn of(&self, input: u64, cached: u64, output: u64) -> u64 {
        let micro = u128::from(input) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input)
            + u128::from(output) * u128::from(self.output);
        u64::try_from(micro.div_ceil(TOKENS_PER_PRICE_UNIT)).unwrap_or(u64::MAX)
    }

    /// The dearer of the two input prices: what an input token can cost at most.
    fn worst_input(&self) -> Price {
        Price {
            input: self.input.max(self.cached_input),
            ..*self
        }
    }

    /// The worst case of `cost` in dollars: every input-side token of the token reserve (the
    /// input for each read, images, hosted tool fees) at the input price, the output cap at
    /// the output price.
    pub fn worst_case(&self, cost: &Cost) -> u64 {
        self.worst_input().of(cost.input_side_tokens(), 0, cost.output_tokens)
    }

    /// What a usage report costs: uncached prompt tokens at the input price, cached ones at
    /// the cached price, completion tokens (reasoning included) at the output price; audio
    /// tokens at the audio prices (else the text ones), audio seconds per minute. Tokens a
    /// report counts in its total but in neither part are charged at the dearest price.
    pub fn charge(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let audio_in = usage.audio_input_tokens.min(usage.prompt_tokens - cached);
        let audio_out = usage.audio_output_tokens.min(usage.completion_tokens);
        let parts = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        let unexplained = usage.total().saturating_sub(parts);
        let uncached = usage.prompt_tokens - cached - audio_in;
        self.of(uncached, cached, usage.completion_tokens - audio_out)
            .saturating_add(per_million(unexplained, self.dearest()))
            .saturating_add(per_million(audio_in, self.audio_input.unwrap_or(self.input)))
            .saturating_add(per_million(audio_out, self.audio_output.unwrap_or(self.output)))
            .saturating_add(
                self.per_minute
                    .map_or(0, |price| per_minute(usage.duration_millis.unwrap_or(0), price)),
            )
    }

    /// Whether `charge` can price `usage`: seconds of audio need a price per minute, and a
    /// model priced per minute is billed by duration, which a report in tokens does not give.
    /// A report this price cannot read is charged its whole reservation.
    pub fn reads(&self, usage: &Usage) -> bool {
        usage.duration_millis.is_some() == self.per_minute.is_some()
    }

    /// The dearest price per token of any kind.
    pub fn dearest(&self) -> u64 {
        [self.input, self.output, self.cached_input]
            .into_iter()
            .chain(self.audio_input)
            .chain(self.audio_output)
            .max()
            .unwrap_or(0)
    }
}

const MILLIS_PER_MINUTE: u128 = 60_000;

/// `count` units at `price` per `unit`, rounded up to the next nano-USD.
pub fn per_unit(count: u64, price: u64, unit: u128) -> u64 {
    u64::try_from((u128::from(count) * u128::from(price)).div_ceil(unit)).unwrap_or(u64::MAX)
}

/// `tokens` (or characters) at `price` per million.
pub fn per_million(tokens: u64, price: u64) -> u64 {
    per_unit(tokens, price, TOKENS_PER_PRICE_UNIT)
}

/// `millis` of audio at `price` per minute.
pub fn per_minute(millis: u64, price: u64) -> u64 {
    per_unit(millis, price, MILLIS_PER_MINUTE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::money::NANO_PER_USD;

    #[test]
    fn dollars_are_read_exactly_or_not_at_all() {
        assert_eq!(parse_usd("0.15"), Some(150_000_000));
        assert_eq!(parse_usd("12"), Some(12 * NANO_PER_USD));
        assert_eq!(parse_usd("0.000000001"), Some(1));
        assert_eq!(parse_usd("1000000000"), Some(MAX_USD * NANO_PER_USD));
        for bad in [
            "",
            "-1",
            "1e3",
            "0.0000000001",
            "1.",
            ".5",
            "abc",
            "1000000001",
            "1,5",
            " 1",
        ] {
            assert_eq!(parse_usd(bad), None, "{bad:?}");
        }
        assert_eq!(usd_value(&serde_json::json!(0.075)), Some(75_000_000));
        assert_eq!(usd_value(&serde_json::json!("2.5")), Some(2_500_000_000));
        assert_eq!(usd_value(&serde_json::json!(true)), None);
    }

    #[test]
    fn ten_tokens_of_the_cheapest_model_cost_more_than_nothing() {
        let nano = Prices::parse(None).unwrap().of("gpt-4.1-nano").unwrap();
        assert_eq!(nano.of(10, 0, 0), 1_000);
        assert_eq!(nano.of(1, 0, 0), 100);
        let cheap = Price {
            input: 1,
            cached_input: 1,
            output: 1,
            ..Price::default()
        };
        assert_eq!(cheap.of(1, 0, 0), 1, "a fraction of a nano-dollar is charged as one");
    }

    #[test]
    fn model_prices_override_the_defaults_model_by_model() {
        let prices = Prices::parse(Some(
            r#"{"gpt-4o-mini":{"input":1,"output":"2"},"o3":{"input":2,"output":8,"cached_input":0.5}}"#,
        ))
        .unwrap();
        assert_eq!(
            prices.of("gpt-4o-mini"),
            Some(Price {
                input: NANO_PER_USD,
                cached_input: NANO_PER_USD,
                output: 2 * NANO_PER_USD,
                ..Price::default()
            }),
            "cached input defaults to the input price"
        );
        assert_eq!(prices.of("o3").unwrap().cached_input, 500_000_000);
        assert_eq!(prices.of("gpt-4.1").unwrap().output, 8 * NANO_PER_USD, "defaults stay");
        assert_eq!(
            prices.of("gpt-4o-mini-2024-07-18"),
            None,
            "snapshots are priced by name"
        );
        for bad in [
            "[]",
            r#"{"m":{"input":1}}"#,
            r#"{"m":{"input":-1,"output":1}}"#,
            r#"{"m":{"input":1,"output":1,"reasoning":2}}"#,
            r#"{"m":3}"#,
        ] {
            let detail = Prices::parse(Some(bad)).unwrap_err().log_detail().unwrap();
            assert!(detail.starts_with("MODEL_PRICES"), "{bad}: {detail}");
        }
    }

    #[test]
    fn audio_prices_are_read_by_kind_and_charged_by_kind() {
        let prices = Prices::parse(Some(
            r#"{"stt":{"input":1,"output":2,"audio_input":3,"per_minute":0.006}}"#,
        ))
        .unwrap();
        let stt = prices.of("stt").unwrap();
        assert_eq!(
            (stt.audio_input, stt.per_minute),
            (Some(3 * NANO_PER_USD), Some(6_000_000))
        );
        let tokens = Usage {
            prompt_tokens: 100,
            audio_input_tokens: 60,
            completion_tokens: 10,
            total_tokens: 110,
            ..Usage::default()
        };
        // 40 text tokens at $1, 60 audio at $3, 10 out at $2 (per 1M).
        assert_eq!(stt.charge(&tokens), 40_000 + 180_000 + 20_000);
        let seconds = Usage {
            duration_millis: Some(90_500),
            ..Usage::default()
        };
        assert_eq!(stt.charge(&seconds), (90_500u64 * 6_000_000).div_ceil(60_000));
        assert!(
            !mini().reads(&seconds),
            "no price per minute: a duration cannot be priced"
        );
        let whisper = Prices::parse(None).unwrap().of("whisper-1").unwrap();
        assert!(whisper.reads(&seconds));
        assert!(
            !whisper.reads(&tokens),
            "billed by the minute: tokens say nothing of it"
        );
        assert!(mini().reads(&tokens));
        let tts = Prices::parse(None).unwrap().of("gpt-4o-mini-tts").unwrap();
        let speech = Usage {
            prompt_tokens: 10,
            completion_tokens: 100,
            total_tokens: 110,
            audio_output_tokens: 100,
            ..Usage::default()
        };
        assert_eq!(tts.charge(&speech), 6_000 + 1_200_000);
        assert_eq!(
            Prices::parse(None).unwrap().of("tts-1").unwrap().per_million_characters,
            Some(15 * NANO_PER_USD)
        );
    }

    fn mini() -> Price {
        Prices::parse(None).unwrap().of("gpt-4o-mini").unwrap()
    }

    #[test]
    fn a_usage_report_is_charged_by_kind_of_token() {
        let usage = Usage {
            prompt_tokens: 1_000,
            cached_tokens: 400,
            completion_tokens: 100,
            total_tokens: 1_100,
            ..Usage::default()
        };
        // 600 × 0.15 + 400 × 0.075 + 100 × 0.60 (USD per 1M) = 180 micro-USD
        assert_eq!(mini().charge(&usage), 180_000);
        let unexplained = Usage {
            total_tokens: 1_200,
            ..usage
        };
        assert_eq!(mini().charge(&unexplained), 180_000 + 60_000);
    }

    #[test]
    fn the_worst_case_covers_any_charge_the_reservation_allows() {
        let cost = Cost {
            body_bytes: 1_000,
            output_tokens: 200,
            ..Cost::default()
        };
        let worst = mini().worst_case(&cost);
        assert_eq!(worst, 1_000 * 150 + 200 * 600);
        let heaviest = Usage {
            prompt_tokens: 1_000,
            completion_tokens: 200,
            total_tokens: 1_200,
            ..Usage::default()
        };
        assert!(mini().charge(&heaviest) <= worst);
        let odd = Price {
            input: 1,
            cached_input: 5,
            output: 1,
            ..Price::default()
        };
        let all_cached = Usage {
            cached_tokens: 1_000,
            ..heaviest
        };
        assert!(
            odd.charge(&all_cached) <= odd.worst_case(&cost),
            "a dearer cache price is covered too"
        );
    }

    #[test]
    fn the_worst_case_prices_input_at_the_dearer_of_the_two_input_prices() {
        let cost = Cost {
            body_bytes: 1_000,
            output_tokens: 200,
            ..Cost::default()
        };
        let cache_dearer = Price {
            input: 1_000_000,
            cached_input: 5_000_000,
            output: 2_000_000,
            ..Price::default()
        };
        assert_eq!(cache_dearer.worst_case(&cost), 1_000 * 5 + 200 * 2);
        let input_dearer = Price {
            input: 5_000_000,
            cached_input: 1_000_000,
            output: 2_000_000,
            ..Price::default()
        };
        assert_eq!(input_dearer.worst_case(&cost), 1_000 * 5 + 200 * 2);
    }

    #[test]
    fn a_sign_or_a_cent_past_the_largest_amount_is_not_an_amount() {
        // Rust's integer parser takes a leading `+`: the digit checks are what refuse these.
        for bad in ["+1", "1.+5", "+1.5", "1000000000.5", "1000000000.000000001", "1.5.5"] {
            assert_eq!(parse_usd(bad), None, "{bad:?}");
        }
        assert_eq!(parse_usd("999999999.999999999"), Some(MAX_USD * NANO_PER_USD - 1));
        assert_eq!(parse_usd("0.5"), Some(NANO_PER_USD / 2));
    }
}
