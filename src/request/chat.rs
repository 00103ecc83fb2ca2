//! `POST /v1/chat/completions`: the messages' shape, what the model reads, and the rewriting
//! for upstream.

use serde_json::{json, Map, Value};

use super::billable::{attribute, check_price_fields, check_tools, search_model_fee, worst};
use super::forwarding::UpstreamEndpoint;
use super::prompt::PromptMeter;
use super::{
    check_model, check_stream, finish, image_cost, meter, output_cap, require_content, ApiRequest, Draft, Rules,
};
use crate::budget::cost::Cost;
use crate::error::ProxyError;

const VALID_ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// The checks every chat request passes, and the rewriting for upstream.
pub(super) fn checked(mut body: Map<String, Value>, plan_rules: Rules, sub: &str) -> Result<ApiRequest, ProxyError> {
    let Rules { settings, plan } = plan_rules;
    let limits = &plan.request_limits;
    let rules = &plan.cost_rules;
    let model = check_model(&body, plan)?;
    let mut meter = meter(limits, rules);
    check_messages(body.get("messages"), &mut meter)?;
    check_price_fields(&body, UpstreamEndpoint::ChatCompletions, rules)?;
    let mut per_call = check_tools(&body, "tools", &mut meter, rules)?;
    per_call = worst(per_call, check_tools(&body, "functions", &mut meter, rules)?);
    if let Some(schema) = body.get("response_format") {
        meter.at("response_format", |meter| meter.json(schema))?;
    }
    per_call = worst(per_call, search_model_fee(&body, &model, rules)?);
    // Chat Completions has no `max_tool_calls`: an allowed hosted tool is reserved one call.
    let hosted_tool_calls = u64::from(per_call.is_some());
    let output_cap = output_cap(&mut body, limits, &["max_completion_tokens", "max_tokens"])?;
    let n = match body.get("n") {
        None | Some(Value::Null) => 1,
        Some(value) => match value.as_u64() {
            Some(n) if (1..=limits.max_n).contains(&n) => n,
            _ => {
                return Err(ProxyError::invalid_request(
                    format!("`n` must be a whole number from 1 to {}.", limits.max_n),
                    Some("n"),
                ))
            }
        },
    };
    let stream = check_stream(&body)?;
    // A stored chat completion stays in the operator's organisation (and its dashboard):
    // the same leave as stored Responses.
    if !rules.responses_store {
        body.insert("store".into(), Value::Bool(false));
    }
    let mut client_wants_usage = false;
    if stream {
        let options = body.entry("stream_options").or_insert_with(|| json!({}));
        let Value::Object(options) = options else {
            return Err(ProxyError::invalid_request(
                "`stream_options` must be an object.",
                Some("stream_options"),
            ));
        };
        client_wants_usage = options.get("include_usage") == Some(&Value::Bool(true));
        options.insert("include_usage".into(), Value::Bool(true));
    }
    attribute(
        &mut body,
        settings.safety_key()?,
        sub,
        UpstreamEndpoint::ChatCompletions,
    )?;
    let cost = Cost {
        output_tokens: output_cap.saturating_mul(n),
        hosted_tool_calls,
        hosted_per_call: per_call.unwrap_or_default(),
        ..image_cost(&meter, rules)
    };
    let price = settings.prices.of(&model);
    Ok(finish(
        body,
        Draft {
            endpoint: UpstreamEndpoint::ChatCompletions,
            model,
            stream,
            client_wants_usage,
            cost,
            prompt_chars: meter.chars,
            continues: None,
            references: vec![],
            records_response: false,
            price,
        },
    ))
}

/// The shape of `messages`, and everything in them the model reads (`PromptMeter::content`).
fn check_messages(messages: Option<&Value>, meter: &mut PromptMeter) -> Result<(), ProxyError> {
    let messages = match messages {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        Some(_) => {
            return Err(ProxyError::invalid_request(
                "`messages` must be a non-empty array.",
                Some("messages"),
            ))
        }
        None => return Err(ProxyError::invalid_request("`messages` is required.", Some("messages"))),
    };
    for (index, message) in messages.iter().enumerate() {
        let field = |name: &str| format!("messages[{index}]{name}");
        let invalid = |name: &str, why: &str| {
            let param = field(name);
            ProxyError::invalid_request(format!("`{param}` {why}"), Some(&param))
        };
        let Value::Object(fields) = message else {
            return Err(invalid("", "must be an object."));
        };
        match fields.get("role") {
            Some(Value::String(role)) if VALID_ROLES.contains(&role.as_str()) => {}
            _ => {
                let roles = VALID_ROLES.join(", ");
                return Err(invalid(".role", &format!("must be one of {roles}.")));
            }
        }
        match fields.get("content") {
            Some(Value::String(_)) | Some(Value::Null) | None => {}
            Some(Value::Array(parts)) => {
                if let Some(part_index) = parts.iter().position(|part| !part.is_object()) {
                    return Err(invalid(
                        &format!(".content[{part_index}]"),
                        "must be a content part object.",
                    ));
                }
            }
            Some(_) => return Err(invalid(".content", "must be a string or an array of content parts.")),
        }
    }
    meter.at("messages", |meter| {
        for (index, message) in messages.iter().enumerate() {
            meter.at(&format!("[{index}]"), |meter| meter.content(message))?;
        }
        Ok(())
    })?;
    require_content(meter, "messages")
}
