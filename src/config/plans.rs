//! Each plan's models, request limits, cost rules and per-user limits, read through `Vars` (the
//! top-level variables, or a plan's overlay over them); the global budget; and the check that a
//! dollar budget has a price for every model it may pay for.

use std::collections::BTreeMap;

use super::vars::{Lookup, Vars};
use crate::auth::guest::{GUEST_PLAN, GUEST_PLAN_DEFAULTS};
use crate::budget::cost::{self, CostRules};
use crate::budget::plans::{AudioRules, Plan, RequestLimits};
use crate::budget::prices::Prices;
use crate::budget::quota::{Limits, RateLimit};
use crate::error::ProxyError;

/// `ALLOWED_MODELS` when unset: a current small model (README, Prices).
pub const DEFAULT_MODEL: &str = "gpt-6-luna";

/// One plan's variables, read through `vars` (the top-level ones, or a plan's overlay over them).
pub(super) fn plan(name: &str, vars: &Vars<impl Lookup>) -> Result<Plan, ProxyError> {
    let allowed_models = vars
        .list("ALLOWED_MODELS")
        .unwrap_or_else(|| vec![DEFAULT_MODEL.to_owned()]);
    Ok(Plan {
        name: name.to_owned(),
        request_limits: request_limits(vars)?,
        cost_rules: cost_rules(vars, &allowed_models)?,
        images: super::images::image_rules(vars)?,
        user_limits: user_limits(vars)?,
        allowed_models,
        audio: AudioRules {
            transcribe_models: vars.list("TRANSCRIBE_MODELS").unwrap_or_default(),
            speech_models: vars.list("SPEECH_MODELS").unwrap_or_default(),
            max_audio_seconds: vars.number("MAX_AUDIO_SECONDS", 600, 1..=14_400)?,
        },
        voice_models: vars.list("VOICE_MODELS").unwrap_or_default(),
    })
}

/// Plan `guest` when `PLANS` has none: the guest defaults over the top-level variables, with
/// only the first allowed model and no audio model.
pub(super) fn guest_plan(vars: &Vars<impl Lookup>, first_model: &str) -> Result<Plan, ProxyError> {
    let overlaid = vars.overlaid(move |variable: &str| {
        if variable == "ALLOWED_MODELS" {
            return Some(first_model.to_owned());
        }
        GUEST_PLAN_DEFAULTS
            .iter()
            .find(|(name, _)| *name == variable)
            .map(|(_, value)| (*value).to_owned())
    });
    // Guests get no audio unless `PLANS` gives plan `guest` its own.
    let mut guest = plan(GUEST_PLAN, &overlaid)?;
    guest.audio.transcribe_models.clear();
    guest.audio.speech_models.clear();
    Ok(guest)
}

/// A dollar budget can only hold if every model a user may call has a price, and every hosted
/// tool a fee: with one set anywhere, a model without a price or a tool without a fee makes the
/// whole configuration invalid.
pub(super) fn check_prices(
    prices: &Prices,
    default_plan: &Plan,
    plans: &BTreeMap<String, Plan>,
    global: Option<&Limits>,
    guest_global: Option<&Limits>,
) -> Result<(), ProxyError> {
    let all_plans = || std::iter::once(default_plan).chain(plans.values());
    let budget = global
        .and_then(|limits| limits.daily_nano_usd.map(|_| "GLOBAL_DAILY_BUDGET_USD".to_owned()))
        .or_else(|| guest_global.map(|_| "GLOBAL_GUEST_DAILY_BUDGET_USD".to_owned()))
        .or_else(|| {
            all_plans()
                .find(|plan| plan.user_limits.daily_nano_usd.is_some())
                .map(|plan| format!("DAILY_BUDGET_USD (plan {:?})", plan.name))
        });
    let Some(budget) = budget else { return Ok(()) };
    for plan in all_plans() {
        let image_unpriced = |model: &&String| prices.of(model).and_then(|price| price.image_output).is_none();
        if let Some(model) = plan.images.models.iter().find(image_unpriced) {
            return Err(ProxyError::misconfigured(format!(
                "MODEL_PRICES has no image_output price for {model:?} (IMAGE_MODELS of plan {:?}), and {budget} is set",
                plan.name
            )));
        }
        if let Some(model) = plan.all_models().find(|model| prices.of(model).is_none()) {
            return Err(ProxyError::misconfigured(format!(
                "MODEL_PRICES has no price for model {model:?} (allowed by plan {:?}), and {budget} is set: add it to MODEL_PRICES or remove it from ALLOWED_MODELS",
                plan.name
            )));
        }
        let tools = &plan.cost_rules.hosted_tools;
        if let Some(tool) = tools.iter().find(|tool| tool.per_call.nano_usd == 0) {
            return Err(ProxyError::misconfigured(format!(
                "ALLOWED_HOSTED_TOOLS: {:?} (plan {:?}) has no published fee, and {budget} is set: write its fee per call in USD, e.g. {}:{}:0.01",
                tool.name, plan.name, tool.name, tool.per_call.tokens
            )));
        }
    }
    Ok(())
}

