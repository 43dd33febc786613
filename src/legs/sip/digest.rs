//! SIP digest authentication (RFC 3261 §22, RFC 2617 with MD5 and qop=auth),
//! the UAS side: challenge an INVITE with 401 + `WWW-Authenticate`, then check
//! the `Authorization` the trunk sends back. Sans-IO: the caller passes the
//! current time; nonces are self-validating (time + MAC), so no state is kept.

use crate::util::constant_time_eq;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// How long a nonce stays good.
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// The credentials a trunk must present.
#[derive(Debug, Clone)]
pub struct DigestAuth {
    realm: String,
    user: String,
    password: String,
    nonce_key: [u8; 16],
}

/// Why an `Authorization` header was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `Authorization` header.
    #[error("no credentials")]
    Missing,
    /// The header is not a Digest header we can read.
    #[error("unreadable Authorization header: {0}")]
    Malformed(String),
    /// Another user name or realm.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    /// The nonce is ours but too old (the client should retry with a new one).
    #[error("stale nonce")]
    Stale,
    /// The nonce is not one we issued.
    #[error("nonce not issued here")]
    ForeignNonce,
    /// Wrong password (or a different method/URI than signed).
    #[error("wrong digest response")]
    WrongResponse,
}

impl DigestAuth {
    /// The trunk's credentials when `sip.auth_user` is set; `nonce_key` signs nonces.
    pub fn for_trunk(sip: &crate::config::SipConfig, nonce_key: [u8; 16]) -> Option<Self> {
        (!sip.auth_user.is_empty()).then(|| {
            DigestAuth::new(
                &sip.auth_realm,
                &sip.auth_user,
                &sip.auth_password,
                nonce_key,
            )
        })
    }

    /// Credentials for `realm`; `nonce_key` signs the nonces (random per process).
    pub fn new(realm: &str, user: &str, password: &str, nonce_key: [u8; 16]) -> Self {
        DigestAuth {
            realm: realm.to_string(),
            user: user.to_string(),
            password: password.to_string(),
            nonce_key,
        }
    }

    /// The `WWW-Authenticate` value of a 401 at `now` (UNIX seconds).
    pub fn challenge(&self, now: u64, stale: bool) -> String {
        let mut value = format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"",
            self.realm,
            self.nonce(now)
        );
        if stale {
            value.push_str(", stale=true");
        }
        value
    }

    /// Checks an `Authorization` header of a `method` request at `now`.
    pub fn verify(
        &self,
        authorization: Option<&str>,
        method: &str,
        now: u64,
    ) -> Result<(), DigestError> {
        let header = authorization.ok_or(DigestError::Missing)?;
        let fields = parse_fields(header)?;
        let get = |k: &str| field(&fields, k);
        let need = |k: &str| get(k).ok_or_else(|| DigestError::Malformed(format!("no {k}")));
        let user = need("username")?;
        if user != self.user || need("realm")? != self.realm {
            return Err(DigestError::UnknownUser(user.to_string()));
        }
        if let Some(alg) = get("algorithm")
            && !alg.eq_ignore_ascii_case("MD5")
        {
            return Err(DigestError::Malformed(format!("algorithm {alg}")));
        }
        let nonce = need("nonce")?;
        self.check_nonce(nonce, now)?;
        let uri = need("uri")?;
        let qop = match get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some((need("nc")?, need("cnonce")?)),
            Some(q) => return Err(DigestError::Malformed(format!("qop {q}"))),
        };
        let expected = response(
            (&self.user, &self.realm, &self.password),
            method,
            uri,
            nonce,
            qop,
        );
        if constant_time_eq(
            expected.as_bytes(),
            need("response")?.to_ascii_lowercase().as_bytes(),
        ) {
            Ok(())
        } else {
            Err(DigestError::WrongResponse)
        }
    }

    /// `<issued at, hex><MAC of it, 16 hex>`.
    fn nonce(&self, now: u64) -> String {
        format!("{now:x}{}", self.mac(now))
    }

    fn mac(&self, issued: u64) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.nonce_key) else {
            return String::new(); // HMAC takes keys of any length
        };
        mac.update(&issued.to_be_bytes());
        hex::encode(&mac.finalize().into_bytes()[..8])
    }

    fn check_nonce(&self, nonce: &str, now: u64) -> Result<(), DigestError> {
        let split = nonce
            .len()
            .checked_sub(16)
            .ok_or(DigestError::ForeignNonce)?;
        let (issued, mac) = nonce
            .split_at_checked(split)
            .ok_or(DigestError::ForeignNonce)?;
        let issued = u64::from_str_radix(issued, 16).map_err(|_| DigestError::ForeignNonce)?;
        if !constant_time_eq(mac.as_bytes(), self.mac(issued).as_bytes()) {
            return Err(DigestError::ForeignNonce);
        }
        if now.saturating_sub(issued) > NONCE_LIFETIME_SECS || issued > now + 5 {
            return Err(DigestError::Stale);
        }
        Ok(())
    }
}

