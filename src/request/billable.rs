//! Fields that bill what the proxy cannot see or bound: refused (400, `param` names the field),
//! bounded, or rewritten before the request goes upstream. The "Refused fields" table of
//! docs/limits-and-costs.md lists them with the variable that allows each.

use serde_json::{json, Map, Value};

use crate::budget::cost::{is_search_model, CostRules, PerCall};
use crate::error::ProxyError;
use crate::objects::owned_responses::MAX_RESPONSE_ID_BYTES;
use crate::request::attribution::SafetyKey;
use crate::request::forwarding::UpstreamEndpoint;
use crate::request::prompt::PromptMeter;

/// Responses API fields that make OpenAI add stored context the proxy can neither see nor bound
/// (and that let one user continue another's response: all share the operator's organisation).
/// `previous_response_id` alone can be allowed (`ALLOW_STORED_CONTEXT`): see `continuation`.
const STORED_CONTEXT_FIELDS: [&str; 3] = ["previous_response_id", "conversation", "prompt"];

/// Every request upstream says which user it is for, as an opaque HMAC of `sub`
/// (`safety_identifier`; Embeddings only knows the older `user`). The client's own `user` or
/// `safety_identifier` is replaced, not forwarded: it could blame another user.
pub(crate) fn attribute(
    body: &mut Map<String, Value>,
    safety_key: &SafetyKey,
    sub: &str,
    endpoint: UpstreamEndpoint,
) -> Result<(), ProxyError> {
    let identifier = safety_key.identifier(sub);
    body.remove("user");
    body.remove("safety_identifier");
    let field = match endpoint {
        UpstreamEndpoint::Embeddings | UpstreamEndpoint::ImageGenerations => "user",
        UpstreamEndpoint::ChatCompletions | UpstreamEndpoint::Responses => "safety_identifier",
        // The audio endpoints take neither: their fields are an allow-list of their own.
        UpstreamEndpoint::AudioTranscriptions | UpstreamEndpoint::AudioSpeech => return Ok(()),
    };
    body.insert(field.into(), Value::String(identifier));
    Ok(())
}

/// Fields that change the price per token, or add cost the proxy cannot see or bound.
pub(crate) fn check_price_fields(
    body: &Map<String, Value>,
    endpoint: UpstreamEndpoint,
    rules: &CostRules,
) -> Result<(), ProxyError> {
    let refuse = |field: &str, why: &str| Err(ProxyError::invalid_request(format!("`{field}` {why}"), Some(field)));
    match body.get("service_tier") {
        None | Some(Value::Null) => {}
        Some(Value::String(tier)) if tier == "auto" || tier == "default" => {}
        Some(_) => {
            return refuse(
                "service_tier",
                "must be `auto` or `default`: other tiers change the price per token.",
            )
        }
    }
    if !is_null(body.get("prediction")) {
        return refuse(
            "prediction",
            "is not accepted: rejected prediction tokens are billed as output.",
        );
    }
    match endpoint {
        UpstreamEndpoint::ChatCompletions => {
            if !is_null(body.get("audio")) {
                return refuse("audio", "is not accepted: audio output is billed at audio rates.");
            }
            if let Some(modalities) = body.get("modalities").filter(|value| !value.is_null()) {
                let text_only = modalities
                    .as_array()
                    .is_some_and(|list| list.iter().all(|m| m == "text"));
                if !text_only {
                    return refuse("modalities", "may only ask for text.");
                }
            }
        }
        UpstreamEndpoint::Responses => {
            match body.get("background") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                Some(_) => {
                    return refuse(
                        "background",
                        "is not accepted: a background response goes on generating unmetered.",
                    )
                }
            }
            let allowed = |field: &str| field == "previous_response_id" && rules.allow_stored_context;
            if let Some(field) = STORED_CONTEXT_FIELDS
                .iter()
                .find(|f| !allowed(f) && !is_null(body.get(**f)))
            {
                return refuse(
                    field,
                    "is not accepted: the proxy cannot see or bound the stored context it adds.",
                );
            }
        }
        UpstreamEndpoint::Embeddings
        | UpstreamEndpoint::ImageGenerations
        | UpstreamEndpoint::AudioTranscriptions
        | UpstreamEndpoint::AudioSpeech => {}
    }
    Ok(())
}

