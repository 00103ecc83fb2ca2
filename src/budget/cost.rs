//! What a request may cost beyond its text: images, hosted tools, and the reservation and the
//! no-usage charge built from them. Facts about OpenAI's prices live here, with their source.

use crate::budget::money::parse_usd;
use crate::budget::usage::Usage;
use crate::error::ProxyError;

/// Each hosted tool's fee per call in USD, the same on every model, from OpenAI's pricing page
/// ("Built-in tools", https://platform.openai.com/docs/pricing; as published in March 2026):
/// web search $10 per 1,000 calls (its content tokens billed at the model's rates, in `usage`);
/// web search preview $25 per 1,000 on non-reasoning models (the dearer of its two rates); file
/// search $2.50 per 1,000; code interpreter $0.03 per container (one per call at worst). Any
/// other tool needs its fee in `ALLOWED_HOSTED_TOOLS` when a dollar budget is set.
const TOOL_FEES_USD: [(&str, &str); 4] = [
    ("web_search", "0.01"),
    ("web_search_preview", "0.025"),
    ("file_search", "0.0025"),
    ("code_interpreter", "0.03"),
];

/// An image's worst case in input tokens, per model family (a name, or its dated snapshots).
///
/// Source: OpenAI's "Images and vision" guide, section "Calculating costs". Tile models: at
/// `detail: high` an image is scaled into 2048×2048, then its short side to 768 px, so it covers
/// at most 2×4 = 8 tiles of 512 px. gpt-4o-mini bills 2,833 base + 5,667 per tile (its image
/// tokens are inflated so that an image costs what it costs on gpt-4o); gpt-4o 85 + 170 per
/// tile. Patch models (gpt-4.1 family): 32 px patches, capped at 1,536, times 1 (gpt-4.1),
/// 1.62 (mini) or 2.46 (nano).
const IMAGE_WORST_CASE: [(&str, u64); 5] = [
    ("gpt-4o-mini", 2_833 + 8 * 5_667),
    ("gpt-4o", 85 + 8 * 170),
    ("gpt-4.1", 1_536),
    ("gpt-4.1-mini", 2_489),
    ("gpt-4.1-nano", 3_779),
];

/// A model whose image pricing is not in the table is assumed to cost the most we know of.
const UNKNOWN_MODEL_IMAGE_TOKENS: u64 = 2_833 + 8 * 5_667;

/// The worst case of one image on `model`, in its input tokens.
pub fn image_worst_case(model: &str) -> u64 {
    of_family(&IMAGE_WORST_CASE, model).unwrap_or(UNKNOWN_MODEL_IMAGE_TOKENS)
}

/// The value of `model`'s family in `table`: the model itself, or a dated snapshot of it
/// (`gpt-4o-2024-08-06` is `gpt-4o`; `gpt-4o-mini` is not).
fn of_family(table: &[(&str, u64)], model: &str) -> Option<u64> {
    table
        .iter()
        .find(|(family, _)| is_family(model, family))
        .map(|&(_, tokens)| tokens)
}

/// Whether `model` is `family` or a dated snapshot of it.
pub fn is_family(model: &str, family: &str) -> bool {
    model == family
        || model
            .strip_prefix(family)
            .is_some_and(|snapshot| snapshot.starts_with("-20"))
}