/// The UAC side: the `Authorization` (or `Proxy-Authorization`) value that
/// answers `challenge` (a `WWW-Authenticate` / `Proxy-Authenticate` value) for
/// `method` on `uri` with `user`/`password` (MD5; qop=auth when offered).
pub fn answer_challenge(
    challenge: &str,
    method: &str,
    uri: &str,
    user: &str,
    password: &str,
) -> Result<String, DigestError> {
    let fields = parse_fields(challenge)?;
    let get = |k: &str| field(&fields, k);
    let realm = get("realm").unwrap_or_default();
    let nonce = get("nonce").ok_or_else(|| DigestError::Malformed("no nonce".into()))?;
    if let Some(alg) = get("algorithm")
        && !alg.eq_ignore_ascii_case("MD5")
    {
        return Err(DigestError::Malformed(format!("algorithm {alg}")));
    }
    let quoted = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let offers_auth =
        get("qop").is_some_and(|q| q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")));
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm=MD5",
        quoted(user),
        quoted(realm),
        quoted(nonce),
        quoted(uri)
    );
    let response = if offers_auth {
        let cnonce = format!("{:016x}", crate::util::random_u64());
        out.push_str(&format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\""));
        response(
            (user, realm, password),
            method,
            uri,
            nonce,
            Some(("00000001", &cnonce)),
        )
    } else {
        response((user, realm, password), method, uri, nonce, None)
    };
    out.push_str(&format!(", response=\"{response}\""));
    if let Some(opaque) = get("opaque") {
        out.push_str(&format!(", opaque=\"{}\"", quoted(opaque)));
    }
    Ok(out)
}

/// The value of field `k` (any case) among `fields`.
fn field<'a>(fields: &'a [(String, String)], k: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

/// `Digest a="b", c=d` → [(a, b), (c, d)].
fn parse_fields(header: &str) -> Result<Vec<(String, String)>, DigestError> {
    let rest = header.trim();
    let rest = rest
        .strip_prefix("Digest")
        .or_else(|| rest.strip_prefix("digest"))
        .ok_or_else(|| DigestError::Malformed("not a Digest header".into()))?;
    let mut fields = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_string();
        if name.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            return Err(DigestError::Malformed(format!("{name} has no value")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let value = if chars.next_if_eq(&'"').is_some() {
            let mut v = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => v.extend(chars.next()),
                    Some(c) => v.push(c),
                    None => return Err(DigestError::Malformed("unterminated quote".into())),
                }
            }
            v
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_string()
        };
        fields.push((name, value));
    }
    Ok(fields)
}

