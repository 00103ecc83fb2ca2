//! `POST /v1/images/generations`: a prompt bounded like any other, and as many images as the
//! plan allows at the qualities and sizes it allows, reserved at their output tokens.

use serde_json::{Map, Value};

use super::billable::attribute;
use super::forwarding::UpstreamEndpoint;
use super::prompt::PromptMeter;
use super::{check_model_in, check_stream, finish, parse_object, require_content, ApiRequest, Draft, Rules};
use crate::budget::cost::Cost;
use crate::budget::images::{worst_image_tokens, AUTO, MAX_PARTIAL_IMAGES, PARTIAL_IMAGE_TOKENS};
use crate::error::ProxyError;

/// The request's worst case is its prompt (the body's bytes, as for any text) and, for each of
/// its `n` images, the output tokens of the dearest image its quality and size allow (`auto`:
/// any upstream may pick) and 100 more per partial image it streams.
pub(super) fn image_generation(bytes: &[u8], rules: Rules, sub: &str) -> Result<ApiRequest, ProxyError> {
    let Rules { settings, plan } = rules;
    let images = &plan.images;
    let mut body = parse_object(bytes)?;
    let model = check_model_in(&body, |model| images.models.iter().any(|allowed| allowed == model))?;
    let mut meter = PromptMeter::new(plan.request_limits.max_prompt_chars, 0);
    match body.get("prompt") {
        Some(Value::String(prompt)) => meter.at("prompt", |meter| meter.text(prompt))?,
        _ => {
            return Err(ProxyError::invalid_request(
                "`prompt` must be a string.",
                Some("prompt"),
            ))
        }
    }
    require_content(&meter, "prompt")?;
    let stream = check_stream(&body)?;
    let n = count(&body, "n", 1, images.max_images)?;
    if stream && n > 1 {
        // Each image would end with its own usage; one stream, one image, one report.
        return Err(ProxyError::invalid_request(
            "`n` must be 1 when `stream` is true.",
            Some("n"),
        ));
    }
    let partial_images = count(&body, "partial_images", 0, MAX_PARTIAL_IMAGES)?;
    let quality = choice(&body, "quality", &images.qualities)?;
    let size = choice(&body, "size", &images.sizes)?;
    // Config checked every allowed model, quality and size: this is never None.
    let each = worst_image_tokens(&model, &quality, &size)
        .ok_or_else(|| ProxyError::invalid_request("This size cannot be made by this model.", Some("size")))?;
    let image_output_tokens = n.saturating_mul(each.saturating_add(partial_images * PARTIAL_IMAGE_TOKENS));
    attribute(
        &mut body,
        settings.safety_key()?,
        sub,
        UpstreamEndpoint::ImageGenerations,
    )?;
    let price = settings.prices.of(&model);
    Ok(finish(
        body,
        Draft {
            endpoint: UpstreamEndpoint::ImageGenerations,
            model,
            stream,
            client_wants_usage: false,
            cost: Cost {
                image_output_tokens,
                ..Cost::default()
            },
            prompt_chars: meter.chars,
            continues: None,
            references: vec![],
            records_response: false,
            price,
        },
    ))
}

/// A whole number from `min` to `max`; `default` when absent or null.
fn count(body: &Map<String, Value>, field: &str, default: u64, max: u64) -> Result<u64, ProxyError> {
    let min = default.min(1);
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .filter(|count| (min..=max).contains(count))
            .ok_or_else(|| {
                ProxyError::invalid_request(
                    format!("`{field}` must be a whole number from {min} to {max}."),
                    Some(field),
                )
            }),
    }
}