/// A model's context window: the most tokens it reads (input, with its output) in one response.
/// What a continuation (`previous_response_id`) is reserved as input, since OpenAI adds the
/// stored context, which the proxy cannot see, up to this limit.
///
/// Source: OpenAI's model pages (platform.openai.com/docs/models/<model>, "Context window"):
/// gpt-4o and gpt-4o-mini 128,000; the gpt-4.1 family 1,047,576; o3 and o4-mini 200,000; the
/// gpt-5 family and gpt-5.4 mini and nano 400,000; gpt-5.6 and gpt-6 models 1,050,000 (checked
/// 2026-12-06). Other models need `MODEL_CONTEXT_TOKENS`.
const CONTEXT_WINDOW: [(&str, u64); 16] = [
    ("gpt-4o-mini", 128_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-4.1-mini", 1_047_576),
    ("gpt-4.1-nano", 1_047_576),
    ("o3", 200_000),
    ("o4-mini", 200_000),
    ("gpt-5", 400_000),
    ("gpt-5-mini", 400_000),
    ("gpt-5-nano", 400_000),
    ("gpt-5.4-mini", 400_000),
    ("gpt-5.4-nano", 400_000),
    ("gpt-5.6-luna", 1_050_000),
    ("gpt-6-luna", 1_050_000),
    ("gpt-6.2-sol", 1_050_000),
    ("gpt-6-astra", 1_050_000),
];

/// The context window OpenAI states for `model` (or a dated snapshot of it), if we know it.
pub fn stated_context_window(model: &str) -> Option<u64> {
    of_family(&CONTEXT_WINDOW, model)
}

/// Search models search the web on every call, `web_search_options` or not, and OpenAI's
/// pricing page bills those searches per 1,000 calls, like the `web_search` tool. Names from
/// platform.openai.com/docs/models: `gpt-4o-search-preview`, `gpt-4o-mini-search-preview`,
/// `gpt-5-search-api` (and their dated snapshots).
pub fn is_search_model(model: &str) -> bool {
    model.contains("-search-preview") || model.contains("search-api")
}

/// `IMAGE_INPUT_RESERVE_TOKENS` when unset: the worst image of any allowed model.
pub fn default_image_reserve(models: &[String]) -> u64 {
    models
        .iter()
        .map(|model| image_worst_case(model))
        .max()
        .unwrap_or(UNKNOWN_MODEL_IMAGE_TOKENS)
}

/// A model's context window as the operator states it (`MODEL_CONTEXT_TOKENS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextWindow {
    /// The exact model name, as in `ALLOWED_MODELS`.
    pub model: String,
    pub tokens: u64,
}

/// A hosted (OpenAI-run) tool the operator allows, and what each call of it may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedTool {
    /// The tool's `type`, e.g. `web_search`.
    pub name: String,
    pub per_call: PerCall,
}

/// What one hosted tool call may add to a request: the tokens of its result, which the model
/// reads as input on its next pass (`usage` bills them), and its fee, which `usage` leaves out:
/// dollars, the same on every model (0 when unknown; a dollar budget then refuses the
/// configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerCall {
    pub tokens: u64,
    pub nano_usd: u64,
}

impl PerCall {
    /// The worst of two tools' calls, field by field.
    pub fn max(self, other: PerCall) -> PerCall {
        PerCall {
            tokens: self.tokens.max(other.tokens),
            nano_usd: self.nano_usd.max(other.nano_usd),
        }
    }
}

/// What the operator lets a request spend beyond text (`MAX_IMAGE_INPUTS`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostRules {
    pub max_image_inputs: u64,
    pub image_input_reserve_tokens: u64,
    pub hosted_tools: Vec<HostedTool>,
    /// The `max_tool_calls` a request with hosted tools may ask for (and gets when it sets none).
    pub max_hosted_tool_calls: u64,
    /// Let OpenAI store Responses (`RESPONSES_STORE`); otherwise the proxy sends `store: false`.
    pub responses_store: bool,
    /// Let a user continue their own stored responses (`ALLOW_STORED_CONTEXT`).
    pub allow_stored_context: bool,
    /// The operator's context windows (`MODEL_CONTEXT_TOKENS`), before the stated ones.
    pub context_windows: Vec<ContextWindow>,
    /// The vector stores `file_search` may search (`ALLOWED_VECTOR_STORES`): the operator's
    /// organisation's, which a client must not choose.
    pub allowed_vector_stores: Vec<String>,
}

impl CostRules {
    pub fn hosted_tool(&self, name: &str) -> Option<&HostedTool> {
        self.hosted_tools.iter().find(|tool| tool.name == name)
    }

    /// `model`'s context window: the operator's, else the one OpenAI states.
    pub fn context_window(&self, model: &str) -> Option<u64> {
        self.context_windows
            .iter()
            .find(|window| window.model == model)
            .map(|window| window.tokens)
            .or_else(|| stated_context_window(model))
    }
}