/// The response a Responses request continues, if any (`check_price_fields` has refused
/// `previous_response_id` unless `ALLOW_STORED_CONTEXT` is on). Admitted only if this user
/// created it (checked in the user's object, with admission).
pub(crate) fn continuation(body: &Map<String, Value>) -> Result<Option<String>, ProxyError> {
    match body.get("previous_response_id") {
        None | Some(Value::Null) => Ok(None),
        Some(id) => stored_id(id, "previous_response_id").map(Some),
    }
}

/// An id that names stored state this user must own: one OpenAI could have given.
pub(crate) fn stored_id(id: &Value, param: &str) -> Result<String, ProxyError> {
    id.as_str()
        .filter(|id| !id.is_empty() && id.len() <= MAX_RESPONSE_ID_BYTES)
        .map(str::to_owned)
        .ok_or_else(|| {
            ProxyError::invalid_request(
                format!("`{param}` must be an id (a string of 1 to {MAX_RESPONSE_ID_BYTES} bytes)."),
                Some(param),
            )
        })
}

/// What a request that names stored state (a response it continues, items by id) reserves as
/// input: the model's context window, once, since OpenAI adds the stored context whatever
/// its size and the proxy cannot see it.
pub(crate) fn stored_context_tokens(rules: &CostRules, model: &str) -> Result<u64, ProxyError> {
    // The configuration guarantees a window for every allowed model; fail closed regardless.
    rules.context_window(model).ok_or_else(|| {
        ProxyError::misconfigured(format!(
            "no context window for {model:?}: add it to MODEL_CONTEXT_TOKENS"
        ))
    })
}

/// `field` (`tools`, or the older `functions`): function definitions count toward the prompt
/// size; a hosted tool (any other `type`) needs the operator's leave (`ALLOWED_HOSTED_TOOLS`).
/// Returns the worst call of the hosted tools present (none when there are none).
pub(crate) fn check_tools(
    body: &Map<String, Value>,
    field: &str,
    meter: &mut PromptMeter,
    rules: &CostRules,
) -> Result<Option<PerCall>, ProxyError> {
    let tools = match body.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(tools)) => tools,
        Some(_) => {
            return Err(ProxyError::invalid_request(
                format!("`{field}` must be an array."),
                Some(field),
            ))
        }
    };
    let mut per_call = None;
    for (index, tool) in tools.iter().enumerate() {
        meter.at(&format!("{field}[{index}]"), |meter| {
            // Legacy `functions` entries have no type: they are functions.
            let kind = match tool.get("type") {
                None if field == "functions" => "function",
                Some(Value::String(kind)) => kind.as_str(),
                _ => return Err(meter.refuse(".type", "A tool's `type` must be a string.")),
            };
            if kind == "function" {
                return meter.definition(tool);
            }
            per_call = worst(per_call, Some(hosted_tool(tool, kind, meter, rules)?));
            meter.json(tool)
        })?;
    }
    Ok(per_call)
}

/// A hosted tool (`kind` is not `function`), wherever it is given: the operator must allow it
/// (`ALLOWED_HOSTED_TOOLS`), and its settings may not name the organisation's resources.
/// Returns what one call of it may cost; `meter` is at the tool.
pub(crate) fn hosted_tool(
    tool: &Value,
    kind: &str,
    meter: &PromptMeter,
    rules: &CostRules,
) -> Result<PerCall, ProxyError> {
    let hosted = rules.hosted_tool(kind).ok_or_else(|| {
        meter.refuse(
            ".type",
            format!("This proxy does not allow the hosted tool `{kind}`; only `function` tools."),
        )
    })?;
    check_tool_resources(tool, rules).map_err(|(suffix, why)| meter.refuse(&suffix, why))?;
    Ok(hosted.per_call)
}

/// A hosted tool's settings that name resources of the operator's organisation, which every
/// user shares: vector stores only from `ALLOWED_VECTOR_STORES`; files (`file_id`, `file_ids`
/// anywhere in the settings) and existing containers (a `container` given by id) never. A
/// client can neither upload files nor create stores or containers through the proxy, so any
/// id it names is the operator's or another user's. Returns the refused field's path and why.
fn check_tool_resources(tool: &Value, rules: &CostRules) -> Result<(), (String, String)> {
    match tool.get("vector_store_ids") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stores)) => {
            if let Some(index) = stores.iter().position(|store| {
                !store
                    .as_str()
                    .is_some_and(|id| rules.allowed_vector_stores.iter().any(|allowed| allowed == id))
            }) {
                return Err((
                    format!(".vector_store_ids[{index}]"),
                    "This proxy does not allow searching that vector store.".into(),
                ));
            }
        }
        Some(_) => {
            return Err((
                ".vector_store_ids".into(),
                "`vector_store_ids` must be an array.".into(),
            ))
        }
    }
    if tool.get("container").is_some_and(Value::is_string) {
        return Err((
            ".container".into(),
            "A container must be `{\"type\": \"auto\"}`: this proxy does not allow existing containers.".into(),
        ));
    }
    match file_reference(tool) {
        Some(path) => Err((
            path,
            "This proxy does not allow a hosted tool to read files by id.".into(),
        )),
        None => Ok(()),
    }
}