/// What a request may spend beyond text: images, hosted tools, stored responses. The image
/// reserve defaults to the worst case of the allowed models.
pub(super) fn cost_rules(vars: &Vars<impl Lookup>, allowed_models: &[String]) -> Result<CostRules, ProxyError> {
    let rules = CostRules {
        max_image_inputs: vars.number("MAX_IMAGE_INPUTS", 0, 0..=100)?,
        image_input_reserve_tokens: vars.number(
            "IMAGE_INPUT_RESERVE_TOKENS",
            cost::default_image_reserve(allowed_models),
            1..=10_000_000,
        )?,
        hosted_tools: cost::parse_hosted_tools(vars.text("ALLOWED_HOSTED_TOOLS").as_deref().unwrap_or(""))?,
        max_hosted_tool_calls: vars.number("MAX_HOSTED_TOOL_CALLS", 1, 1..=100)?,
        responses_store: vars.flag("RESPONSES_STORE", false)?,
        allow_stored_context: vars.flag("ALLOW_STORED_CONTEXT", false)?,
        context_windows: cost::parse_context_windows(vars.text("MODEL_CONTEXT_TOKENS").as_deref().unwrap_or(""))?,
        allowed_vector_stores: vars.list("ALLOWED_VECTOR_STORES").unwrap_or_default(),
    };
    if rules.allow_stored_context {
        check_stored_context(&rules, allowed_models)?;
    }
    Ok(rules)
}

/// Continuing a response needs stored responses, and the context window of every model it may
/// run on: that window is its reservation. Without one the proxy could only guess, and a guess
/// too small lets a user spend past the budget (docs/limits-and-costs.md: What a request costs).
pub(super) fn check_stored_context(rules: &CostRules, allowed_models: &[String]) -> Result<(), ProxyError> {
    if !rules.responses_store {
        return Err(ProxyError::misconfigured(
            "ALLOW_STORED_CONTEXT=true needs RESPONSES_STORE=true: without stored responses there is nothing to continue",
        ));
    }
    match allowed_models.iter().find(|model| rules.context_window(model).is_none()) {
        Some(model) => Err(ProxyError::misconfigured(format!(
            "ALLOW_STORED_CONTEXT=true: the context window of {model:?} is unknown; add it to MODEL_CONTEXT_TOKENS (e.g. {model}:128000, from the model's page)"
        ))),
        None => Ok(()),
    }
}

pub(super) fn request_limits(vars: &Vars<impl Lookup>) -> Result<RequestLimits, ProxyError> {
    Ok(RequestLimits {
        max_output_tokens: vars.number("MAX_OUTPUT_TOKENS", 1024, 1..=1_000_000)?,
        max_n: vars.number("MAX_N", 1, 1..=128)?,
        max_prompt_chars: vars.number("MAX_PROMPT_CHARS", 8000, 1..=10_000_000)?,
    })
}

pub(super) fn user_limits(vars: &Vars<impl Lookup>) -> Result<Limits, ProxyError> {
    Ok(Limits {
        rate: Some(RateLimit {
            requests: vars.number("RATE_LIMIT_REQUESTS", 20, 1..=1000)?,
            window: vars.seconds("RATE_LIMIT_WINDOW_SECONDS", 900, 1..=604_800)?,
        }),
        max_streams: Some(vars.number("MAX_CONCURRENT_STREAMS", 2, 1..=100)?),
        daily_tokens: Some(vars.number("DAILY_TOKEN_BUDGET", 100_000, 1..=1_000_000_000_000)?),
        daily_nano_usd: vars.usd("DAILY_BUDGET_USD")?,
    })
}

/// The budget of all users together; none unless `GLOBAL_DAILY_TOKEN_BUDGET` or
/// `GLOBAL_DAILY_BUDGET_USD` is set.
pub(super) fn global_limits(vars: &Vars<impl Lookup>) -> Result<Option<Limits>, ProxyError> {
    let tokens = vars.optional_number("GLOBAL_DAILY_TOKEN_BUDGET", 1..=1_000_000_000_000_000)?;
    let nano_usd = vars.usd("GLOBAL_DAILY_BUDGET_USD")?;
    Ok((tokens.is_some() || nano_usd.is_some()).then_some(Limits {
        rate: None,
        max_streams: None,
        daily_tokens: tokens,
        daily_nano_usd: nano_usd,
    }))
}
