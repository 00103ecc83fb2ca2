//! `POST /v1/responses`: input items, instructions and tools, stored responses and their
//! continuations.

use serde_json::Value;

use super::billable::{
    attribute, check_price_fields, check_tools, continuation, hosted_call_cap, hosted_tool, is_empty, search_model_fee,
    stored_context_tokens, stored_id, worst,
};
use super::forwarding::UpstreamEndpoint;
use super::prompt::PromptMeter;
use super::{
    check_model, check_stream, finish, image_cost, meter, output_cap, parse_object, require_content, ApiRequest, Draft,
    Rules,
};
use crate::budget::cost::{Cost, CostRules, PerCall};
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
    let continues = continuation(&body)?;
    let mut meter = meter(limits, rules);
    let InputItems {
        tools_per_call: input_tools_per_call,
        references,
    } = read_input_items(body.get("input"), &mut meter, rules)?;
    let stored_context_tokens = if continues.is_some() || !references.is_empty() {
        stored_context_tokens(rules, &model)?
    } else {
        0
    };
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
    let per_call = worst(
        worst(
            check_tools(&body, "tools", &mut meter, rules)?,
            search_model_fee(&body, &model, rules)?,
        ),
        input_tools_per_call,
    );
    if let Some(format) = body.get("text").and_then(|text| text.get("format")) {
        meter.at("text.format", |meter| meter.json(format))?;
    }
    // A hosted tool may run up to `max_tool_calls` times in one response, each with its fee.
    let hosted_tool_calls = if per_call.is_some() {
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
        hosted_per_call: per_call.unwrap_or_default(),
        stored_context_tokens,
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
            continues,
            references,
            records_response: stored && rules.allow_stored_context,
            price,
        },
    ))
}

/// What the Responses `input` adds to a request besides what the meter reads.
#[derive(Default)]
struct InputItems {
    /// The worst call of the hosted tools items add (none when there are none).
    tools_per_call: Option<PerCall>,
    /// The stored items it names by id (allowed only with `ALLOW_STORED_CONTEXT`).
    references: Vec<String>,
}

