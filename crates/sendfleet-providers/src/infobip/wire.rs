//! Infobip's JSON, field for field (`POST /sms/3/messages`, `POST /rcs/2/messages`,
//! their answers and error bodies). See `docs/providers.md` and Infobip's OpenAPI spec.

use serde::{Deserialize, Serialize};

/// `POST /rcs/2/messages` and `POST /sms/3/messages` share this envelope.
#[derive(Debug, Serialize)]
pub struct SendRequest<M> {
    /// One message per request: each job is one destination, and per-request
    /// outcomes keep retries and dead letters per message.
    pub messages: Vec<M>,
    /// Request-wide options (schedule, click tracking).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<RequestOptions>,
}

/// Request-wide options.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptions {
    /// Scheduling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// URL shortening and click tracking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
}

/// `options.schedule`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// `yyyy-MM-dd'T'HH:mm:ss.SSSZ`.
    pub send_at: String,
}

/// `options.tracking`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracking {
    /// Shorten URLs in the text.
    pub shorten_url: bool,
    /// Count clicks on them.
    pub track_clicks: bool,
    /// Where click reports go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    /// Custom short domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_domain: Option<String>,
}

/// `destinations[]`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// Digits only, international format.
    pub to: String,
    /// Our message id, so reports and retries correlate.
    pub message_id: String,
}

/// An SMS message (`/sms/3/messages`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsMessage {
    /// Sender id.
    pub sender: String,
    /// Destinations.
    pub destinations: Vec<Destination>,
    /// `{text}`.
    pub content: SmsContent,
    /// Per-message options.
    #[serde(skip_serializing_if = "MessageOptions::is_empty")]
    pub options: MessageOptions,
    /// Where reports go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Webhooks>,
}

/// SMS text content.
#[derive(Debug, Serialize)]
pub struct SmsContent {
    /// The text.
    pub text: String,
}

/// An RCS message (`/rcs/2/messages`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RcsMessage {
    /// RCS agent.
    pub sender: String,
    /// Destinations.
    pub destinations: Vec<Destination>,
    /// Content, by `type`.
    pub content: RcsContent,
    /// Per-message options.
    #[serde(skip_serializing_if = "MessageOptions::is_empty")]
    pub options: MessageOptions,
    /// Where reports go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Webhooks>,
}