/// One of `allowed`; `auto` when absent or null (upstream's default), if allowed.
fn choice(body: &Map<String, Value>, field: &str, allowed: &[String]) -> Result<String, ProxyError> {
    let value = match body.get(field) {
        None | Some(Value::Null) => AUTO,
        Some(Value::String(value)) => value.as_str(),
        Some(_) => "",
    };
    if allowed.iter().any(|known| known == value) {
        Ok(value.to_owned())
    } else {
        Err(ProxyError::invalid_request(
            format!("`{field}` must be one of: {}.", allowed.join(", ")),
            Some(field),
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::config::Config;
    use crate::error::ProxyError;
    use crate::request::ApiRequest;
    use crate::testing::policy::parse_image_request;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("IMAGE_MODELS", "gpt-image-1.5,gpt-image-2"),
            ("MAX_IMAGES_PER_REQUEST", "4"),
        ];
        pairs.extend_from_slice(extra);
        Config::for_tests(&pairs).unwrap()
    }

    fn image(body: serde_json::Value, config: &Config) -> Result<ApiRequest, ProxyError> {
        parse_image_request(body.to_string().as_bytes(), config, "alice")
    }

    fn param(error: ProxyError) -> Option<String> {
        let ProxyError::InvalidRequest { param, .. } = error else {
            return None;
        };
        param
    }

    #[test]
    fn image_generation_is_off_unless_the_operator_names_its_models() {
        let off = Config::for_tests(&[]).unwrap();
        let asked = json!({"model": "gpt-image-1.5", "prompt": "a cat"});
        assert!(matches!(
            image(asked.clone(), &off),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
        assert!(matches!(
            image(json!({"model": "gpt-4o-mini", "prompt": "a cat"}), &config(&[])),
            Err(ProxyError::ModelNotAllowed { .. })
        ));
        assert!(image(asked, &config(&[])).is_ok());
    }

    #[test]
    fn each_image_is_reserved_at_the_dearest_output_its_quality_and_size_allow() {
        let config = config(&[]);
        let exact = image(
            json!({"model": "gpt-image-1.5", "prompt": "a cat", "quality": "high", "size": "1024x1024", "n": 2}),
            &config,
        )
        .unwrap();
        let body = exact.upstream_body().len() as u64;
        assert_eq!(exact.reserve_tokens, body + 2 * 4_160);
        // The body at the dearest input price ($8 image input), the images at $32 per 1M.
        assert_eq!(
            exact.reserve_nano_usd,
            (body * 8_000_000_000 + 2 * 4_160 * 32_000_000_000).div_ceil(1_000_000)
        );
        let auto = image(json!({"model": "gpt-image-1.5", "prompt": "a cat"}), &config).unwrap();
        assert_eq!(
            auto.reserve_tokens,
            auto.upstream_body().len() as u64 + 6_240,
            "auto: the dearest"
        );
        let streamed = image(json!({"model": "gpt-image-2", "prompt": "a cat", "quality": "low", "size": "1024x1024", "stream": true, "partial_images": 3}), &config).unwrap();
        assert!(streamed.stream);
        assert_eq!(
            streamed.reserve_tokens,
            streamed.upstream_body().len() as u64 + 196 + 300,
            "partial images add 100 each"
        );
        let forwarded: serde_json::Value = serde_json::from_str(streamed.upstream_body()).unwrap();
        assert!(
            forwarded["user"].as_str().is_some_and(|user| user != "alice"),
            "an opaque user id"
        );
    }

    #[test]
    fn counts_qualities_and_sizes_outside_the_plan_are_refused_by_name() {
        let config = config(&[("IMAGE_QUALITIES", "low,medium"), ("IMAGE_SIZES", "1024x1024")]);
        let base = json!({"model": "gpt-image-2", "prompt": "a cat", "quality": "low", "size": "1024x1024"});
        let with = |field: &str, value: serde_json::Value| {
            let mut body = base.clone();
            body[field] = value;
            image(body, &config).map(|_| ()).map_err(param)
        };
        assert_eq!(with("n", json!(4)), Ok(()));
        for (field, value) in [
            ("n", json!(5)),
            ("n", json!(0)),
            ("n", json!("2")),
            ("quality", json!("high")),
            ("quality", json!("auto")),
            ("quality", json!(1)),
            ("size", json!("1536x1024")),
            ("partial_images", json!(4)),
            ("prompt", json!("")),
            ("prompt", json!(["a cat"])),
            ("stream", json!("yes")),
        ] {
            assert_eq!(
                with(field, value.clone()),
                Err(Some(field.to_owned())),
                "{field}: {value}"
            );
        }
        let mut streamed = base.clone();
        streamed["stream"] = json!(true);
        streamed["n"] = json!(2);
        assert_eq!(
            image(streamed, &config).map(|_| ()).map_err(param),
            Err(Some("n".into()))
        );
        let mut unset = base;
        unset.as_object_mut().unwrap().remove("quality");
        assert_eq!(
            image(unset, &config).map(|_| ()).map_err(param),
            Err(Some("quality".into())),
            "auto is not allowed here"
        );
    }

    #[test]
    fn an_allowed_size_or_model_whose_cost_is_unknown_is_a_configuration_error() {
        for (name, value) in [
            ("IMAGE_SIZES", "2048x2048"),
            ("IMAGE_MODELS", "gpt-image-1"),
            ("IMAGE_QUALITIES", "hd"),
        ] {
            // The first of two pairs for one name wins.
            let pairs = [(name, value), ("IMAGE_MODELS", "gpt-image-1.5")];
            assert!(Config::for_tests(&pairs).is_err(), "{name}={value}");
        }
        assert!(Config::for_tests(&[("IMAGE_MODELS", "gpt-image-2"), ("IMAGE_SIZES", "2048x2048")]).is_ok());
        let priced_nowhere = [
            ("IMAGE_MODELS", "gpt-image-2"),
            ("DAILY_BUDGET_USD", "1"),
            ("MODEL_PRICES", r#"{"gpt-image-2":{"input":5,"output":10}}"#),
        ];
        let detail = Config::for_tests(&priced_nowhere).unwrap_err().log_detail().unwrap();
        assert!(detail.contains("image_output"), "{detail}");
    }
}
