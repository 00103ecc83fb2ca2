//! What an image generation may bill: each image's output tokens by model, quality and size,
//! the tokens OpenAI's per-image prices are rounded from, and what a plan allows.

use crate::budget::cost::is_family;

/// The qualities the GPT image models make; `auto` lets upstream pick one of them.
pub const QUALITIES: [&str; 3] = ["low", "medium", "high"];
/// The sizes every GPT image model makes; `auto` lets upstream pick one of them.
pub const STANDARD_SIZES: [&str; 3] = ["1024x1024", "1024x1536", "1536x1024"];
pub const AUTO: &str = "auto";

/// Each partial image a stream sends adds 100 image output tokens (OpenAI's image generation
/// guide, "Streaming": partial images); a request asks for at most 3.
pub const PARTIAL_IMAGE_TOKENS: u64 = 100;
pub const MAX_PARTIAL_IMAGES: u64 = 3;

/// gpt-image-1.5's output tokens per image, low/medium/high, by size: the tokens its published
/// per-image prices are rounded from at $32 per 1M (1024x1024: $0.009, $0.034, $0.133;
/// portrait and landscape $0.013, $0.050, $0.200), as gpt-image-1 counted them (landscape at
/// portrait's count, the larger, since both are priced alike).
const GPT_IMAGE_1_5: [(&str, [u64; 3]); 3] = [
    ("1024x1024", [272, 1_056, 4_160]),
    ("1024x1536", [408, 1_584, 6_240]),
    ("1536x1024", [408, 1_584, 6_240]),
];

/// gpt-image-2 makes any size whose sides are multiples of 16, at most 3840 px and 1:3 to 3:1,
/// of 655,360 to 8,294,400 pixels (openai-node's `ImageGenerateParams.size`). Its tokens per
/// image follow a formula (published by a developer on community.openai.com, 2026-05) that
/// gives every output example OpenAI publishes: 1024x1024 $0.006/$0.053/$0.211 and 1536x1024
/// $0.005/$0.041/$0.165 at $30 per 1M.
const GPT_IMAGE_2_QUALITY: [u64; 3] = [16, 48, 96];

/// One image's output tokens on `model` at `quality` and `size` (`WIDTHxHEIGHT`); `None` when
/// the model, the quality or the size is not one whose cost is known.
pub fn image_tokens(model: &str, quality: &str, size: &str) -> Option<u64> {
    let level = QUALITIES.iter().position(|known| *known == quality)?;
    if is_family(model, "gpt-image-1.5") {
        return GPT_IMAGE_1_5
            .iter()
            .find(|(known, _)| *known == size)
            .map(|(_, tokens)| tokens[level]);
    }
    if is_family(model, "gpt-image-2") {
        let (width, height) = size.split_once('x')?;
        return gpt_image_2_tokens(GPT_IMAGE_2_QUALITY[level], width.parse().ok()?, height.parse().ok()?);
    }
    None
}

fn gpt_image_2_tokens(quality: u64, width: u64, height: u64) -> Option<u64> {
    let (long, short) = (width.max(height), width.min(height));
    // The edge first: nothing larger reaches the arithmetic.
    if long > 3_840 || short == 0 {
        return None;
    }
    let pixels = width * height;
    let valid = width.is_multiple_of(16)
        && height.is_multiple_of(16)
        && long <= 3 * short
        && (655_360..=8_294_400).contains(&pixels);
    let short_factor = (2 * quality * short + long) / (2 * long);
    valid.then(|| (quality * short_factor * (2_000_000 + pixels)).div_ceil(4_000_000))
}

/// The most one image can cost: `auto` is the dearest choice upstream may make (its standard
/// sizes, its three qualities).
pub fn worst_image_tokens(model: &str, quality: &str, size: &str) -> Option<u64> {
    let qualities = if quality == AUTO {
        &QUALITIES[..]
    } else {
        std::slice::from_ref(&quality)
    };
    let sizes = if size == AUTO {
        &STANDARD_SIZES[..]
    } else {
        std::slice::from_ref(&size)
    };
    let mut worst = 0;
    for quality in qualities {
        for size in sizes {
            worst = worst.max(image_tokens(model, quality, size)?);
        }
    }
    Some(worst)
}

/// What a plan lets a user generate (`IMAGE_MODELS`, `MAX_IMAGES_PER_REQUEST`,
/// `IMAGE_QUALITIES`, `IMAGE_SIZES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRules {
    /// Empty: image generation is off.
    pub models: Vec<String>,
    pub max_images: u64,
    /// Values of `quality` a request may send (`auto` among them, or not).
    pub qualities: Vec<String>,
    pub sizes: Vec<String>,
}