/// `MODEL_CONTEXT_TOKENS`: `model:tokens` items, comma- or space-separated. The model is what
/// comes before the last `:`, so fine-tuned names (`ft:gpt-4o-mini:org::id`) work.
pub fn parse_context_windows(raw: &str) -> Result<Vec<ContextWindow>, ProxyError> {
    let invalid = |item: &str| {
        ProxyError::misconfigured(format!(
            "MODEL_CONTEXT_TOKENS: {item:?} is not `model:tokens` (e.g. gpt-4o-mini:128000, tokens from 1 to 10000000)"
        ))
    };
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (model, tokens) = item.rsplit_once(':').ok_or_else(|| invalid(item))?;
            match tokens.parse::<u64>() {
                Ok(tokens) if !model.is_empty() && (1..=10_000_000).contains(&tokens) => Ok(ContextWindow {
                    model: model.to_owned(),
                    tokens,
                }),
                _ => Err(invalid(item)),
            }
        })
        .collect()
}

/// `ALLOWED_HOSTED_TOOLS`: `name:tokens[:usd]` items, comma- or space-separated: a call's
/// result tokens, and its fee in USD (by default the published one, `TOOL_FEES_USD`).
pub fn parse_hosted_tools(raw: &str) -> Result<Vec<HostedTool>, ProxyError> {
    let invalid = |item: &str| {
        ProxyError::misconfigured(format!(
            "ALLOWED_HOSTED_TOOLS: {item:?} is not `tool_type:tokens_per_call[:usd_per_call]` (e.g. web_search:12000 or image_generation:2000:0.25; tokens from 1 to 10000000)"
        ))
    };
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            let mut parts = item.split(':');
            let (Some(name), Some(tokens), fee, None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
                return Err(invalid(item));
            };
            let name_ok =
                !name.is_empty() && name != "function" && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let tokens = tokens
                .parse::<u64>()
                .ok()
                .filter(|tokens| (1..=10_000_000).contains(tokens));
            let published = TOOL_FEES_USD
                .iter()
                .find(|(tool, _)| *tool == name)
                .map(|(_, usd)| *usd);
            let nano_usd = match fee.or(published) {
                Some(usd) => parse_usd(usd),
                None => Some(0),
            };
            match (name_ok, tokens, nano_usd) {
                (true, Some(tokens), Some(nano_usd)) => Ok(HostedTool {
                    name: name.to_owned(),
                    per_call: PerCall { tokens, nano_usd },
                }),
                _ => Err(invalid(item)),
            }
        })
        .collect()
}

/// What one upstream request can cost, in the model's tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Bytes of the JSON sent upstream: a text never has more tokens than bytes.
    pub body_bytes: u64,
    pub images: u64,
    pub image_tokens_each: u64,
    /// The output cap times the number of choices.
    pub output_tokens: u64,
    /// Hosted tool calls allowed (`max_tool_calls`), and the worst call among the request's
    /// hosted tools.
    pub hosted_tool_calls: u64,
    pub hosted_per_call: PerCall,
    /// A continuation's input bound, its model's context window: OpenAI adds the stored
    /// context, unseen by the proxy, and bills it as input (0 for other requests).
    pub stored_context_tokens: u64,
    /// Image output tokens an image generation may bill (`images::output_bound`), at the
    /// image output price.
    pub image_output_tokens: u64,
}

impl Cost {
    /// Times the model reads the input: once, and again after each hosted tool call (it reads
    /// the tool's result with everything before it).
    fn passes(&self) -> u64 {
        self.hosted_tool_calls.saturating_add(1)
    }

    /// The tokens of every hosted call's result.
    fn hosted_results(&self) -> u64 {
        self.hosted_tool_calls.saturating_mul(self.hosted_per_call.tokens)
    }

    /// The fees of every hosted call the request may make, in nano-USD.
    pub fn hosted_fees_nano_usd(&self) -> u64 {
        self.hosted_tool_calls.saturating_mul(self.hosted_per_call.nano_usd)
    }

    fn image_tokens(&self) -> u64 {
        self.images.saturating_mul(self.image_tokens_each)
    }

    /// The worst case, reserved before the request goes upstream.
    pub fn reserve(&self) -> u64 {
        self.input_side_tokens()
            .saturating_add(self.output_tokens)
            .saturating_add(self.image_output_tokens)
    }