/// RCS content, discriminated by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", rename_all_fields = "camelCase")]
pub enum RcsContent {
    /// `TEXT`.
    Text {
        /// ≤ 3,072 characters.
        text: String,
        /// ≤ 11.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// `FILE`.
    File {
        /// The file.
        file: FileRef,
        /// Video thumbnail.
        #[serde(skip_serializing_if = "Option::is_none")]
        thumbnail: Option<FileRef>,
        /// ≤ 11.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// `CARD`.
    Card {
        /// `HORIZONTAL` / `VERTICAL`.
        orientation: &'static str,
        /// `LEFT` / `RIGHT`.
        alignment: &'static str,
        /// The card.
        content: CardContent,
        /// ≤ 11.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// `CAROUSEL`.
    Carousel {
        /// `SMALL` / `MEDIUM`.
        card_width: &'static str,
        /// 2–10 cards.
        contents: Vec<CardContent>,
        /// ≤ 11.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        suggestions: Vec<Suggestion>,
    },
    /// `PROVIDER_TEMPLATE`.
    ProviderTemplate {
        /// Registered template name.
        template_id: String,
        /// Parameters.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        parameters: Vec<TemplateParameter>,
    },
}

/// `{url}`.
#[derive(Debug, Serialize)]
pub struct FileRef {
    /// URL.
    pub url: String,
}

/// A card.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CardContent {
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<CardMedia>,
    /// ≤ 4.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
}

/// Card media.
#[derive(Debug, Serialize)]
pub struct CardMedia {
    /// The file.
    pub file: FileRef,
    /// Thumbnail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<FileRef>,
    /// `SHORT` / `MEDIUM` / `TALL`.
    pub height: &'static str,
}

/// A template parameter.
#[derive(Debug, Serialize)]
pub struct TemplateParameter {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// A suggestion, discriminated by `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", rename_all_fields = "camelCase")]
pub enum Suggestion {
    /// `REPLY`.
    Reply {
        /// Label.
        text: String,
        /// Postback.
        postback_data: String,
    },
    /// `OPEN_URL`.
    OpenUrl {
        /// Label.
        text: String,
        /// Postback.
        postback_data: String,
        /// URL.
        url: String,
        /// `BROWSER` / `WEBVIEW`.
        #[serde(skip_serializing_if = "Option::is_none")]
        application: Option<&'static str>,
        /// `FULL` / `HALF` / `TALL`.
        #[serde(skip_serializing_if = "Option::is_none")]
        webview_view_mode: Option<&'static str>,
    },
    /// `DIAL_PHONE`.
    DialPhone {
        /// Label.
        text: String,
        /// Postback.
        postback_data: String,
        /// Number.
        phone_number: String,
    },
    /// `SHOW_LOCATION`.
    ShowLocation {
        /// Label.
        text: String,
        /// Postback.
        postback_data: String,
        /// Latitude.
        latitude: f64,
        /// Longitude.
        longitude: f64,
        /// Label of the pin.
        #[serde(skip_serializing_if = "Option::is_none")]
        label: Option<String>,
    },
    /// `REQUEST_LOCATION`.
    RequestLocation {
        /// Label.
        text: String,
        /// Postback.
        postback_data: String,
    },
    /// `CREATE_CALENDAR_EVENT`.
    CreateCalendarEvent {
        /// Label.
        text: String,
        /// Postback.
        postback_data: String,
        /// Start.
        start_time: String,
        /// End.
        end_time: String,
        /// Title.
        title: String,
        /// Description.
        #[serde(skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}

/// Per-message options (SMS and RCS).
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MessageOptions {
    /// Validity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_period: Option<ValidityPeriod>,
    /// Delivery window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_time_window: Option<DeliveryTimeWindow>,
    /// Campaign reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_reference_id: Option<String>,
    /// Regional ids (SMS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regional: Option<Regional>,
    /// Provider-side SMS failover (RCS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms_failover: Option<SmsFailover>,
}

impl MessageOptions {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.validity_period.is_none()
            && self.delivery_time_window.is_none()
            && self.campaign_reference_id.is_none()
            && self.regional.is_none()
            && self.sms_failover.is_none()
    }
}

/// `{amount, timeUnit}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidityPeriod {
    /// Amount.
    pub amount: u32,
    /// `SECONDS` / `MINUTES` / `HOURS`.
    pub time_unit: &'static str,
}

/// `{days, from, to}`.
#[derive(Debug, Serialize)]
pub struct DeliveryTimeWindow {
    /// `MONDAY` …
    pub days: Vec<String>,
    /// Start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<TimeOfDay>,
    /// End.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<TimeOfDay>,
}

/// `{hour, minute}`.
#[derive(Debug, Serialize)]
pub struct TimeOfDay {
    /// 0–23.
    pub hour: u8,
    /// 0–59.
    pub minute: u8,
}

/// `options.regional`.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Regional {
    /// India DLT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub india_dlt: Option<IndiaDlt>,
    /// Turkey IYS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turkey_iys: Option<TurkeyIys>,
}

/// `indiaDlt`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndiaDlt {
    /// Principal entity id.
    pub principal_entity_id: String,
    /// Content template id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_template_id: Option<String>,
    /// Telemarketer id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemarketer_id: Option<String>,
}

/// `turkeyIys`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurkeyIys {
    /// `BIREYSEL` / `TACIR`.
    pub recipient_type: String,
    /// Brand code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand_code: Option<u32>,
}

/// `options.smsFailover` of an RCS message.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmsFailover {
    /// SMS sender; absent means the account's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// SMS text.
    pub text: String,
    /// SMS validity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_period: Option<ValidityPeriod>,
    /// Regional ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regional: Option<Regional>,
}

/// `webhooks`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhooks {
    /// Delivery reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryWebhook>,
    /// Always `application/json`.
    pub content_type: &'static str,
    /// Echoed in reports (≤ 4,000 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_data: Option<String>,
    /// Seen reports (RCS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<SeenWebhook>,
}

