//! The handoff context in the signalling of an INVITE warmline sends to a
//! person (a SIP agent phone, a desk): `User-to-User` (RFC 7433, hex-encoded
//! compact JSON), `X-Warmline-*` headers a desk can route or pop a screen on,
//! a signed URL to the whole HandoffContext, and the caller's number as
//! `P-Asserted-Identity`. Pure: built from the context JSON the store keeps.
//!
//! Every value is made header-safe (no CR, LF or other control characters,
//! cut at a character boundary), and every header stays within
//! [`MAX_HEADER_BYTES`], so nothing a caller said can inject a header or
//! overflow a desk's parser.

use serde_json::Value;

/// The longest header line (name, ": ", value) this module writes.
pub(crate) const MAX_HEADER_BYTES: usize = 1024;
/// The longest summary carried in `X-Warmline-Summary`.
const SUMMARY_BYTES: usize = 300;
/// The longest name, id or intent carried anywhere.
const FIELD_BYTES: usize = 64;

/// What the signalling says about one handoff.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HandoffSignal {
    pub call_id: String,
    pub trigger: String,
    pub urgency: String,
    pub customer_id: String,
    pub customer_name: String,
    pub intent: String,
    pub summary: String,
    /// The caller's number, when the context has one that looks like a phone number.
    pub caller_number: Option<String>,
}

impl HandoffSignal {
    /// Reads the fields from a HandoffContext (camelCase JSON, as stored);
    /// a missing or unreadable context gives just the call id.
    pub(crate) fn from_context(call_id: &str, context_json: Option<&str>) -> HandoffSignal {
        let v: Value = context_json
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or(Value::Null);
        let text = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let contact = text("/customer/contactInfo");
        let digits = contact.trim_start_matches('+');
        let caller_number = (!digits.is_empty()
            && digits.len() <= 20
            && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| contact.clone());
        HandoffSignal {
            call_id: call_id.to_string(),
            trigger: text("/escalationReason/trigger"),
            urgency: text("/escalationReason/urgency"),
            customer_id: text("/customer/id"),
            customer_name: text("/customer/name"),
            intent: text("/intent/primary"),
            summary: text("/summary"),
            caller_number,
        }
    }

    /// The headers to add to the INVITE, in order. `context_url` is the signed
    /// URL to the whole context; `assert_caller` adds `P-Asserted-Identity`;
    /// `diversion` (the line the caller dialled, a checked URI; "" = none)
    /// adds `Diversion` (RFC 5806).
    pub(crate) fn headers(
        &self,
        context_url: Option<&str>,
        assert_caller: bool,
        diversion: &str,
    ) -> Vec<(&'static str, String)> {
        let f = |s: &str| header_safe(s, FIELD_BYTES);
        let uui = serde_json::json!({
            "callId": f(&self.call_id),
            "trigger": f(&self.trigger),
            "urgency": f(&self.urgency),
            "customerId": f(&self.customer_id),
            "customerName": f(&self.customer_name),
            "intent": f(&self.intent),
        });
        let mut out = vec![
            (
                "User-to-User",
                format!(
                    "{};encoding=hex;purpose=isdn-uui",
                    hex::encode(uui.to_string())
                ),
            ),
            ("X-Warmline-Call-Id", f(&self.call_id)),
        ];
        if !self.trigger.is_empty() {
            out.push(("X-Warmline-Reason", f(&self.trigger)));
        }
        if !self.urgency.is_empty() {
            out.push(("X-Warmline-Urgency", f(&self.urgency)));
        }
        if !self.summary.is_empty() {
            out.push((
                "X-Warmline-Summary",
                header_safe(&self.summary, SUMMARY_BYTES),
            ));
        }
        if let Some(url) = context_url {
            out.push(("X-Warmline-Context-Url", header_safe(url, 900)));
        }
        if assert_caller && let Some(n) = &self.caller_number {
            out.push(("P-Asserted-Identity", format!("<tel:{n}>")));
        }
        if !diversion.is_empty() {
            out.push((
                "Diversion",
                format!(
                    "<{}>;reason=deflection;counter=1",
                    header_safe(diversion, 256)
                ),
            ));
        }
        // Belt and braces: nothing longer than a desk's parser should take.
        out.retain(|(name, value)| name.len() + 2 + value.len() <= MAX_HEADER_BYTES);
        out
    }
}