    /// The reserve's tokens billed at the input price: the input for each read (a
    /// continuation's input is at least its stored context window). Each pass after a hosted
    /// call reads that call's result too (search content is billed in `usage`), so the input of
    /// a pass is bounded by the body plus one result for every call. The calls' fees are
    /// dollars, apart (`hosted_fees_nano_usd`).
    pub fn input_side_tokens(&self) -> u64 {
        let input = self
            .body_bytes
            .saturating_add(self.image_tokens())
            .saturating_add(self.hosted_results())
            .max(self.stored_context_tokens);
        input.saturating_mul(self.passes())
    }
}

/// The fees of a request's hosted tool calls, which `usage` does not report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolFees {
    /// Calls reserved (`max_tool_calls`, or one for a search model).
    pub calls: u64,
    /// The dearest fee among the request's hosted tools.
    pub nano_usd_per_call: u64,
}

impl ToolFees {
    /// The fees of the hosted calls an answer lists (all reserved calls when it lists none,
    /// as Chat Completions), in nano-USD.
    pub fn charge(&self, usage: &Usage) -> u64 {
        let calls = usage.hosted_tool_calls.unwrap_or(self.calls);
        calls.saturating_mul(self.nano_usd_per_call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_costs_its_model_s_worst_case_and_unknown_models_the_most() {
        assert_eq!(image_worst_case("gpt-4o-mini"), 48_169);
        assert_eq!(image_worst_case("gpt-4o-mini-2024-07-18"), 48_169);
        assert_eq!(image_worst_case("gpt-4o"), 1_445);
        assert_eq!(image_worst_case("gpt-4o-2024-08-06"), 1_445);
        assert_eq!(image_worst_case("gpt-4.1-nano"), 3_779);
        assert_eq!(image_worst_case("gpt-4o-audio-preview"), 48_169, "not gpt-4o's price");
        assert_eq!(image_worst_case("some-future-model"), 48_169);
        let models = ["gpt-4o".to_owned(), "gpt-4.1-nano".to_owned()];
        assert_eq!(default_image_reserve(&models), 3_779);
    }

    #[test]
    fn hosted_tools_need_a_per_call_reserve_and_have_their_published_fee_in_dollars() {
        let tools = parse_hosted_tools("web_search:12000, file_search:3000 image_generation:2000:0.25 mcp:10").unwrap();
        let per_call = |tokens, nano_usd| PerCall { tokens, nano_usd };
        assert_eq!(tools[0].name, "web_search");
        assert_eq!(tools[0].per_call, per_call(12_000, 10_000_000), "$10 per 1,000 calls");
        assert_eq!(tools[1].per_call, per_call(3_000, 2_500_000), "$2.50 per 1,000 calls");
        assert_eq!(tools[2].per_call, per_call(2_000, 250_000_000), "the operator's fee");
        assert_eq!(
            tools[3].per_call,
            per_call(10, 0),
            "no published fee: a dollar budget refuses it"
        );
        assert_eq!(
            parse_hosted_tools("web_search:1:0.02").unwrap()[0].per_call.nano_usd,
            20_000_000,
            "the operator's fee wins"
        );
        assert!(parse_hosted_tools("").unwrap().is_empty());
        for bad in [
            "web_search",
            "web_search:0",
            "web_search:x",
            ":5",
            "function:10",
            "a/b:5",
            "web_search:5:x",
            "web_search:5:-1",
            "web_search:5:0.01:9",
        ] {
            let detail = parse_hosted_tools(bad).unwrap_err().log_detail().unwrap();
            assert!(detail.starts_with("ALLOWED_HOSTED_TOOLS"), "{bad}");
        }
    }

    #[test]
    fn a_usage_report_is_charged_the_fees_of_the_hosted_calls_that_ran() {
        let fees = ToolFees {
            calls: 3,
            nano_usd_per_call: 1000,
        };
        let reported = |calls| Usage {
            prompt_tokens: 50,
            completion_tokens: 10,
            total_tokens: 60,
            hosted_tool_calls: calls,
            ..Usage::default()
        };
        assert_eq!(fees.charge(&reported(Some(1))), 1000);
        assert_eq!(fees.charge(&reported(Some(0))), 0);
        assert_eq!(fees.charge(&reported(None)), 3000, "unknown: every reserved call");
        assert_eq!(
            ToolFees::default().charge(&reported(Some(2))),
            0,
            "no hosted tool allowed, no fee"
        );
    }

    #[test]
    fn the_reservation_covers_every_read_of_the_input_and_every_tool_fee() {
        let text = Cost {
            body_bytes: 1000,
            output_tokens: 200,
            ..Cost::default()
        };
        assert_eq!(text.reserve(), 1200);
        let rich = Cost {
            body_bytes: 1000,
            images: 2,
            image_tokens_each: 500,
            output_tokens: 200,
            hosted_tool_calls: 2,
            hosted_per_call: PerCall {
                tokens: 3000,
                nano_usd: 10_000_000,
            },
            ..Cost::default()
        };
        // Each of the 3 passes may read the body, the images and both calls' results; the
        // calls' fees are dollars.
        assert_eq!(rich.reserve(), (1000 + 1000 + 6000) * 3 + 200);
        assert_eq!(rich.hosted_fees_nano_usd(), 20_000_000);
        let huge = Cost {
            body_bytes: u64::MAX,
            hosted_tool_calls: u64::MAX,
            hosted_per_call: PerCall {
                tokens: u64::MAX,
                nano_usd: u64::MAX,
            },
            ..Cost::default()
        };
        assert_eq!(huge.hosted_fees_nano_usd(), u64::MAX, "saturates");
        assert_eq!(huge.reserve(), u64::MAX, "saturates, never wraps to a small number");
    }

    #[test]
    fn a_continuation_reserves_its_whole_context_window_as_input() {
        let continuation = Cost {
            body_bytes: 1000,
            output_tokens: 200,
            stored_context_tokens: 128_000,
            ..Cost::default()
        };
        assert_eq!(
            continuation.reserve(),
            128_000 + 200,
            "the unseen stored context is billed as input"
        );
        let with_tools = Cost {
            hosted_tool_calls: 2,
            hosted_per_call: PerCall {
                tokens: 3000,
                nano_usd: 0,
            },
            ..continuation
        };
        assert_eq!(
            with_tools.reserve(),
            128_000 * 3 + 200,
            "each pass reads the whole context"
        );
        let larger_body = Cost {
            body_bytes: 200_000,
            ..continuation
        };
        assert_eq!(
            larger_body.reserve(),
            200_000 + 200,
            "never less than the body's own bound"
        );
    }

    #[test]
    fn context_windows_come_from_the_operator_then_from_openai_s_model_pages() {
        assert_eq!(stated_context_window("gpt-4o-mini"), Some(128_000));
        assert_eq!(stated_context_window("gpt-4o-mini-2024-07-18"), Some(128_000));
        assert_eq!(stated_context_window("gpt-4.1-nano"), Some(1_047_576));
        assert_eq!(
            stated_context_window("gpt-4o-audio-preview"),
            None,
            "not gpt-4o's window"
        );
        assert_eq!(stated_context_window("some-future-model"), None);
        let windows = parse_context_windows("gpt-4o-mini:64000, ft:gpt-4o-mini:acme::abc123:32000").unwrap();
        assert_eq!(windows[1].model, "ft:gpt-4o-mini:acme::abc123");
        let rules = CostRules {
            max_image_inputs: 0,
            image_input_reserve_tokens: 1,
            hosted_tools: vec![],
            max_hosted_tool_calls: 1,
            responses_store: true,
            allow_stored_context: true,
            context_windows: windows,
            allowed_vector_stores: vec![],
        };
        assert_eq!(
            rules.context_window("gpt-4o-mini"),
            Some(64_000),
            "the operator's first"
        );
        assert_eq!(rules.context_window("ft:gpt-4o-mini:acme::abc123"), Some(32_000));
        assert_eq!(rules.context_window("gpt-4o"), Some(128_000));
        assert_eq!(rules.context_window("my-model"), None);
        for bad in [
            "gpt-4o-mini",
            "gpt-4o-mini:0",
            ":5",
            "gpt-4o-mini:lots",
            "gpt-4o-mini:20000000",
        ] {
            let detail = parse_context_windows(bad).unwrap_err().log_detail().unwrap();
            assert!(detail.starts_with("MODEL_CONTEXT_TOKENS"), "{bad}");
        }
    }
}