/// The path of the first `file_id` or `file_ids` in `value` that names something.
fn file_reference(value: &Value) -> Option<String> {
    match value {
        Value::Object(fields) => fields.iter().find_map(|(key, field)| {
            if matches!(key.as_str(), "file_id" | "file_ids") && !is_empty(field) {
                return Some(format!(".{key}"));
            }
            file_reference(field).map(|path| format!(".{key}{path}"))
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| file_reference(item).map(|path| format!("[{index}]{path}"))),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => None,
    }
}

/// Null, or an empty string, array or object: names nothing.
pub(crate) fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// `max_tool_calls` of a request with hosted tools: at most `MAX_HOSTED_TOOL_CALLS`, and set to
/// it when the client sets none, so that the fees have a bound.
pub(crate) fn hosted_call_cap(body: &mut Map<String, Value>, rules: &CostRules) -> Result<u64, ProxyError> {
    let max = rules.max_hosted_tool_calls;
    match body.get("max_tool_calls") {
        None | Some(Value::Null) => {
            body.insert("max_tool_calls".into(), json!(max));
            Ok(max)
        }
        Some(value) => match value.as_u64() {
            Some(calls) if (1..=max).contains(&calls) => Ok(calls),
            _ => Err(ProxyError::invalid_request(
                format!("`max_tool_calls` must be a whole number from 1 to {max} with hosted tools."),
                Some("max_tool_calls"),
            )),
        },
    }
}

fn is_null(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null))
}

/// A search model (`is_search_model`, or any model given `web_search_options` in Chat
/// Completions) searches once per request, `web_search_options` or not, and bills it like the
/// `web_search` tool: one of its calls, or a refusal when it is not allowed.
pub(crate) fn search_model_fee(
    body: &Map<String, Value>,
    model: &str,
    rules: &CostRules,
) -> Result<Option<PerCall>, ProxyError> {
    let (field, refusal) = if is_search_model(model) {
        (
            "model",
            format!("`{model}` searches the web on every call, and this proxy does not allow web search."),
        )
    } else if !is_null(body.get("web_search_options")) {
        (
            "web_search_options",
            "`web_search_options` is not accepted: this proxy does not allow web search.".to_owned(),
        )
    } else {
        return Ok(None);
    };
    let web_search = rules
        .hosted_tool("web_search")
        .ok_or_else(|| ProxyError::invalid_request(refusal, Some(field)))?;
    Ok(Some(web_search.per_call))
}

