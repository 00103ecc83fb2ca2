//! What a plan lets users generate on `POST /v1/images/generations`: models, images per
//! request, qualities and sizes, each with a known worst case.

use super::vars::{Lookup, Vars};
use crate::budget::images::{ImageRules, AUTO, QUALITIES, STANDARD_SIZES};
use crate::error::ProxyError;

pub(super) fn image_rules(vars: &Vars<impl Lookup>) -> Result<ImageRules, ProxyError> {
    checked(ImageRules {
        models: vars.list("IMAGE_MODELS").unwrap_or_default(),
        max_images: vars.number("MAX_IMAGES_PER_REQUEST", 1, 1..=10)?,
        qualities: vars.list("IMAGE_QUALITIES").unwrap_or_else(|| with_auto(&QUALITIES)),
        sizes: vars.list("IMAGE_SIZES").unwrap_or_else(|| with_auto(&STANDARD_SIZES)),
    })
}

fn with_auto(values: &[&str]) -> Vec<String> {
    values.iter().chain([&AUTO]).map(|value| (*value).to_owned()).collect()
}

/// Apart from the reader, which is generic: compiled once, not once per kind of `Vars`.
fn checked(rules: ImageRules) -> Result<ImageRules, ProxyError> {
    // A model, quality or size whose cost is unknown could not be reserved: refuse it here
    // rather than guess at every request.
    match rules.unbounded() {
        Some((model, quality, size)) => Err(ProxyError::misconfigured(format!(
            "IMAGE_MODELS, IMAGE_QUALITIES, IMAGE_SIZES: the cost of {model:?} at quality {quality:?} and size {size:?} is unknown (docs/limits-and-costs.md#images)"
        ))),
        None => Ok(rules),
    }
}
