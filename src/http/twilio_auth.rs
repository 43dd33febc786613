//! Twilio request validation (`X-Twilio-Signature`): base64 of HMAC-SHA1,
//! keyed with the account's auth token, over the full URL Twilio requested
//! followed by every POST parameter sorted by name, name then value. For the
//! Media Streams WebSocket upgrade (a GET) the URL alone is signed.

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The signature Twilio sends for `url` and `params` with `auth_token`.
pub fn signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine;
    let mut sorted: Vec<&(&str, &str)> = params.iter().collect();
    sorted.sort();
    let mut mac = match Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `given` is Twilio's signature for this request (constant-time).
pub fn verify(auth_token: &str, url: &str, params: &[(&str, &str)], given: &str) -> bool {
    let expected = signature(auth_token, url, params);
    crate::util::constant_time_eq(expected.as_bytes(), given.trim().as_bytes())
}

/// Checks a Media Streams upgrade when `server.twilio_auth_token` is set (open
/// otherwise): the signed URL is `server.public_url` (else `ws://<Host>`) plus
/// the request's path and query. The error says what is wrong.
pub fn check_upgrade(
    server: &crate::config::ServerConfig,
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> Result<(), &'static str> {
    let token = &server.twilio_auth_token;
    if token.is_empty() {
        return Ok(());
    }
    let base = if server.public_url.is_empty() {
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        format!("ws://{host}")
    } else {
        server.public_url.trim_end_matches('/').to_string()
    };
    let url = format!(
        "{base}{}",
        uri.path_and_query().map_or("/media", |p| p.as_str())
    );
    let given = headers
        .get("x-twilio-signature")
        .and_then(|h| h.to_str().ok());
    match given {
        Some(g) if verify(token, &url, &[], g) => Ok(()),
        Some(_) => {
            tracing::warn!(%url, "Media Streams upgrade refused: bad Twilio signature");
            Err(
                "X-Twilio-Signature does not match (check server.twilio_auth_token and server.public_url)",
            )
        }
        None => {
            tracing::warn!(%url, "Media Streams upgrade refused: no Twilio signature");
            Err("missing X-Twilio-Signature")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: [(&str, &str); 5] = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ];
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn twilios_documented_example_validates() {
        // Twilio's security documentation: auth token 12345.
        assert_eq!(
            signature("12345", URL, &PARAMS),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        let mut shuffled = PARAMS;
        shuffled.reverse();
        assert!(verify(
            "12345",
            URL,
            &shuffled,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }

    #[test]
    fn any_change_fails() {
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert!(!verify("12346", URL, &PARAMS, good));
        assert!(!verify("12345", &format!("{URL}&x=1"), &PARAMS, good));
        assert!(!verify("12345", URL, &PARAMS[..4], good));
        assert!(!verify("12345", URL, &PARAMS, ""));
        assert!(!verify(
            "12345",
            URL,
            &PARAMS,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8"
        ));
    }
}
