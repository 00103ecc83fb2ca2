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

/// A model's price, in nano-USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: u64,
    /// Prompt tokens OpenAI reports as cached (`prompt_tokens_details.cached_tokens`).
    pub cached_input: u64,
    pub output: u64,
    /// Realtime audio tokens (per 1M): input, cached input, output. `None`: not an audio
    /// model; an audio token reported anyway is charged at its dearest price (`audio_rates`).
    pub audio_input: Option<u64>,
    pub audio_cached_input: Option<u64>,
    pub audio_output: Option<u64>,
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

/// Realtime voice models (USD per 1M tokens: text input, cached, output, then audio input,
/// cached, output), from their model pages (developers.openai.com/api/docs/models/<name>),
/// checked 2026-12-06. gpt-realtime-2 is priced as the issue states (the same as 2.1).
const DEFAULT_AUDIO_PRICES: [(&str, [&str; 6]); 3] = [
    ("gpt-realtime-2", ["4", "0.40", "24", "32", "0.40", "64"]),
    ("gpt-realtime-2.1", ["4", "0.40", "24", "32", "0.40", "64"]),
    ("gpt-realtime-2.1-mini", ["0.60", "0.06", "2.40", "10", "0.30", "20"]),
];

/// Every model's price: the defaults, overridden model by model by `MODEL_PRICES`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    by_model: BTreeMap<String, Price>,
}

impl Prices {
    /// The defaults with `model_prices` (the JSON of `MODEL_PRICES`, if set) over them.
    pub fn parse(model_prices: Option<&str>) -> Result<Prices, ProxyError> {
        let mut by_model = BTreeMap::new();
        let price = |usd: &str| parse_usd(usd).unwrap_or(u64::MAX);
        for (model, input, cached, output) in DEFAULT_PRICES {
            by_model.insert(
                model.to_owned(),
                Price {
                    input: price(input),
                    cached_input: price(cached),
                    output: price(output),
                    audio_input: None,
                    audio_cached_input: None,
                    audio_output: None,
                },
            );
        }
        for (model, [input, cached, output, audio, audio_cached, audio_output]) in DEFAULT_AUDIO_PRICES {
            by_model.insert(
                model.to_owned(),
                Price {
                    input: price(input),
                    cached_input: price(cached),
                    output: price(output),
                    audio_input: Some(price(audio)),
                    audio_cached_input: Some(price(audio_cached)),
                    audio_output: Some(price(audio_output)),
                },
            );
        }
        let Some(raw) = model_prices else {
            return Ok(Prices { by_model });
        };
        let invalid = |why: String| ProxyError::misconfigured(format!("MODEL_PRICES: {why}"));
        let Ok(Value::Object(models)) = serde_json::from_str::<Value>(raw) else {
            return Err(invalid(
                r#"not a JSON object like {"gpt-4o-mini":{"input":0.15,"output":0.6,"cached_input":0.075}}"#.into(),
            ));
        };
        for (model, entry) in models {
            let price = parse_price(&entry).map_err(|why| invalid(format!("{model:?}: {why}")))?;
            by_model.insert(model, price);
        }
        Ok(Prices { by_model })
    }

    pub fn of(&self, model: &str) -> Option<Price> {
        self.by_model.get(model).copied()
    }
}

