//! How a message looks in the API: the payload as text, JSON or hex, and
//! the MQTT 5 properties, each cut to a fixed size so that one large
//! retained message cannot make a listing large.

use std::time::Instant;

use serde::Serialize;
use switchboard_session::Message;

/// Payload text shown at most (bytes, cut at a character boundary).
pub(crate) const TEXT_PREVIEW_BYTES: usize = 16 * 1024;
/// Payload bytes shown as hex at most.
pub(crate) const HEX_PREVIEW_BYTES: usize = 4 * 1024;
/// Payloads up to this size are parsed to tell JSON from text.
const JSON_DETECT_BYTES: usize = 256 * 1024;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    let digit = |nibble: u8| char::from(DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'));
    for byte in bytes {
        out.push(digit(byte >> 4));
        out.push(digit(byte & 0x0f));
    }
    out
}

/// Decodes hex (either case, white space between bytes allowed).
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(*pair.first()?).to_digit(16)?;
            let low = char::from(*pair.get(1)?).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// What a payload looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// A JSON object or array (the whole payload parses).
    Json,
    /// Valid UTF-8 that is not a JSON object or array.
    Text,
    /// Not UTF-8.
    Binary,
}

/// A payload for display.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PayloadView {
    pub(crate) size: usize,
    pub(crate) format: Format,
    /// The payload as text (UTF-8 only), at most [`TEXT_PREVIEW_BYTES`].
    pub(crate) text: Option<String>,
    /// The first [`HEX_PREVIEW_BYTES`] bytes as hex.
    pub(crate) hex: String,
    /// Whether `text` or `hex` were cut.
    pub(crate) truncated: bool,
}

impl PayloadView {
    pub(crate) fn of(payload: &[u8]) -> PayloadView {
        let text = std::str::from_utf8(payload).ok();
        let format = match text {
            None => Format::Binary,
            Some(text) if payload.len() <= JSON_DETECT_BYTES && looks_like_json(text) => {
                Format::Json
            }
            Some(_) => Format::Text,
        };
        let shown_text = text.map(|text| cut(text, TEXT_PREVIEW_BYTES).to_string());
        let hex_bytes = payload.get(..HEX_PREVIEW_BYTES).unwrap_or(payload);
        let truncated = payload.len() > HEX_PREVIEW_BYTES
            || text.is_some_and(|text| text.len() > TEXT_PREVIEW_BYTES);
        PayloadView {
            size: payload.len(),
            format,
            text: shown_text,
            hex: hex(hex_bytes),
            truncated,
        }
    }
}

fn looks_like_json(text: &str) -> bool {
    let trimmed = text.trim_start();
    (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// A user property.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UserPropertyView {
    pub(crate) key: String,
    pub(crate) value: String,
}

/// The MQTT 5 properties of a message that mean something to a reader.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PropertiesView {
    pub(crate) content_type: Option<String>,
    pub(crate) response_topic: Option<String>,
    /// Correlation data as hex (at most [`HEX_PREVIEW_BYTES`] bytes).
    pub(crate) correlation_data: Option<String>,
    pub(crate) payload_format_indicator: Option<u8>,
    /// Seconds until the message expires, from now.
    pub(crate) message_expiry_interval: Option<u64>,
    pub(crate) user_properties: Vec<UserPropertyView>,
}

impl PropertiesView {
    pub(crate) fn of(message: &Message, now: Instant) -> PropertiesView {
        let properties = &message.properties;
        PropertiesView {
            content_type: properties.content_type.clone(),
            response_topic: properties.response_topic.clone(),
            correlation_data: properties
                .correlation_data
                .as_ref()
                .map(|data| hex(data.get(..HEX_PREVIEW_BYTES).unwrap_or(data))),
            payload_format_indicator: properties.payload_format_indicator,
            message_expiry_interval: message
                .expires_at
                .map(|at| at.saturating_duration_since(now).as_secs()),
            user_properties: properties
                .user_properties
                .iter()
                .map(|(key, value)| UserPropertyView {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }
}

/// A message for display: the live view's event and the retained listing's item.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MessageView {
    pub(crate) topic: String,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    pub(crate) payload: PayloadView,
    pub(crate) properties: PropertiesView,
}

impl MessageView {
    pub(crate) fn of(message: &Message, now: Instant) -> MessageView {
        MessageView {
            topic: message.topic.clone(),
            qos: message.qos.as_u8(),
            retain: message.retain,
            payload: PayloadView::of(&message.payload),
            properties: PropertiesView::of(message, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(decode_hex("00ab7F").unwrap(), vec![0x00, 0xab, 0x7f]);
        assert_eq!(decode_hex("00 ab\n7f").unwrap(), vec![0x00, 0xab, 0x7f]);
        assert!(decode_hex("abc").is_none());
        assert!(decode_hex("zz").is_none());
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn formats_are_told_apart() {
        assert_eq!(PayloadView::of(br#"{"a": 1}"#).format, Format::Json);
        assert_eq!(PayloadView::of(b"[1,2]").format, Format::Json);
        assert_eq!(PayloadView::of(b"21.5").format, Format::Text);
        assert_eq!(PayloadView::of(b"{not json").format, Format::Text);
        let binary = PayloadView::of(&[0xff, 0x00]);
        assert_eq!(binary.format, Format::Binary);
        assert_eq!(binary.text, None);
        assert_eq!(binary.hex, "ff00");
    }

    #[test]
    fn large_payloads_are_cut_on_character_boundaries() {
        let text = "é".repeat(TEXT_PREVIEW_BYTES);
        let view = PayloadView::of(text.as_bytes());
        assert!(view.truncated);
        let shown = view.text.unwrap();
        assert!(shown.len() <= TEXT_PREVIEW_BYTES);
        assert_eq!(shown.len() % 2, 0);
        assert_eq!(view.hex.len(), HEX_PREVIEW_BYTES * 2);
        assert_eq!(view.size, text.len());
    }
}
