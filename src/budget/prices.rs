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

/// A model's price, in nano-USD per million tokens of each kind (or per minute of audio, per
/// million characters of speech).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub input: u64,
    /// Prompt tokens OpenAI reports as cached (`prompt_tokens_details.cached_tokens`).
    pub cached_input: u64,
    pub output: u64,
    /// Prompt tokens written to the cache (`cache_write_tokens`), on models that bill them;
    /// `None`: billed as input.
    pub cache_write: Option<u64>,
    /// Image tokens of an image model (`input_tokens_details.image_tokens`, and the output's
    /// `image_tokens`); `None` on text models, whose image inputs are billed as text.
    pub image_input: Option<u64>,
    pub image_cached_input: Option<u64>,
    pub image_output: Option<u64>,
    pub long_context: Option<LongContext>,
    /// Audio tokens (per 1M): read (transcription, realtime input), read again from the cache
    /// (realtime), written (speech, realtime output). `None`: not priced apart; an audio token
    /// reported anyway is charged at its dearest price.
    pub audio_input: Option<u64>,
    pub audio_cached_input: Option<u64>,
    pub audio_output: Option<u64>,
    /// Per minute of audio (`usage: {type: "duration", seconds}`).
    pub per_minute: Option<u64>,
    /// Per million characters of speech input (tts-1, tts-1-hd).
    pub per_million_characters: Option<u64>,
}

/// A long-context tier: a request with more input tokens than `threshold` is billed, whole,
/// at `input_percent` of every input rate (cached and cache writes too) and `output_percent`
/// of the output rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LongContext {
    pub threshold: u64,
    pub input_percent: u64,
    pub output_percent: u64,
}

/// OpenAI's GPT-5.6 and GPT-6 tier: above 272K input tokens, input ×2 and output ×1.5 for the
/// whole request (the model pages below).
const TIER_272K: LongContext = LongContext {
    threshold: 272_000,
    input_percent: 200,
    output_percent: 150,
};