/// The worse of two hosted tools' calls; `None` is no hosted tool.
pub(crate) fn worst(a: Option<PerCall>, b: Option<PerCall>) -> Option<PerCall> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (one, None) | (None, one) => one,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::config::Config;
    use crate::error::ProxyError;
    use crate::request::ApiRequest;
    use crate::testing::policy::{parse_chat_request, parse_responses_request};

    fn responses(extra: Value, config: &Config) -> Result<ApiRequest, ProxyError> {
        let mut body = json!({"model": "gpt-4o-mini", "input": "hi"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse_responses_request(body.to_string().as_bytes(), config, "alice")
    }

    fn chat(extra: Value, config: &Config) -> Result<ApiRequest, ProxyError> {
        let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse_chat_request(body.to_string().as_bytes(), config, "alice")
    }

    fn refused_at(result: Result<ApiRequest, ProxyError>) -> Option<String> {
        let Err(ProxyError::InvalidRequest { param, .. }) = result else {
            return None;
        };
        param
    }

    #[test]
    fn only_a_legacy_functions_entry_may_leave_out_its_type() {
        let config = Config::for_tests(&[]).unwrap();
        let function = json!({"name": "f", "parameters": {"type": "object"}});
        assert!(chat(json!({"functions": [function.clone()]}), &config).is_ok());
        assert_eq!(
            refused_at(chat(json!({"tools": [{"function": function}]}), &config)).as_deref(),
            Some("tools[0].type"),
            "a `tools` entry without a type is not taken for a function"
        );
    }

    fn forwarded(request: &ApiRequest) -> Value {
        serde_json::from_str(request.upstream_body()).unwrap()
    }

    #[test]
    fn file_search_may_search_only_the_vector_stores_the_operator_lists() {
        let tools = |stores: Value| json!({"tools": [{"type": "file_search", "vector_store_ids": stores}]});
        let unlisted = Config::for_tests(&[("ALLOWED_HOSTED_TOOLS", "file_search:800")]).unwrap();
        assert_eq!(
            refused_at(responses(tools(json!(["vs_operator_private"])), &unlisted)).as_deref(),
            Some("tools[0].vector_store_ids[0]"),
            "no store is listed by default"
        );
        let listed = Config::for_tests(&[
            ("ALLOWED_HOSTED_TOOLS", "file_search:800"),
            ("ALLOWED_VECTOR_STORES", "vs_docs, vs_faq"),
        ])
        .unwrap();
        assert!(responses(tools(json!(["vs_faq", "vs_docs"])), &listed).is_ok());
        for (stores, field) in [
            (
                json!(["vs_docs", "vs_operator_private"]),
                "tools[0].vector_store_ids[1]",
            ),
            (json!([7]), "tools[0].vector_store_ids[0]"),
            (json!("vs_docs"), "tools[0].vector_store_ids"),
        ] {
            assert_eq!(refused_at(responses(tools(stores), &listed)).as_deref(), Some(field));
        }
    }

    #[test]
    fn a_hosted_tool_may_not_name_files_or_existing_containers_of_the_organisation() {
        let config =
            Config::for_tests(&[("ALLOWED_HOSTED_TOOLS", "code_interpreter:1000,image_generation:2000")]).unwrap();
        let auto = json!({"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]});
        assert!(responses(auto, &config).is_ok());
        for (tool, field) in [
            (
                json!({"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-payroll"]}}),
                "tools[0].container.file_ids",
            ),
            (
                json!({"type": "code_interpreter", "container": "cntr_someone_else"}),
                "tools[0].container",
            ),
            (
                json!({"type": "image_generation", "input_image_mask": {"file_id": "file-x"}}),
                "tools[0].input_image_mask.file_id",
            ),
        ] {
            assert_eq!(
                refused_at(responses(json!({ "tools": [tool] }), &config)).as_deref(),
                Some(field)
            );
        }
        let no_files = json!({"tools": [{"type": "code_interpreter", "container": {"type": "auto", "file_ids": []}}]});
        assert!(responses(no_files, &config).is_ok(), "an empty list names nothing");
    }

    #[test]
    fn a_search_model_is_web_search_on_every_call_and_pays_its_fee_without_web_search_options() {
        let models = "gpt-4o-mini,gpt-4o-search-preview,gpt-4o-mini-search-preview-2025-03-11,gpt-5-search-api";
        let refusing = Config::for_tests(&[("ALLOWED_MODELS", models)]).unwrap();
        let allowing =
            Config::for_tests(&[("ALLOWED_MODELS", models), ("ALLOWED_HOSTED_TOOLS", "web_search:5000")]).unwrap();
        for model in [
            "gpt-4o-search-preview",
            "gpt-4o-mini-search-preview-2025-03-11",
            "gpt-5-search-api",
        ] {
            let body = json!({ "model": model });
            assert_eq!(
                refused_at(chat(body.clone(), &refusing)).as_deref(),
                Some("model"),
                "{model} searches though web_search is not allowed"
            );
            let request = chat(body, &allowing).unwrap();
            let bytes = request.upstream_body().len() as u64;
            assert_eq!(request.reserve_tokens, (bytes + 5000) * 2 + 1024, "{model}");
            assert_eq!(
                (request.tool_fees.calls, request.tool_fees.nano_usd_per_call),
                (1, 10_000_000)
            );
            assert_eq!(
                refused_at(responses(json!({ "model": model }), &refusing)).as_deref(),
                Some("model")
            );
        }
        let plain = chat(json!({}), &allowing).unwrap();
        assert_eq!(plain.tool_fees.calls, 0, "other models pay no search fee");
    }

    #[test]
    fn chat_completions_are_not_stored_unless_the_operator_says_so() {
        let default = Config::for_tests(&[]).unwrap();
        for extra in [json!({"store": true}), json!({})] {
            assert_eq!(forwarded(&chat(extra, &default).unwrap())["store"], false);
        }
        let storing = Config::for_tests(&[("RESPONSES_STORE", "true")]).unwrap();
        assert_eq!(
            forwarded(&chat(json!({"store": true}), &storing).unwrap())["store"],
            true
        );
    }
}