/// `webhooks.delivery`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryWebhook {
    /// Report URL.
    pub url: String,
    /// Only final reports.
    pub intermediate_report: bool,
    /// Reports wanted.
    pub notify: bool,
    /// RCS with provider failover: a report for every failover step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_triggered_failover_reports: Option<bool>,
}

/// `webhooks.seen`.
#[derive(Debug, Serialize)]
pub struct SeenWebhook {
    /// Seen-report URL.
    pub url: String,
}

/// A send answer (`MessageResponse`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SendResponse {
    /// Per-destination results.
    #[serde(default)]
    pub messages: Vec<ResponseMessage>,
}

/// One destination's result.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseMessage {
    /// The message id (ours).
    #[serde(default)]
    pub message_id: Option<String>,
    /// Its status.
    #[serde(default)]
    pub status: Option<Status>,
}

/// Infobip's status object.
#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Group id.
    pub group_id: i32,
    /// Group name.
    #[serde(default)]
    pub group_name: Option<String>,
    /// Id.
    pub id: i32,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Infobip's error object in reports.
#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ErrorObject {
    /// Group id.
    #[serde(default)]
    pub group_id: i32,
    /// Id.
    pub id: i32,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Permanent.
    #[serde(default)]
    pub permanent: bool,
}

/// Both error body shapes Infobip answers with.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ErrorBody {
    /// `{errorCode, description, violations}` (`/sms/3`, `/rcs/2`).
    Api {
        /// `E400` …
        #[serde(rename = "errorCode")]
        error_code: String,
        /// Text.
        #[serde(default)]
        description: Option<String>,
        /// Field problems.
        #[serde(default)]
        violations: Vec<Violation>,
    },
    /// `{requestError: {serviceException: {messageId, text, validationErrors}}}`.
    Legacy {
        /// Wrapper.
        #[serde(rename = "requestError")]
        request_error: LegacyRequestError,
    },
}

/// A field problem.
#[derive(Debug, Deserialize)]
pub struct Violation {
    /// Field path.
    #[serde(default)]
    pub property: Option<String>,
    /// What is wrong.
    #[serde(default)]
    pub violation: Option<String>,
}

/// Legacy wrapper.
#[derive(Debug, Deserialize)]
pub struct LegacyRequestError {
    /// The exception.
    #[serde(rename = "serviceException")]
    pub service_exception: LegacyServiceException,
}

/// Legacy exception.
#[derive(Debug, Deserialize)]
pub struct LegacyServiceException {
    /// `BAD_REQUEST` …
    #[serde(rename = "messageId", default)]
    pub message_id: Option<String>,
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
}

impl ErrorBody {
    /// A one-line summary: code, description and violations.
    pub fn summary(&self) -> String {
        match self {
            ErrorBody::Api { error_code, description, violations } => {
                let mut text = format!("{error_code}: {}", description.as_deref().unwrap_or(""));
                for v in violations {
                    text.push_str(&format!(
                        "; {}: {}",
                        v.property.as_deref().unwrap_or("?"),
                        v.violation.as_deref().unwrap_or("?")
                    ));
                }
                text
            }
            ErrorBody::Legacy { request_error } => format!(
                "{}: {}",
                request_error.service_exception.message_id.as_deref().unwrap_or("ERROR"),
                request_error.service_exception.text.as_deref().unwrap_or("")
            ),
        }
    }
}

/// `POST /rcs/2/capability-check/query` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityQuery<'a> {
    /// The RCS agent the numbers would receive from.
    pub sender: &'a str,
    /// 1–500 numbers, digits only.
    pub phone_numbers: Vec<String>,
}

/// Its 200 answer.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityResponse {
    /// One result per number.
    #[serde(default)]
    pub capability_check_results: Vec<CapabilityResult>,
}

/// One number's capability.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityResult {
    /// The number as asked.
    pub phone_number: String,
    /// `ENABLED`, `UNREACHABLE`, `REJECTED_NETWORK`, … (kept open: unknown codes are "unknown").
    pub code: String,
}