/// The digest `response` (RFC 2617 §3.2.2, MD5) for `(user, realm, password)`
/// on `method` `uri` with `nonce`; `qop` is `(nc, cnonce)` for qop=auth.
fn response(
    (user, realm, password): (&str, &str, &str),
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
        Some((nc, cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmline_answers_a_digest_challenge_the_way_a_uas_checks_it() {
        let a = auth();
        let challenge = a.challenge(1_000, false);
        let header = answer_challenge(
            &challenge,
            "INVITE",
            "sip:+15550100@trunk",
            "trunk",
            "s3cret",
        )
        .unwrap();
        assert_eq!(a.verify(Some(&header), "INVITE", 1_001), Ok(()));
        let wrong = answer_challenge(
            &challenge,
            "INVITE",
            "sip:+15550100@trunk",
            "trunk",
            "guess",
        )
        .unwrap();
        assert_eq!(
            a.verify(Some(&wrong), "INVITE", 1_001),
            Err(DigestError::WrongResponse)
        );
        // Without qop (RFC 2069 style) and with an opaque value echoed back.
        let plain = answer_challenge(
            "Digest realm=\"warmline\", nonce=\"abc\", opaque=\"xyz\"",
            "INVITE",
            "sip:x",
            "u",
            "p",
        )
        .unwrap();
        assert!(
            plain.contains("opaque=\"xyz\"") && !plain.contains("qop"),
            "{plain}"
        );
        assert!(answer_challenge("Basic realm=x", "INVITE", "sip:x", "u", "p").is_err());
        assert!(answer_challenge("Digest realm=\"x\"", "INVITE", "sip:x", "u", "p").is_err());
    }

    fn auth() -> DigestAuth {
        DigestAuth::new("warmline", "trunk", "s3cret", [7; 16])
    }

    fn nonce_of(challenge: &str) -> String {
        let fields = parse_fields(challenge).unwrap();
        fields.into_iter().find(|(k, _)| k == "nonce").unwrap().1
    }

    /// What a client computes (RFC 2617 §3.2.2), written out independently.
    fn answer(nonce: &str, password: &str, qop: bool) -> String {
        let ha1 = md5_hex(&format!("trunk:warmline:{password}"));
        let ha2 = md5_hex("INVITE:sip:ai@127.0.0.1");
        if qop {
            let r = md5_hex(&format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
            format!(
                "Digest username=\"trunk\", realm=\"warmline\", nonce=\"{nonce}\", uri=\"sip:ai@127.0.0.1\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\""
            )
        } else {
            let r = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            format!(
                "Digest username=\"trunk\",realm=\"warmline\",nonce=\"{nonce}\",uri=\"sip:ai@127.0.0.1\",response=\"{r}\""
            )
        }
    }

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn right_password_passes_with_and_without_qop() {
        let a = auth();
        let nonce = nonce_of(&a.challenge(1000, false));
        assert_eq!(
            a.verify(Some(&answer(&nonce, "s3cret", true)), "INVITE", 1010),
            Ok(())
        );
        assert_eq!(
            a.verify(Some(&answer(&nonce, "s3cret", false)), "INVITE", 1010),
            Ok(())
        );
    }

    #[test]
    fn wrong_password_method_user_nonce_and_age_are_refused() {
        let a = auth();
        let nonce = nonce_of(&a.challenge(1000, false));
        let good = answer(&nonce, "s3cret", true);
        assert_eq!(a.verify(None, "INVITE", 1000), Err(DigestError::Missing));
        assert_eq!(
            a.verify(Some(&answer(&nonce, "guess", true)), "INVITE", 1000),
            Err(DigestError::WrongResponse)
        );
        assert_eq!(
            a.verify(Some(&good), "BYE", 1000),
            Err(DigestError::WrongResponse)
        );
        assert_eq!(
            a.verify(Some(&good), "INVITE", 1000 + NONCE_LIFETIME_SECS + 1),
            Err(DigestError::Stale)
        );
        let other = DigestAuth::new("warmline", "trunk", "s3cret", [8; 16]);
        assert_eq!(
            other.verify(Some(&good), "INVITE", 1000),
            Err(DigestError::ForeignNonce)
        );
        assert_eq!(
            a.verify(Some(&good.replace("\"trunk\"", "\"root\"")), "INVITE", 1000),
            Err(DigestError::UnknownUser("root".into()))
        );
    }

    #[test]
    fn garbage_headers_are_errors_not_panics() {
        let a = auth();
        for h in [
            "",
            "Basic dHJ1bms6czNjcmV0",
            "Digest",
            "Digest username",
            "Digest username=\"trunk",
            "Digest username=\"trunk\", realm=\"warmline\", nonce=\"é\", uri=x, response=y",
            "Digest username=\"trunk\", realm=\"warmline\", nonce=\"\", uri=x, response=y",
        ] {
            assert!(a.verify(Some(h), "INVITE", 1000).is_err(), "{h}");
        }
    }
}