/// The Responses `input`: a string, or items of any type, every string of which the model
/// reads. What the model would read from OpenAI's storage instead is refused, unless
/// `ALLOW_STORED_CONTEXT` is on: then it is a reference the user's object checks is theirs,
/// and the request reserves the context window.
fn read_input_items(
    input: Option<&Value>,
    meter: &mut PromptMeter,
    rules: &CostRules,
) -> Result<InputItems, ProxyError> {
    let items = match input {
        Some(Value::String(text)) => {
            return meter
                .at("input", |meter| meter.text(text))
                .map(|()| InputItems::default())
        }
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(ProxyError::invalid_request(
                "`input` must be a string or a non-empty array of items.",
                Some("input"),
            ))
        }
    };
    let mut read = InputItems::default();
    for (index, item) in items.iter().enumerate() {
        meter.at(&format!("input[{index}]"), |meter| {
            read.tools_per_call = worst(read.tools_per_call, item_tools(item, meter, rules)?);
            let read_before = (meter.chars, meter.images);
            meter.content(item)?;
            let holds_content = (meter.chars, meter.images) != read_before;
            match item.get("id") {
                Some(id) if names_stored_item(item, holds_content) => {
                    if !rules.allow_stored_context {
                        return Err(meter.refuse(
                            "",
                            "Input items that name a stored item by `id` are not accepted: the proxy cannot see or bound what OpenAI reads from storage. Send the item's content (for `reasoning`, its `encrypted_content`), or continue your own response with `previous_response_id` where this proxy allows it.",
                        ));
                    }
                    read.references.push(stored_id(id, &meter.param(".id"))?);
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(read)
}

/// Tools an input item gives the model (`additional_tools`, `tool_search_output`, or any item
/// with `tools`): a hosted one among them needs the same leave as in the request's `tools`.
/// Entries without a `type` (an MCP server's list of its tools) only describe tools.
fn item_tools(item: &Value, meter: &mut PromptMeter, rules: &CostRules) -> Result<Option<PerCall>, ProxyError> {
    let Some(Value::Array(tools)) = item.get("tools") else {
        return Ok(None);
    };
    let mut per_call = None;
    for (index, tool) in tools.iter().enumerate() {
        if let Some(kind) = tool
            .get("type")
            .and_then(Value::as_str)
            .filter(|kind| *kind != "function")
        {
            let call = meter.at(&format!(".tools[{index}]"), |meter| {
                hosted_tool(tool, kind, meter, rules)
            })?;
            per_call = worst(per_call, Some(call));
        }
    }
    Ok(per_call)
}

/// Whether the model would read `item` from OpenAI's storage rather than from the body: the
/// item has an `id`, whatever its `type` (OpenAI's item reference is `{"id": …}` with `type`
/// optional or null), and holds nothing the model reads besides (`holds_content`: the meter
/// read text or an image from it). A `reasoning` item holds its reasoning only in
/// `encrypted_content`: its summary and text describe the reasoning OpenAI fetches by `id`.
fn names_stored_item(item: &Value, holds_content: bool) -> bool {
    if item.get("id").is_none_or(Value::is_null) {
        return false;
    }
    match item.get("type").and_then(Value::as_str) {
        Some("reasoning") => item.get("encrypted_content").is_none_or(is_empty),
        _ => !holds_content,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::config::Config;
    use crate::error::ProxyError;
    use crate::testing::policy::parse_responses_request;

    /// Every input item type of OpenAI's Responses API (openai-node's `ResponseInputItem`),
    /// each as a client sends it with its content: the body holds what the model reads.
    fn items_with_content() -> Vec<Value> {
        vec![
            json!({"role": "user", "content": "hi", "id": "msg_1"}),
            json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "hi", "annotations": []}]}),
            json!({"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["q"]}),
            json!({"type": "computer_call", "id": "cu_1", "call_id": "c", "status": "completed",
                "action": {"type": "click", "button": "left", "x": 1, "y": 2}, "pending_safety_checks": []}),
            json!({"type": "computer_call_output", "id": "cuo_1", "call_id": "c",
                "output": {"type": "computer_screenshot", "image_url": "https://example.com/s.png"}}),
            json!({"type": "web_search_call", "id": "ws_1", "status": "completed",
                "action": {"type": "search", "query": "q"}}),
            json!({"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": "{}"}),
            json!({"type": "function_call_output", "id": "fco_1", "call_id": "c", "output": "42"}),
            json!({"type": "tool_search_call", "id": "ts_1", "arguments": {"query": "weather"}}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB"}),
            json!({"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAB"}),
            json!({"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": "iVBORw0KGgo"}),
            json!({"type": "code_interpreter_call", "id": "ci_1", "code": "print(1)", "container_id": "cntr_1",
                "outputs": [{"type": "logs", "logs": "1"}], "status": "completed"}),
            json!({"type": "local_shell_call", "id": "ls_1", "call_id": "c", "status": "completed",
                "action": {"type": "exec", "command": ["ls"], "env": {}}}),
            json!({"type": "local_shell_call_output", "id": "lso_1", "output": "a.txt"}),
            json!({"type": "shell_call", "id": "sh_1", "call_id": "c", "action": {"commands": ["ls"]}}),
            json!({"type": "shell_call_output", "id": "sho_1", "call_id": "c",
                "output": [{"stdout": "a.txt", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]}),
            json!({"type": "apply_patch_call", "id": "ap_1", "call_id": "c", "status": "completed",
                "operation": {"type": "update_file", "path": "a.txt", "diff": "-a\n+b"}}),
            json!({"type": "apply_patch_call_output", "id": "apo_1", "call_id": "c", "status": "completed", "output": "done"}),
            json!({"type": "mcp_list_tools", "id": "ml_1", "server_label": "s", "tools": [{"name": "t", "input_schema": {}}]}),
            json!({"type": "mcp_approval_request", "id": "mr_1", "server_label": "s", "name": "t", "arguments": "{}"}),
            json!({"type": "mcp_approval_response", "id": "ma_1", "approval_request_id": "mr_1", "approve": true}),
            json!({"type": "mcp_call", "id": "mc_1", "server_label": "s", "name": "t", "arguments": "{}", "output": "x"}),
            json!({"type": "custom_tool_call_output", "id": "cto_1", "call_id": "c", "output": "x"}),
            json!({"type": "custom_tool_call", "id": "ct_1", "call_id": "c", "name": "t", "input": "x"}),
            json!({"type": "program", "id": "pg_1", "call_id": "c", "code": "x = 1", "fingerprint": "f"}),
            json!({"type": "program_output", "id": "pgo_1", "call_id": "c", "result": "1", "status": "completed"}),
        ]
    }

    /// The item types of `items_with_content`, and those that only ever point at stored state.
    fn every_type() -> Vec<Value> {
        let mut types: Vec<Value> = items_with_content().iter().map(|item| item["type"].clone()).collect();
        types.extend([
            json!("item_reference"),
            json!("compaction_trigger"),
            json!("additional_tools"),
        ]);
        types.extend([
            json!("tool_search_output"),
            json!("a_type_openai_adds_next_year"),
            Value::Null,
        ]);
        types
    }

    fn parse(input: Value, config: &Config) -> Result<crate::request::ApiRequest, ProxyError> {
        let body = json!({"model": "gpt-4o-mini", "input": [{"role": "user", "content": "hi"}, input]});
        parse_responses_request(body.to_string().as_bytes(), config, "alice")
    }

    fn refused_at(result: Result<crate::request::ApiRequest, ProxyError>) -> Option<String> {
        let Err(ProxyError::InvalidRequest { param, .. }) = result else {
            return None;
        };
        param
    }

    fn configs() -> [Config; 2] {
        let images = ("MAX_IMAGE_INPUTS", "1");
        [
            Config::for_tests(&[images]).unwrap(),
            Config::for_tests(&[images, ("RESPONSES_STORE", "true"), ("ALLOW_STORED_CONTEXT", "true")]).unwrap(),
        ]
    }

    /// Items that name stored state by id, of every type: what the model would read from storage.
    fn references_of_every_type() -> Vec<Value> {
        let mut references = vec![json!({"id": "msg_other_users"})];
        for kind in every_type() {
            references.push(json!({"type": kind, "id": "msg_other_users"}));
            references.push(json!({"type": kind, "id": "msg_other_users", "status": "completed", "role": "assistant"}));
        }
        references
    }

    #[test]
    fn an_input_item_that_names_a_stored_item_by_id_is_refused_whatever_its_type() {
        let [refusing, _] = configs();
        let storing = Config::for_tests(&[("RESPONSES_STORE", "true")]).unwrap();
        for config in [refusing, storing] {
            for item in references_of_every_type() {
                assert_eq!(
                    refused_at(parse(item.clone(), &config)).as_deref(),
                    Some("input[1]"),
                    "{item} reads a stored item"
                );
            }
        }
    }

    #[test]
    fn with_stored_context_an_item_named_by_id_is_a_reference_its_user_must_own_reserved_at_the_context_window() {
        let [_, allowing] = configs();
        for item in references_of_every_type() {
            let request = parse(item.clone(), &allowing).unwrap();
            assert_eq!(request.references, ["msg_other_users"], "{item}");
            assert!(request.reserve_tokens >= 128_000, "{item}: {}", request.reserve_tokens);
        }
        let body = |extra: Value| {
            let mut body = json!({"model": "gpt-4o-mini", "max_output_tokens": 500,
                "input": [{"id": "rs_1", "type": "reasoning", "summary": []}, {"id": "msg_1"}, {"role": "user", "content": "go on"}]});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            parse_responses_request(body.to_string().as_bytes(), &allowing, "alice").unwrap()
        };
        let request = body(json!({}));
        assert_eq!(
            (request.references.as_slice(), request.continues.as_deref()),
            (&["rs_1".to_owned(), "msg_1".to_owned()][..], None)
        );
        assert_eq!(
            request.reserve_tokens,
            128_000 + 500,
            "the window once, whatever the number of items"
        );
        let continuing = body(json!({"previous_response_id": "resp_1"}));
        assert_eq!(continuing.continues.as_deref(), Some("resp_1"));
        assert_eq!(
            continuing.reserve_tokens,
            128_000 + 500,
            "a continuation naming items too: no double count"
        );
        let fresh = parse(json!({"role": "user", "content": "hi", "id": "msg_1"}), &allowing).unwrap();
        assert!(
            fresh.references.is_empty(),
            "an item that carries its content names nothing"
        );
        for bad in [json!(5), json!(""), json!("m".repeat(129))] {
            assert_eq!(
                refused_at(parse(json!({"id": bad}), &allowing)).as_deref(),
                Some("input[1].id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_input_item_that_carries_its_own_content_passes_even_with_an_id() {
        for config in configs() {
            for item in items_with_content() {
                assert!(parse(item.clone(), &config).is_ok(), "{item}");
            }
        }
    }

    #[test]
    fn a_reasoning_item_is_read_from_storage_unless_it_carries_its_encrypted_content() {
        let config = Config::for_tests(&[]).unwrap();
        for item in [
            json!({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "I thought."}]}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": null}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": ""}),
            json!({"type": "reasoning", "id": "rs_1", "summary": [],
                "content": [{"type": "reasoning_text", "text": "step one"}]}),
        ] {
            assert_eq!(
                refused_at(parse(item.clone(), &config)).as_deref(),
                Some("input[1]"),
                "{item}"
            );
        }
        let stateless = json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "I thought."}]});
        assert!(
            parse(stateless, &config).is_ok(),
            "without an id it names nothing stored"
        );
    }

    #[test]
    fn an_item_with_an_id_but_empty_content_names_the_stored_item() {
        let config = Config::for_tests(&[]).unwrap();
        for item in [
            json!({"type": "message", "id": "msg_1", "role": "assistant", "content": []}),
            json!({"type": "message", "id": "msg_1", "role": "user", "content": ""}),
            json!({"type": "function_call_output", "id": "fco_1", "call_id": "c"}),
        ] {
            assert_eq!(
                refused_at(parse(item.clone(), &config)).as_deref(),
                Some("input[1]"),
                "{item}"
            );
        }
    }

    #[test]
    fn hosted_tools_an_input_item_adds_need_the_same_leave_as_the_request_s_tools() {
        let web_search = json!({"type": "additional_tools", "role": "developer", "tools": [{"type": "web_search"}]});
        let refusing = Config::for_tests(&[]).unwrap();
        assert_eq!(
            refused_at(parse(web_search.clone(), &refusing)).as_deref(),
            Some("input[1].tools[0].type")
        );
        let allowing = Config::for_tests(&[("ALLOWED_HOSTED_TOOLS", "web_search:5000,file_search:800")]).unwrap();
        let request = parse(web_search, &allowing).unwrap();
        assert_eq!(
            (request.tool_fees.calls, request.tool_fees.nano_usd_per_call),
            (1, 10_000_000)
        );
        let store =
            json!({"type": "tool_search_output", "tools": [{"type": "file_search", "vector_store_ids": ["vs_x"]}]});
        assert_eq!(
            refused_at(parse(store, &allowing)).as_deref(),
            Some("input[1].tools[0].vector_store_ids[0]")
        );
        let functions =
            json!({"type": "additional_tools", "role": "developer", "tools": [{"type": "function", "name": "f"}]});
        assert_eq!(parse(functions, &refusing).unwrap().tool_fees.calls, 0);
    }
}
