//! With `server.twilio_auth_token` set, a Media Streams upgrade must carry
//! Twilio's signature of the URL it dialled: unsigned or mis-signed upgrades
//! get 403 with the reason, a correctly signed one becomes a call.

mod support;

use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn upgrade(addr: std::net::SocketAddr, signature: Option<&str>) -> Result<(), u16> {
    let mut request = format!("ws://{addr}/media").into_client_request().unwrap();
    if let Some(s) = signature {
        request
            .headers_mut()
            .insert("X-Twilio-Signature", s.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn unsigned_and_mis_signed_upgrades_get_403_and_a_signed_one_gets_in() {
    let gw = gateway("ws://127.0.0.1:9", |c| {
        c.server.twilio_auth_token = "test-auth-token".into();
        c.server.public_url = "wss://gw.example.com".into();
    })
    .await;
    assert_eq!(upgrade(gw.addr, None).await, Err(403));
    let (status, body) = http(gw.addr, "GET", "/media", None, None).await;
    assert_eq!(status, 403);
    assert!(body.contains("missing X-Twilio-Signature"), "{body}");
    let wrong =
        warmline::http::twilio_auth::signature("other-token", "wss://gw.example.com/media", &[]);
    assert_eq!(upgrade(gw.addr, Some(&wrong)).await, Err(403));
    // Signed for another host: refused too.
    let elsewhere = warmline::http::twilio_auth::signature(
        "test-auth-token",
        "wss://evil.example.com/media",
        &[],
    );
    assert_eq!(upgrade(gw.addr, Some(&elsewhere)).await, Err(403));
    let right = warmline::http::twilio_auth::signature(
        "test-auth-token",
        "wss://gw.example.com/media",
        &[],
    );
    assert_eq!(upgrade(gw.addr, Some(&right)).await, Ok(()));
    gw.shutdown().await;
}