/// `{"input": USD, "output": USD, "cached_input": USD (optional, else the input price)}`, and
/// for a voice model `audio_input`, `audio_output`, `audio_cached_input` (else `audio_input`).
fn parse_price(entry: &Value) -> Result<Price, String> {
    let Value::Object(fields) = entry else {
        return Err("must be an object with `input` and `output` (USD per 1M tokens)".into());
    };
    if let Some(unknown) = fields.keys().find(|k| !PRICE_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `{unknown}` (expected {})",
            PRICE_FIELDS.join(", ")
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
    let audio_input = usd("audio_input")?;
    Ok(Price {
        input,
        cached_input: usd("cached_input")?.unwrap_or(input),
        output,
        audio_input,
        audio_cached_input: usd("audio_cached_input")?.or(audio_input),
        audio_output: usd("audio_output")?,
    })
}

const PRICE_FIELDS: [&str; 6] = [
    "input",
    "output",
    "cached_input",
    "audio_input",
    "audio_cached_input",
    "audio_output",
];

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

    /// Nano-USD of each `(price per 1M, tokens)` pair together, rounded up once.
    pub fn sum(parts: &[(u64, u64)]) -> u64 {
        let micro: u128 = parts
            .iter()
            .map(|&(per_million, tokens)| u128::from(per_million) * u128::from(tokens))
            .sum();
        u64::try_from(micro.div_ceil(TOKENS_PER_PRICE_UNIT)).unwrap_or(u64::MAX)
    }

    /// The audio prices (input, cached input, output); each one missing is the dearest price
    /// this model has, so a model priced without audio is never undercharged for it.
    pub fn audio_rates(&self) -> (u64, u64, u64) {
        let dearest = [self.input, self.cached_input, self.output]
            .into_iter()
            .chain(self.audio_input)
            .chain(self.audio_cached_input)
            .chain(self.audio_output)
            .max()
            .unwrap_or(0);
        (
            self.audio_input.unwrap_or(dearest),
            self.audio_cached_input.unwrap_or(dearest),
            self.audio_output.unwrap_or(dearest),
        )
    }

    /// The worst case of `cost` in dollars: every input-side token of the token reserve (the
    /// input for each read, images, hosted tool fees) at the input price, the output cap at
    /// the output price.
    pub fn worst_case(&self, cost: &Cost) -> u64 {
        self.worst_input().of(cost.input_side_tokens(), 0, cost.output_tokens)
    }

    /// What a usage report costs: uncached prompt tokens at the input price, cached ones at
    /// the cached price, completion tokens (reasoning included) at the output price. Tokens a
    /// report counts in its total but in neither part are charged at the dearer price.
    pub fn charge(&self, usage: &Usage) -> u64 {
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let parts = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        let unexplained = usage.total().saturating_sub(parts);
        let dearest = self.input.max(self.output).max(self.cached_input);
        let unexplained = Price::sum(&[(dearest, unexplained)]);
        let uncached = usage.prompt_tokens - cached;
        self.of(uncached, cached, usage.completion_tokens)
            .saturating_add(unexplained)
    }
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
            ..no_audio()
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
                ..no_audio()
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

    fn no_audio() -> Price {
        Price {
            input: 0,
            cached_input: 0,
            output: 0,
            audio_input: None,
            audio_cached_input: None,
            audio_output: None,
        }
    }

    #[test]
    fn voice_models_have_audio_prices_and_model_prices_may_set_them() {
        let prices = Prices::parse(Some(
            r#"{"v":{"input":1,"output":2,"audio_input":"10","audio_output":20}}"#,
        ))
        .unwrap();
        let mini = prices.of("gpt-realtime-2.1-mini").unwrap();
        assert_eq!(mini.audio_rates(), (10 * NANO_PER_USD, 300_000_000, 20 * NANO_PER_USD));
        let v = prices.of("v").unwrap();
        assert_eq!(
            v.audio_rates(),
            (10 * NANO_PER_USD, 10 * NANO_PER_USD, 20 * NANO_PER_USD)
        );
        let text_only = prices.of("gpt-4o-mini").unwrap();
        assert_eq!(
            text_only.audio_rates(),
            (600_000_000, 600_000_000, 600_000_000),
            "a model without audio prices is charged its dearest price for audio"
        );
        assert_eq!(Price::sum(&[(20 * NANO_PER_USD, 3), (1, 1)]), 60_001, "rounded up once");
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
            hosted_tool_calls: None,
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
            ..no_audio()
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
            ..no_audio()
        };
        assert_eq!(cache_dearer.worst_case(&cost), 1_000 * 5 + 200 * 2);
        let input_dearer = Price {
            input: 5_000_000,
            cached_input: 1_000_000,
            output: 2_000_000,
            ..no_audio()
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