/// One published price: USD per 1M tokens (text input, cached input, cache write, output;
/// image input, cached image input, image output), and its long-context tier.
struct Published {
    model: &'static str,
    text: [&'static str; 4],
    image: Option<[&'static str; 3]>,
    long_context: Option<LongContext>,
    /// A voice model's audio input, cached input and output.
    audio: Option<[&'static str; 3]>,
}

const fn text(model: &'static str, text: [&'static str; 4], long_context: Option<LongContext>) -> Published {
    Published {
        model,
        text,
        image: None,
        long_context,
        audio: None,
    }
}

/// A Realtime voice model: its model page (developers.openai.com/api/docs/models/<name>),
/// checked 2026-12-06; gpt-realtime-2 as issue 25 states it (the same as 2.1).
const fn voice(model: &'static str, text: [&'static str; 4], audio: [&'static str; 3]) -> Published {
    Published {
        model,
        text,
        image: None,
        long_context: None,
        audio: Some(audio),
    }
}

/// Default prices, standard tier, USD per 1M tokens; `-` is "not billed apart". Exact names
/// only: a dated snapshot may cost something else (gpt-4o-2024-05-13 did), so it needs its own
/// `MODEL_PRICES` entry. The README's price table is this table, with each row's source and
/// date (a test checks they agree). Checked 2026-12-06.
const DEFAULT_PRICES: [Published; 17] = [
    text("gpt-6-astra", ["10.00", "1.00", "12.50", "50.00"], Some(TIER_272K)),
    text("gpt-6.2-sol", ["2.00", "0.10", "2.50", "10.00"], Some(TIER_272K)),
    text("gpt-6-luna", ["0.10", "0.01", "0.125", "0.50"], Some(TIER_272K)),
    text("gpt-5.6-luna", ["0.20", "0.02", "0.25", "1.20"], Some(TIER_272K)),
    text("gpt-5.4-mini", ["0.75", "0.075", "-", "4.50"], None),
    text("gpt-5.4-nano", ["0.20", "0.02", "-", "1.25"], None),
    // Deprecated or shut down (OpenAI's deprecations page, README): kept at their last
    // published price while deployments still name them.
    text("o3", ["2.00", "0.50", "-", "8.00"], None),
    text("gpt-4o-mini", ["0.15", "0.075", "-", "0.60"], None),
    text("gpt-4o", ["2.50", "1.25", "-", "10.00"], None),
    text("gpt-4.1", ["2.00", "0.50", "-", "8.00"], None),
    text("gpt-4.1-mini", ["0.40", "0.10", "-", "1.60"], None),
    text("gpt-4.1-nano", ["0.10", "0.025", "-", "0.40"], None),
    Published {
        model: "gpt-image-1.5",
        text: ["5.00", "1.25", "-", "10.00"],
        image: Some(["8.00", "2.00", "32.00"]),
        long_context: None,
        audio: None,
    },
    Published {
        model: "gpt-image-2",
        text: ["5.00", "1.25", "-", "10.00"],
        image: Some(["8.00", "2.00", "30.00"]),
        long_context: None,
        audio: None,
    },
    voice(
        "gpt-realtime-2",
        ["4.00", "0.40", "-", "24.00"],
        ["32.00", "0.40", "64.00"],
    ),
    voice(
        "gpt-realtime-2.1",
        ["4.00", "0.40", "-", "24.00"],
        ["32.00", "0.40", "64.00"],
    ),
    voice(
        "gpt-realtime-2.1-mini",
        ["0.60", "0.06", "-", "2.40"],
        ["10.00", "0.30", "20.00"],
    ),
];

/// Audio models' defaults, USD (`-`: not billed apart): text input and output per 1M tokens,
/// audio input and output per 1M audio tokens, per minute of audio, per 1M characters. From
/// each model's page under developers.openai.com/api/docs/models/ (README, checked
/// 2026-12-06); whisper-1's from OpenAI's pricing page (2025). GPT-Live's per minute is its
/// active rate, the dearest (gpt-live-1.1's standby is $0.02); no tokens: its text price is
/// "not billed apart", so nothing but a Live session can use it.
const DEFAULT_AUDIO_PRICES: [(&str, [&str; 6]); 9] = [
    ("gpt-transcribe", ["0", "0", "-", "-", "0.0045", "-"]),
    ("whisper-1", ["0", "0", "-", "-", "0.006", "-"]),
    ("gpt-4o-transcribe", ["2.50", "10.00", "2.50", "-", "-", "-"]),
    ("gpt-4o-mini-transcribe", ["1.25", "5.00", "1.25", "-", "-", "-"]),
    ("gpt-4o-mini-tts", ["0.60", "0", "-", "12.00", "-", "-"]),
    ("tts-1", ["0", "0", "-", "-", "-", "15.00"]),
    ("tts-1-hd", ["0", "0", "-", "-", "-", "30.00"]),
    ("gpt-live-1", ["-", "-", "-", "-", "0.05", "-"]),
    ("gpt-live-1.1", ["-", "-", "-", "-", "0.05", "-"]),
];

/// The fields `MODEL_PRICES` reads, in USD per 1M tokens (per minute, per 1M characters).
const PRICE_FIELDS: [&str; 12] = [
    "input",
    "cached_input",
    "output",
    "cache_write",
    "image_input",
    "image_cached_input",
    "image_output",
    "audio_input",
    "audio_cached_input",
    "audio_output",
    "per_minute",
    "per_million_characters",
];

/// A table's amount: `-` is none; the tables are literals a test reads, none fails to parse.
fn table_usd(text: &str) -> Option<u64> {
    (text != "-").then(|| parse_usd(text).unwrap_or(u64::MAX))
}

/// Every model's price: the defaults, overridden model by model by `MODEL_PRICES`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    by_model: BTreeMap<String, Price>,
}

impl Prices {
    /// The defaults with `model_prices` (the JSON of `MODEL_PRICES`, if set) over them.
    pub fn parse(model_prices: Option<&str>) -> Result<Prices, ProxyError> {
        // A loop, not `collect`: a BTreeMap built from an iterator brings a sort into the wasm.
        let mut by_model = BTreeMap::new();
        for published in &DEFAULT_PRICES {
            by_model.insert(published.model.to_owned(), published.price());
        }
        for (model, amounts) in DEFAULT_AUDIO_PRICES {
            let [input, output, audio_input, audio_output, per_minute, per_million_characters] = amounts.map(table_usd);
            let price = Price {
                input: input.unwrap_or(u64::MAX),
                cached_input: input.unwrap_or(u64::MAX),
                output: output.unwrap_or(u64::MAX),
                audio_input,
                audio_output,
                per_minute,
                per_million_characters,
                ..Price::default()
            };
            by_model.insert(model.to_owned(), price);
        }
        let Some(raw) = model_prices else {
            return Ok(Prices { by_model });
        };
        let invalid = |why: String| ProxyError::misconfigured(format!("MODEL_PRICES: {why}"));
        let Ok(Value::Object(models)) = serde_json::from_str::<Value>(raw) else {
            return Err(invalid(
                r#"not a JSON object like {"gpt-6-luna":{"input":0.1,"output":0.5,"cached_input":0.01}}"#.into(),
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

impl Published {
    fn price(&self) -> Price {
        let [input, cached_input, cache_write, output] = self.text.map(table_usd);
        let [image_input, image_cached_input, image_output] = match self.image {
            Some(image) => image.map(table_usd),
            None => [None; 3],
        };
        let [audio_input, audio_cached_input, audio_output] = match self.audio {
            Some(audio) => audio.map(table_usd),
            None => [None; 3],
        };
        Price {
            input: input.unwrap_or(u64::MAX),
            cached_input: cached_input.unwrap_or(u64::MAX),
            output: output.unwrap_or(u64::MAX),
            cache_write,
            image_input,
            image_cached_input,
            image_output,
            long_context: self.long_context,
            audio_input,
            audio_cached_input,
            audio_output,
            ..Price::default()
        }
    }
}

/// `{"input": USD, "output": USD, "cached_input": USD (else the input price), "cache_write",
/// "image_input", "image_cached_input", "image_output", "audio_input", "audio_cached_input"
/// (else `audio_input`), "audio_output" (optional)}`. A long-context tier is the built-in
/// models' only.
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
        cache_write: usd("cache_write")?,
        image_input: usd("image_input")?,
        image_cached_input: usd("image_cached_input")?,
        image_output: usd("image_output")?,
        long_context: None,
        audio_input,
        audio_cached_input: usd("audio_cached_input")?.or(audio_input),
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

/// Tokens at their prices (nano-USD per 1M), summed, rounded up to the next nano-USD.
pub fn priced(parts: &[(u64, u64)]) -> u64 {
    let micro: u128 = parts
        .iter()
        .map(|&(tokens, price)| u128::from(tokens) * u128::from(price))
        .sum();
    u64::try_from(micro.div_ceil(TOKENS_PER_PRICE_UNIT)).unwrap_or(u64::MAX)
}

/// `percent` of `price`, rounded up; past $1.8e10 per 1M it saturates (never cheaper).
fn percent(price: u64, percent: u64) -> u64 {
    price.saturating_mul(percent).div_ceil(100)
}

impl Price {
    /// The prices a request with `input_tokens` of input is billed at: its long-context tier
    /// when it has one and the input passes it.
    fn at_tier(&self, input_tokens: u64) -> Price {
        let Some(tier) = self.long_context.filter(|tier| input_tokens > tier.threshold) else {
            return *self;
        };
        let input = |price: u64| percent(price, tier.input_percent);
        let output = |price: u64| percent(price, tier.output_percent);
        Price {
            input: input(self.input),
            cached_input: input(self.cached_input),
            output: output(self.output),
            cache_write: self.cache_write.map(input),
            image_input: self.image_input.map(input),
            image_cached_input: self.image_cached_input.map(input),
            image_output: self.image_output.map(output),
            long_context: None,
            audio_input: self.audio_input.map(input),
            audio_cached_input: self.audio_cached_input.map(input),
            audio_output: self.audio_output.map(output),
            per_minute: self.per_minute,
            per_million_characters: self.per_million_characters,
        }
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

    /// The dearest price an input token can have: uncached, cached or written to the cache.
    fn worst_input(&self) -> u64 {
        self.input
            .max(self.cached_input)
            .max(self.cache_write.unwrap_or(0))
            .max(self.image_input.unwrap_or(0))
            .max(self.image_cached_input.unwrap_or(0))
            .max(self.audio_input.unwrap_or(0))
    }

    /// The worst case of `cost` in dollars: every input-side token of the token reserve (the
    /// input for each read, images, hosted tool fees) at the dearest input price, the output
    /// cap at the output price and generated images at the image output price, all at the
    /// long-context tier when the input bound passes its threshold.
    pub fn worst_case(&self, cost: &Cost) -> u64 {
        let input = cost.input_side_tokens();
        let price = self.at_tier(input);
        priced(&[
            (input, price.worst_input()),
            (cost.output_tokens, price.output),
            (
                cost.image_output_tokens,
                price.image_output.unwrap_or(price.output).max(price.output),
            ),
        ])
    }

    /// What a usage report costs, at the tier its input tokens reach: prompt tokens by kind
    /// (image tokens of an image model, cached, written to the cache, the rest at the input
    /// price), output tokens by kind (an image model's image tokens, all of its output when
    /// the report does not split it, at the image output price). Tokens a report counts in its
    /// total but in neither part are charged at the dearest price.
    pub fn charge(&self, usage: &Usage) -> u64 {
        let price = self.at_tier(usage.prompt_tokens);
        let prompt = usage.prompt_tokens;
        let image_in = price.image_input.map_or(0, |_| usage.image_input_tokens.min(prompt));
        let audio_in = usage.audio_input_tokens.min(prompt - image_in);
        let text_in = prompt - image_in - audio_in;
        let cached = usage.cached_tokens.min(text_in);
        let written = usage.cache_write_tokens.min(text_in - cached);
        let completion = usage.completion_tokens;
        let image_out = price
            .image_output
            .map_or(0, |_| usage.image_output_tokens.unwrap_or(completion).min(completion));
        let audio_out = usage.audio_output_tokens.min(completion - image_out);
        let unexplained = usage.total().saturating_sub(prompt.saturating_add(completion));
        let dearest = price
            .worst_input()
            .max(price.output)
            .max(price.image_output.unwrap_or(0))
            .max(price.audio_output.unwrap_or(0));
        let by_duration = price
            .per_minute
            .map_or(0, |per| per_minute(usage.duration_millis.unwrap_or(0), per));
        priced(&[
            (text_in - cached - written, price.input),
            (cached, price.cached_input),
            (written, price.cache_write.unwrap_or(price.input)),
            (image_in, price.image_input.unwrap_or(price.input)),
            (audio_in, price.audio_input.unwrap_or(price.input)),
            (completion - image_out - audio_out, price.output),
            (image_out, price.image_output.unwrap_or(price.output)),
            (audio_out, price.audio_output.unwrap_or(price.output)),
            (unexplained, dearest),
        ])
        .saturating_add(by_duration)
    }

    /// Whether `charge` can price `usage`: seconds of audio need a price per minute, and a
    /// model priced per minute is billed by duration, which a report in tokens does not give.
    /// A report this price cannot read is charged its whole reservation.
    pub fn reads(&self, usage: &Usage) -> bool {
        usage.duration_millis.is_some() == self.per_minute.is_some()
    }
}

/// `tokens` (or characters) at `price` per million, rounded up to the next nano-USD.
pub fn per_million(tokens: u64, price: u64) -> u64 {
    priced(&[(tokens, price)])
}

/// `millis` of audio at `price` per minute, rounded up to the next nano-USD.
pub fn per_minute(millis: u64, price: u64) -> u64 {
    u64::try_from((u128::from(millis) * u128::from(price)).div_ceil(60_000)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::money::NANO_PER_USD;

    /// A text price without cache writes, images or tiers.
    fn flat(input: u64, cached_input: u64, output: u64) -> Price {
        Price {
            input,
            cached_input,
            output,
            cache_write: None,
            image_input: None,
            image_cached_input: None,
            image_output: None,
            long_context: None,
            ..Price::default()
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
        let text_only = flat(1, 2, 3);
        assert_eq!(
            text_only.audio_rates(),
            (3, 3, 3),
            "a model without audio prices is charged its dearest price for audio"
        );
        assert_eq!(priced(&[(3, 20 * NANO_PER_USD), (1, 1)]), 60_001, "rounded up once");
    }

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
        let nano = Prices::parse(None).unwrap().of("gpt-6-luna").unwrap();
        assert_eq!(priced(&[(10, nano.input)]), 1_000);
        assert_eq!(priced(&[(1, nano.input)]), 100);
        let cheap = flat(1, 1, 1);
        assert_eq!(
            priced(&[(1, cheap.input)]),
            1,
            "a fraction of a nano-dollar is charged as one"
        );
    }

    #[test]
    fn model_prices_override_the_defaults_model_by_model() {
        let prices = Prices::parse(Some(
            r#"{"gpt-4o-mini":{"input":1,"output":"2"},"o3":{"input":2,"output":8,"cached_input":0.5}}"#,
        ))
        .unwrap();
        assert_eq!(
            prices.of("gpt-4o-mini"),
            Some(flat(NANO_PER_USD, NANO_PER_USD, 2 * NANO_PER_USD)),
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
        let odd = flat(1, 5, 1);
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
        let cache_dearer = flat(1_000_000, 5_000_000, 2_000_000);
        assert_eq!(cache_dearer.worst_case(&cost), 1_000 * 5 + 200 * 2);
        let input_dearer = flat(5_000_000, 1_000_000, 2_000_000);
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

    fn luna() -> Price {
        Prices::parse(None).unwrap().of("gpt-6-luna").unwrap()
    }

    #[test]
    fn cache_writes_are_billed_at_their_own_price() {
        // gpt-6-luna: $0.10 input, $0.01 cached, $0.125 cache write, $0.50 output.
        let usage = Usage {
            prompt_tokens: 10_000,
            cached_tokens: 2_000,
            cache_write_tokens: 5_000,
            completion_tokens: 1_000,
            ..Usage::default()
        };
        let expected = (3_000 * 100_000_000 + 2_000 * 10_000_000 + 5_000 * 125_000_000 + 1_000 * 500_000_000_u64)
            .div_ceil(1_000_000);
        assert_eq!(luna().charge(&usage), expected);
        assert_eq!(
            flat(100, 10, 500).charge(&usage),
            priced(&[(8_000, 100), (2_000, 10), (1_000, 500)]),
            "no cache-write price: written tokens are input"
        );
        let cost = Cost {
            body_bytes: 1_000,
            ..Cost::default()
        };
        assert_eq!(
            luna().worst_case(&cost),
            1_000 * 125,
            "the dearest input price is the write"
        );
    }

    #[test]
    fn a_request_past_the_long_context_threshold_is_billed_whole_at_the_higher_tier() {
        let at = |prompt_tokens| Usage {
            prompt_tokens,
            cached_tokens: 1_000,
            completion_tokens: 1_000,
            ..Usage::default()
        };
        let base = |prompt: u64| priced(&[(prompt - 1_000, 100_000_000), (1_000, 10_000_000), (1_000, 500_000_000)]);
        assert_eq!(
            luna().charge(&at(272_000)),
            base(272_000),
            "at the threshold: base rates"
        );
        let above = priced(&[(271_001, 200_000_000), (1_000, 20_000_000), (1_000, 750_000_000)]);
        assert_eq!(
            luna().charge(&at(272_001)),
            above,
            "one token more: every token at the tier"
        );
        let small = Cost {
            body_bytes: 272_000,
            output_tokens: 1_000,
            ..Cost::default()
        };
        assert_eq!(
            luna().worst_case(&small),
            priced(&[(272_000, 125_000_000), (1_000, 500_000_000)])
        );
        let large = Cost {
            body_bytes: 272_001,
            ..small
        };
        assert_eq!(
            luna().worst_case(&large),
            priced(&[(272_001, 250_000_000), (1_000, 750_000_000)]),
            "an input that can pass the threshold is reserved at the higher tier"
        );
        let heaviest = Usage {
            prompt_tokens: 272_001,
            cache_write_tokens: 272_001,
            completion_tokens: 1_000,
            ..Usage::default()
        };
        assert!(luna().charge(&heaviest) <= luna().worst_case(&large));
    }

    #[test]
    fn an_image_model_bills_image_tokens_at_its_image_prices() {
        // gpt-image-2: text in $5, image in $8, image out $30, text out $10.
        let image = Prices::parse(None).unwrap().of("gpt-image-2").unwrap();
        let unsplit = Usage {
            prompt_tokens: 50,
            completion_tokens: 4_000,
            total_tokens: 4_050,
            ..Usage::default()
        };
        assert_eq!(
            image.charge(&unsplit),
            priced(&[(50, 5_000_000_000), (4_000, 30_000_000_000)])
        );
        let split = Usage {
            prompt_tokens: 150,
            image_input_tokens: 100,
            completion_tokens: 4_000,
            image_output_tokens: Some(3_900),
            ..unsplit
        };
        assert_eq!(
            image.charge(&split),
            priced(&[
                (50, 5_000_000_000),
                (100, 8_000_000_000),
                (100, 10_000_000_000),
                (3_900, 30_000_000_000)
            ])
        );
        let text_model_images = Usage {
            image_input_tokens: 100,
            image_output_tokens: Some(10),
            ..split
        };
        assert_eq!(
            mini().charge(&text_model_images),
            priced(&[(150, 150_000_000), (4_000, 600_000_000)]),
            "a text model bills its image inputs as text"
        );
        let cost = Cost {
            body_bytes: 150,
            image_output_tokens: 4_000,
            ..Cost::default()
        };
        assert_eq!(
            image.worst_case(&cost),
            priced(&[(150, 8_000_000_000), (4_000, 30_000_000_000)])
        );
        assert!(image.charge(&split) <= image.worst_case(&cost));
    }

    #[test]
    fn model_prices_read_every_dimension() {
        let prices = Prices::parse(Some(
            r#"{"m":{"input":1,"output":2,"cache_write":1.25,"image_input":8,"image_cached_input":"2","image_output":30}}"#,
        ))
        .unwrap();
        let price = prices.of("m").unwrap();
        assert_eq!(price.cache_write, Some(1_250_000_000));
        assert_eq!(price.image_input, Some(8 * NANO_PER_USD));
        assert_eq!(price.image_cached_input, Some(2 * NANO_PER_USD));
        assert_eq!(price.image_output, Some(30 * NANO_PER_USD));
        assert_eq!(price.long_context, None);
        assert!(Prices::parse(Some(r#"{"m":{"input":1,"output":2,"long_context":1}}"#)).is_err());
    }

    /// The README's price table, row by row: model, then the seven amounts (`-` for none),
    /// then the long-context column.
    fn readme_rows() -> Vec<(String, Vec<String>, String)> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("<!-- price-table -->")
            .nth(1)
            .expect("the README marks its price table with <!-- price-table -->");
        table
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<String> = line
                    .split('|')
                    .map(|cell| cell.trim().replace(['`', '$'], ""))
                    .collect();
                (cells[1].clone(), cells[2..9].to_vec(), cells[9].clone())
            })
            .collect()
    }

    /// The README's audio price table: model, then its six amounts.
    fn audio_rows() -> Vec<(String, Vec<String>)> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("<!-- audio-price-table -->")
            .nth(1)
            .expect("the README marks its audio price table with <!-- audio-price-table -->");
        table
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<String> = line.split('|').map(|cell| cell.trim().replace('`', "")).collect();
                (cells[1].clone(), cells[2..8].to_vec())
            })
            .collect()
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
        let tts1 = Prices::parse(None).unwrap().of("tts-1").unwrap();
        assert_eq!(tts1.per_million_characters, Some(15 * NANO_PER_USD));
    }

    #[test]
    fn the_readme_price_table_is_the_built_in_one() {
        let rows = readme_rows();
        let built_in = Prices::parse(None).unwrap();
        let audio = audio_rows();
        assert_eq!(
            rows.len() + audio.len(),
            built_in.by_model.len(),
            "one row per built-in model"
        );
        for (model, amounts) in audio {
            let price = built_in.of(&model).unwrap_or_else(|| panic!("{model} is not built in"));
            let read: Vec<Option<u64>> = amounts.iter().map(|text| table_usd(text)).collect();
            // `-` in the text columns: no text price (GPT-Live), held at the maximum.
            let text = |amount: u64| (amount != u64::MAX).then_some(amount);
            let expected = vec![
                text(price.input),
                text(price.output),
                price.audio_input,
                price.audio_output,
                price.per_minute,
                price.per_million_characters,
            ];
            assert_eq!(read, expected, "{model}");
        }
        for (model, amounts, long_context) in rows {
            let price = built_in.of(&model).unwrap_or_else(|| panic!("{model} is not built in"));
            let usd = |text: &String| (text != "-").then(|| parse_usd(text).unwrap());
            let read: Vec<Option<u64>> = amounts.iter().map(usd).collect();
            let expected = vec![
                Some(price.input),
                Some(price.cached_input),
                price.cache_write,
                Some(price.output),
                price.image_input,
                price.image_cached_input,
                price.image_output,
            ];
            assert_eq!(read, expected, "{model}");
            let tier = price.long_context.map(|tier| {
                format!(
                    ">{}K: ×{}% in, ×{}% out",
                    tier.threshold / 1000,
                    tier.input_percent,
                    tier.output_percent
                )
            });
            assert_eq!(long_context, tier.unwrap_or_else(|| "-".into()), "{model}");
        }
    }
}
