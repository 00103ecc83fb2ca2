//! `POST /v1/responses`: input items, instructions and tools, stored responses and their
//! continuations.

use serde_json::Value;

use super::billable::{attribute, check_price_fields, check_tools, continuation, hosted_call_cap};
use super::forwarding::UpstreamEndpoint;
use super::prompt::PromptMeter;
use super::{
    check_model, check_stream, finish, image_cost, meter, output_cap, parse_object, require_content, ApiRequest, Draft,
    Rules,
};
use crate::budget::cost::Cost;
use crate::error::ProxyError;

/// `POST /v1/responses`: `input` (a string or items of any type), `instructions`, tools and
/// `text.format` count toward the prompt size; `max_output_tokens` is the output cap. Its
/// streams always end with the usage (in `response.completed`), so there is nothing to ask for
/// or to hide.
pub(super) fn responses(bytes: &[u8], plan_rules: Rules, sub: &str) -> Result<ApiRequest, ProxyError> {
    let Rules { settings, plan } = plan_rules;
    let mut body = parse_object(bytes)?;
    let limits = &plan.request_limits;
    let rules = &plan.cost_rules;
    let model = check_model(&body, plan)?;
    check_price_fields(&body, UpstreamEndpoint::Responses, rules)?;
    let continuation = continuation(&body, rules, &model)?;
    let mut meter = meter(limits, rules);
    read_input_items(body.get("input"), &mut meter)?;
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => meter.at("instructions", |meter| meter.text(text))?,
        Some(_) => {
            return Err(ProxyError::invalid_request(
                "`instructions` must be a string.",
                Some("instructions"),
            ))
        }
    }
    require_content(&meter, "input")?;
    let per_call = check_tools(&body, "tools", &mut meter, rules)?;
    if let Some(format) = body.get("text").and_then(|text| text.get("format")) {
        meter.at("text.format", |meter| meter.json(format))?;
    }
    // A hosted tool may run up to `max_tool_calls` times in one response, each with its fee.
    let hosted_tool_calls = if per_call > 0 {
        hosted_call_cap(&mut body, rules)?
    } else {
        0
    };
    let output_cap = output_cap(&mut body, limits, &["max_output_tokens"])?;
    let stream = check_stream(&body)?;
    // Stored by default upstream; a stored response is context the proxy cannot bound later.
    if !rules.responses_store {
        body.insert("store".into(), Value::Bool(false));
    }
    let stored = !matches!(body.get("store"), Some(Value::Bool(false)));
    attribute(&mut body, settings.safety_key()?, sub, UpstreamEndpoint::Responses)?;
    let cost = Cost {
        output_tokens: output_cap,
        hosted_tool_calls,
        hosted_tokens_per_call: per_call,
        stored_context_tokens: continuation.as_ref().map_or(0, |c| c.context_tokens),
        ..image_cost(&meter, rules)
    };
    let price = settings.prices.of(&model);
    Ok(finish(
        body,
        Draft {
            endpoint: UpstreamEndpoint::Responses,
            model,
            stream,
            client_wants_usage: true,
            cost,
            prompt_chars: meter.chars,
            continues: continuation.map(|c| c.response_id),
            records_response: stored && rules.allow_stored_context,
            price,
        },
    ))
}

/// The Responses `input`: a string, or items of any type, every string of which the model reads.
fn read_input_items(input: Option<&Value>, meter: &mut PromptMeter) -> Result<(), ProxyError> {
    let items = match input {
        Some(Value::String(text)) => return meter.at("input", |meter| meter.text(text)),
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(ProxyError::invalid_request(
                "`input` must be a string or a non-empty array of items.",
                Some("input"),
            ))
        }
    };
    for (index, item) in items.iter().enumerate() {
        meter.at(&format!("input[{index}]"), |meter| {
            if item.get("type").and_then(Value::as_str) == Some("item_reference") {
                return Err(meter.refuse(
                    "",
                    "`item_reference` input items are not accepted: the proxy cannot see or bound stored items.",
                ));
            }
            meter.content(item)
        })?;
    }
    Ok(())
}