impl ImageRules {
    /// The allowed model, quality or size that has no known cost, if any.
    pub fn unbounded(&self) -> Option<(String, String, String)> {
        for model in &self.models {
            for quality in &self.qualities {
                for size in &self.sizes {
                    if worst_image_tokens(model, quality, size).is_none() {
                        return Some((model.clone(), quality.clone(), size.clone()));
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenAI's published per-image prices (nano-USD) and the image output price per 1M.
    const PUBLISHED: [(&str, &str, &str, u64, u64); 12] = [
        ("gpt-image-1.5", "low", "1024x1024", 9_000_000, 32),
        ("gpt-image-1.5", "medium", "1024x1024", 34_000_000, 32),
        ("gpt-image-1.5", "high", "1024x1024", 133_000_000, 32),
        ("gpt-image-1.5", "low", "1024x1536", 13_000_000, 32),
        ("gpt-image-1.5", "medium", "1536x1024", 50_000_000, 32),
        ("gpt-image-1.5", "high", "1536x1024", 200_000_000, 32),
        ("gpt-image-2", "low", "1024x1024", 6_000_000, 30),
        ("gpt-image-2", "medium", "1024x1024", 53_000_000, 30),
        ("gpt-image-2", "high", "1024x1024", 211_000_000, 30),
        ("gpt-image-2", "low", "1536x1024", 5_000_000, 30),
        ("gpt-image-2", "medium", "1024x1536", 41_000_000, 30),
        ("gpt-image-2", "high", "1536x1024", 165_000_000, 30),
    ];

    #[test]
    fn the_token_bounds_give_openai_s_published_per_image_prices() {
        for (model, quality, size, nano_usd, usd_per_million) in PUBLISHED {
            let tokens = image_tokens(model, quality, size).unwrap();
            let cost = tokens * usd_per_million * 1_000; // nano-USD
                                                         // Published prices are a tenth of a cent, rounded (or cut): the bound is never
                                                         // below one by more than rounding, nor a tenth of a cent above it.
            let near = cost + 500_000 >= nano_usd && cost <= nano_usd + 1_000_000;
            assert!(near, "{model} {quality} {size}: {tokens} tokens");
        }
        assert_eq!(image_tokens("gpt-image-2", "high", "1024x1024"), Some(7_024));
        assert_eq!(image_tokens("gpt-image-2-2026-04-21", "low", "1536x1024"), Some(158));
    }

    #[test]
    fn unknown_models_qualities_and_sizes_have_no_bound() {
        assert_eq!(image_tokens("gpt-image-1", "high", "1024x1024"), None, "shut down");
        assert_eq!(image_tokens("gpt-image-1.5", "hd", "1024x1024"), None);
        assert_eq!(image_tokens("gpt-image-1.5", "high", "2048x2048"), None);
        for size in [
            "1000x1000",
            "3840x1024",
            "4096x2160",
            "512x512",
            "x",
            "1024",
            "0x1024",
            "99999999999x99999999999",
        ] {
            assert_eq!(image_tokens("gpt-image-2", "high", size), None, "{size}");
        }
        assert!(image_tokens("gpt-image-2", "high", "3840x2160").is_some());
    }

    #[test]
    fn auto_reserves_the_dearest_choice_upstream_may_make() {
        assert_eq!(worst_image_tokens("gpt-image-1.5", AUTO, AUTO), Some(6_240));
        assert_eq!(worst_image_tokens("gpt-image-1.5", "low", AUTO), Some(408));
        assert_eq!(worst_image_tokens("gpt-image-1.5", AUTO, "1024x1024"), Some(4_160));
        assert_eq!(worst_image_tokens("gpt-image-2", AUTO, AUTO), Some(7_024));
        let rules = ImageRules {
            models: vec!["gpt-image-2".into()],
            max_images: 1,
            qualities: vec!["low".into(), AUTO.into()],
            sizes: vec!["1024x1024".into(), "2048x2048".into()],
        };
        assert_eq!(rules.unbounded(), None);
        let rules = ImageRules {
            models: vec!["gpt-image-1.5".into()],
            ..rules
        };
        assert_eq!(
            rules.unbounded(),
            Some(("gpt-image-1.5".into(), "low".into(), "2048x2048".into()))
        );
    }
}