/// `s` as a header value: control characters (CR, LF, tabs, NUL…) become
/// spaces, runs of spaces collapse, and the result is cut to `max` bytes at a
/// character boundary (with "…" when cut).
pub(crate) fn header_safe(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut space = false;
    for c in s.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' {
            if space {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        out.push(c);
    }
    let out = out.trim().to_string();
    if out.len() <= max {
        return out;
    }
    let ell = "…";
    let mut end = max.saturating_sub(ell.len());
    while end > 0 && !out.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ell}", out[..end].trim_end())
}

/// The call id back out of a `User-to-User` value (what a desk would do).
#[cfg(test)]
fn uui_call_id(value: &str) -> Option<String> {
    let hex_part = value.split(';').next()?;
    let bytes = hex::decode(hex_part).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("callId")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> String {
        serde_json::json!({
            "customer": {"id": "C-1", "name": "Sue Park", "contactInfo": "+15550100"},
            "intent": {"primary": "billing_dispute"},
            "summary": "Double charged 600.\r\nX-Injected: yes\nwants it back",
            "escalationReason": {"trigger": "authority_limit", "urgency": "elevated"}
        })
        .to_string()
    }

    #[test]
    fn the_invite_carries_who_why_and_how_urgent_with_a_decodable_uui() {
        let s = HandoffSignal::from_context("call-7", Some(&context()));
        let h = s.headers(
            Some("http://gw/v1/handoff/call-7/context?exp=1&sig=ab"),
            true,
            "tel:+15550199",
        );
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(
            uui_call_id(get("User-to-User").expect("uui")).as_deref(),
            Some("call-7")
        );
        assert!(
            get("User-to-User")
                .expect("uui")
                .ends_with(";encoding=hex;purpose=isdn-uui")
        );
        assert_eq!(get("X-Warmline-Call-Id"), Some("call-7"));
        assert_eq!(get("X-Warmline-Reason"), Some("authority_limit"));
        assert_eq!(get("X-Warmline-Urgency"), Some("elevated"));
        assert_eq!(get("P-Asserted-Identity"), Some("<tel:+15550100>"));
        assert_eq!(
            get("Diversion"),
            Some("<tel:+15550199>;reason=deflection;counter=1")
        );
        assert!(get("X-Warmline-Context-Url").is_some());
        assert!(
            s.headers(None, false, "")
                .iter()
                .all(|(k, _)| *k != "P-Asserted-Identity" && *k != "Diversion")
        );
    }

    #[test]
    fn nothing_the_caller_said_can_break_a_header_line() {
        let s = HandoffSignal::from_context("call-7", Some(&context()));
        let long = HandoffSignal {
            summary: "é".repeat(5000),
            customer_name: "\u{0}\r\nVia: evil".repeat(100),
            ..s.clone()
        };
        for signal in [s, long] {
            for (name, value) in signal.headers(Some("http://gw/x"), true, "tel:+15550199") {
                assert!(!value.chars().any(char::is_control), "{name}: {value:?}");
                assert!(name.len() + 2 + value.len() <= MAX_HEADER_BYTES, "{name}");
            }
        }
        assert_eq!(header_safe("a\r\nb\t\tc", 100), "a b c");
        assert_eq!(header_safe("ééé", 5), "é…");
    }

    #[test]
    fn a_missing_context_still_names_the_call() {
        let s = HandoffSignal::from_context("call-9", None);
        let h = s.headers(None, true, "");
        assert_eq!(h.len(), 2, "{h:?}");
        let s = HandoffSignal::from_context("call-9", Some("not json"));
        assert_eq!(s.call_id, "call-9");
        assert_eq!(s.caller_number, None);
    }
}
