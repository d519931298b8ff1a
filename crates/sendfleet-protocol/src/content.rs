//! Message content, provider-neutral. Adapters translate it into each vendor's JSON.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the recipient sees. Tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    /// Plain text (SMS or RCS), with optional RCS suggestions.
    Text {
        /// The text. RCS allows up to 3,072 characters; SMS is split into parts.
        text: String,
        /// RCS suggested replies/actions shown under the message (≤ 11).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// An RCS file (image, video, audio, PDF) by URL.
    File {
        /// Public URL of the file (≤ 2,048 characters).
        url: String,
        /// Thumbnail URL, for videos.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thumbnail_url: Option<String>,
        /// Suggestions shown under the file.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// An RCS standalone rich card.
    Card {
        /// Card layout.
        orientation: CardOrientation,
        /// Image side for horizontal cards.
        alignment: CardAlignment,
        /// The card itself.
        card: Card,
        /// Suggestions under the card (outside it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// An RCS carousel of 2–10 cards.
    Carousel {
        /// Width of every card.
        card_width: CardWidth,
        /// The cards, in order.
        cards: Vec<Card>,
        /// Suggestions under the carousel.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// A template registered at the provider (Infobip `PROVIDER_TEMPLATE`).
    Template {
        /// The registered template name/id.
        template_id: String,
        /// Template parameters by name.
        #[serde(default)]
        parameters: BTreeMap<String, String>,
    },
}

impl Content {
    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Text { .. } => "text",
            Content::File { .. } => "file",
            Content::Card { .. } => "card",
            Content::Carousel { .. } => "carousel",
            Content::Template { .. } => "template",
        }
    }
}

/// A rich card (standalone or in a carousel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct Card {
    /// Title, 1–200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description, 1–2,000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Image or video on the card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    /// Suggestions inside the card (≤ 4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
}

/// Media on a card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Media {
    /// File URL.
    pub url: String,
    /// Thumbnail URL (videos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Display height.
    pub height: MediaHeight,
}

/// Card media height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaHeight {
    /// Short.
    Short,
    /// Medium.
    Medium,
    /// Tall.
    Tall,
}

/// Standalone card orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardOrientation {
    /// Image beside the text.
    Horizontal,
    /// Image above the text.
    Vertical,
}

/// Standalone card image alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardAlignment {
    /// Image on the left.
    Left,
    /// Image on the right.
    Right,
}

/// Carousel card width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardWidth {
    /// Small cards.
    Small,
    /// Medium cards.
    Medium,
}

/// How an `open_url` suggestion opens its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UrlApplication {
    /// The device browser.
    Browser,
    /// An in-app web view.
    Webview,
}

/// Web view size for `open_url` with `application = webview`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebviewViewMode {
    /// Full screen.
    Full,
    /// Half screen.
    Half,
    /// Tall.
    Tall,
}

/// An RCS suggested reply or action. Every one has a label `text` (1–25 characters)
/// and `postback_data` returned when the user taps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Suggestion {
    /// A suggested reply.
    Reply {
        /// Label.
        text: String,
        /// Returned on tap.
        postback_data: String,
    },
    /// Open a URL.
    OpenUrl {
        /// Label.
        text: String,
        /// Returned on tap.
        postback_data: String,
        /// http(s) URL.
        url: String,
        /// Browser or web view.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        application: Option<UrlApplication>,
        /// Web view size (required with `webview`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webview_view_mode: Option<WebviewViewMode>,
    },
    /// Dial a phone number.
    DialPhone {
        /// Label.
        text: String,
        /// Returned on tap.
        postback_data: String,
        /// Number to dial, E.164.
        phone_number: String,
    },
    /// Show a location on a map.
    ShowLocation {
        /// Label.
        text: String,
        /// Returned on tap.
        postback_data: String,
        /// Latitude, −90..90.
        latitude: f64,
        /// Longitude, −180..180.
        longitude: f64,
        /// Pin label.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// Ask the user to share their location.
    RequestLocation {
        /// Label.
        text: String,
        /// Returned on tap.
        postback_data: String,
    },
    /// Create a calendar event.
    CreateCalendarEvent {
        /// Label.
        text: String,
        /// Returned on tap.
        postback_data: String,
        /// Start, RFC 3339.
        start_time: String,
        /// End, RFC 3339.
        end_time: String,
        /// Event title.
        title: String,
        /// Event description.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}
