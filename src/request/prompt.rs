//! Everything the model reads, measured against `MAX_PROMPT_CHARS`; the inputs that are not
//! text (images, files, audio) found and counted or refused.
//!
//! OpenAI bills every token the model reads: message text, but also names, tool-call
//! arguments, tool definitions and schemas. So every such string counts, and an error's `param`
//! is the path of the field that pushed the total over, like `tools[0].function.description`.

use serde_json::{Map, Value};

use crate::error::ProxyError;

/// Fields that only label a part or an item (and citations of earlier answers); everything else
/// in content is read by the model.
const LABELS: [&str; 7] = ["type", "role", "id", "call_id", "tool_call_id", "status", "annotations"];

/// Keys or part types that make an object a file or audio input (refused), or an image.
const FILE_OR_AUDIO_KEYS: [&str; 6] = ["file", "file_data", "file_id", "file_url", "input_audio", "audio"];
const FILE_OR_AUDIO_TYPES: [&str; 4] = ["file", "input_file", "input_audio", "audio"];
const IMAGE_TYPES: [&str; 3] = ["image_url", "input_image", "computer_screenshot"];

/// The text of a request as the model reads it, measured as it is walked.
#[derive(Debug)]
pub struct PromptMeter {
    max_chars: usize,
    max_images: u64,
    pub chars: usize,
    pub bytes: usize,
    /// Some non-blank text was seen.
    pub has_content: bool,
    pub images: u64,
    /// Where the walk is, as a `param` path.
    path: String,
}

impl PromptMeter {
    pub fn new(max_chars: usize, max_images: u64) -> Self {
        PromptMeter {
            max_chars,
            max_images,
            chars: 0,
            bytes: 0,
            has_content: false,
            images: 0,
            path: String::new(),
        }
    }

    /// Runs `read` with `segment` (`messages`, `[0]`, `.content`) added to the path.
    pub fn at<T>(
        &mut self,
        segment: &str,
        read: impl FnOnce(&mut Self) -> Result<T, ProxyError>,
    ) -> Result<T, ProxyError> {
        let mark = self.path.len();
        self.path.push_str(segment);
        let result = read(self);
        self.path.truncate(mark);
        result
    }

    /// An invalid-request error whose `param` is the current path plus `suffix`.
    pub fn refuse(&self, suffix: &str, message: impl Into<String>) -> ProxyError {
        ProxyError::invalid_request(message, Some(&self.param(suffix)))
    }

    /// The current path plus `suffix`, as a `param`.
    pub fn param(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.path)
    }

    /// A string the model reads.
    pub fn text(&mut self, text: &str) -> Result<(), ProxyError> {
        self.has_content |= !text.trim().is_empty();
        self.add(text.chars().count(), text.len())
    }

    /// Token ids (embeddings): each stands for about four characters of text.
    pub fn tokens(&mut self, tokens: usize) -> Result<(), ProxyError> {
        self.has_content |= tokens > 0;
        self.add(tokens.saturating_mul(4), tokens.saturating_mul(4))
    }

    /// A value the model reads as JSON (a schema, a hosted tool's settings): all of it counts,
    /// keys included.
    pub fn json(&mut self, value: &Value) -> Result<(), ProxyError> {
        match value {
            Value::Null => Ok(()),
            Value::String(text) => self.add(text.chars().count(), text.len()),
            Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                let text = value.to_string();
                self.add(text.chars().count(), text.len())
            }
        }
    }

    /// A tool or function definition: name and description are text, the rest (`parameters`,
    /// a custom tool's `format`) is read as JSON.
    pub fn definition(&mut self, value: &Value) -> Result<(), ProxyError> {
        let Value::Object(fields) = value else {
            return self.json(value);
        };
        for (key, field) in fields {
            if matches!(key.as_str(), "type" | "strict") {
                continue;
            }
            self.at(&format!(".{key}"), |meter| match field {
                Value::String(text) => meter.text(text),
                Value::Object(_) if key == "function" => meter.definition(field),
                Value::Null | Value::Bool(_) | Value::Number(_) | Value::Array(_) | Value::Object(_) => {
                    meter.json(field)
                }
            })?;
        }
        Ok(())
    }

    /// Message content or input items: every string counts (except labels), images are
    /// counted, files and audio refused, whatever the item's type.
    pub fn content(&mut self, value: &Value) -> Result<(), ProxyError> {
        match value {
            Value::String(text) => self.text(text),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    self.at(&format!("[{index}]"), |meter| meter.content(item))?;
                }
                Ok(())
            }
            Value::Object(fields) => self.object(fields),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    fn object(&mut self, fields: &Map<String, Value>) -> Result<(), ProxyError> {
        let kind = fields.get("type").and_then(Value::as_str).unwrap_or_default();
        if FILE_OR_AUDIO_TYPES.contains(&kind) || FILE_OR_AUDIO_KEYS.iter().any(|key| fields.contains_key(*key)) {
            return Err(self.refuse(
                "",
                "File and audio inputs (and images by `file_id`) are not accepted by this proxy.",
            ));
        }
        if IMAGE_TYPES.contains(&kind) || fields.contains_key("image_url") {
            return self.image();
        }
        for (key, field) in fields {
            if !LABELS.contains(&key.as_str()) {
                self.at(&format!(".{key}"), |meter| meter.content(field))?;
            }
        }
        Ok(())
    }

    /// An image costs its worst case, whatever its bytes (a URL is short).
    fn image(&mut self) -> Result<(), ProxyError> {
        self.images += 1;
        if self.images > self.max_images {
            let message = match self.max_images {
                0 => "Image inputs are not accepted by this proxy.".to_owned(),
                max => format!("At most {max} image inputs are accepted in one request."),
            };
            return Err(self.refuse("", message));
        }
        Ok(())
    }

    fn add(&mut self, chars: usize, bytes: usize) -> Result<(), ProxyError> {
        self.chars = self.chars.saturating_add(chars);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.chars > self.max_chars {
            return Err(self.refuse(
                "",
                format!(
                    "The input holds more than {} characters of text (counting names, tool calls, tool definitions and schemas); `{}` passes the limit.",
                    self.max_chars, self.path
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(error: ProxyError) -> String {
        let ProxyError::InvalidRequest { param: Some(param), .. } = error else {
            panic!("{error:?}")
        };
        param
    }

    fn walk(max_chars: usize, max_images: u64, messages: Value) -> Result<PromptMeter, ProxyError> {
        let mut meter = PromptMeter::new(max_chars, max_images);
        meter.at("messages", |meter| meter.content(&messages))?;
        Ok(meter)
    }

    #[test]
    fn every_string_the_model_reads_counts_and_the_one_passing_the_limit_is_named() {
        let messages = json!([
            {"role": "user", "content": "hello", "name": "x".repeat(10)},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "f", "arguments": "y".repeat(100)}}]},
        ]);
        let meter = walk(1000, 0, messages.clone()).unwrap();
        assert_eq!(meter.chars, 5 + 10 + 1 + 100, "labels (role, id, type) do not count");
        assert_eq!(
            param(walk(100, 0, messages).unwrap_err()),
            "messages[1].tool_calls[0].function.arguments"
        );
    }

    #[test]
    fn definitions_count_their_schema_as_json() {
        let mut meter = PromptMeter::new(10_000, 0);
        let tool = json!({"type": "function", "function": {"name": "lookup", "description": "Finds",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}});
        meter.at("tools[0]", |meter| meter.definition(&tool)).unwrap();
        let schema = tool["function"]["parameters"].to_string();
        assert_eq!(meter.chars, "lookup".len() + "Finds".len() + schema.len());
        let mut small = PromptMeter::new(15, 0);
        let error = small.at("tools[0]", |meter| meter.definition(&tool)).unwrap_err();
        assert_eq!(param(error), "tools[0].function.parameters");
    }

    #[test]
    fn images_are_counted_without_their_bytes_and_bounded() {
        let image =
            json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "A".repeat(5000))}});
        let messages = json!([{"role": "user", "content": [{"type": "text", "text": "what is it"}, image]}]);
        let meter = walk(100, 1, messages.clone()).unwrap();
        assert_eq!((meter.images, meter.chars), (1, 10));
        let refused = walk(100, 0, messages).unwrap_err();
        assert!(refused.client_message().contains("Image inputs are not accepted"));
        assert_eq!(param(refused), "messages[0].content[1]");
        let two = json!([{"role": "user", "content": [image.clone(), image]}]);
        assert_eq!(param(walk(100, 1, two).unwrap_err()), "messages[0].content[1]");
        let screenshot = json!([{"type": "computer_call_output", "call_id": "c",
            "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"}}]);
        assert_eq!(walk(100, 1, screenshot).unwrap().images, 1);
    }

    #[test]
    fn files_audio_and_images_by_file_id_are_refused_wherever_they_are() {
        for (part, path) in [
            (
                json!({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}),
                "messages[0].content[0]",
            ),
            (
                json!({"type": "file", "file": {"file_id": "file-1"}}),
                "messages[0].content[0]",
            ),
            (
                json!({"type": "input_file", "file_data": "AAAA"}),
                "messages[0].content[0]",
            ),
            (
                json!({"type": "input_image", "file_id": "file-1"}),
                "messages[0].content[0]",
            ),
            (
                json!({"type": "text", "text": "hi", "file_url": "https://x/y.pdf"}),
                "messages[0].content[0]",
            ),
        ] {
            let error = walk(1000, 5, json!([{"role": "user", "content": [part]}])).unwrap_err();
            assert_eq!(param(error), path);
        }
        let stored_audio = json!([{"role": "assistant", "audio": {"id": "audio_1"}}]);
        assert_eq!(param(walk(1000, 5, stored_audio).unwrap_err()), "messages[0]");
    }
}
