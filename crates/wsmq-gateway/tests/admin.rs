//! `--admin-listen`: metrics, the publish API and health checks on an internal address, and
//! the public port without them.

mod support;

use std::net::{SocketAddr, TcpListener as StdListener};

use support::{TestGateway, http};

#[tokio::test]
async fn admin_routes_move_to_the_admin_port() {
    let admin: SocketAddr = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = TestGateway::builder()
        .config(|c| {
            c.listen.admin = Some(admin);
            c.auth.api_key = Some(wsmq_gateway::config::Secret::new("admin-key-123"));
        })
        .start()
        .await;
    let key = [("authorization", "apikey admin-key-123")];
    let body = r#"{"queue": "adminq", "message": "hi"}"#;
    // The public port: sessions and health, but no metrics and no API.
    assert_eq!(gw.http("GET", "/metrics", &[], "").await.0, 404);
    assert_eq!(gw.http("POST", "/api/publish", &key, body).await.0, 404);
    assert_eq!(gw.http("GET", "/readyz", &[], "").await.0, 200);
    gw.v1("alice").await;
    // The admin port: health, metrics and the API, but no sessions.
    let mut ready = 0;
    for _ in 0..100 {
        ready = http(admin, "GET", "/readyz", &[], "").await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 200);
    assert_eq!(http(admin, "GET", "/healthz", &[], "").await.0, 200);
    let (status, metrics) = http(admin, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("wsmq_connections"), "{metrics}");
    let (status, reply) = http(admin, "POST", "/api/publish", &key, body).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("\"id\""), "{reply}");
    assert_eq!(http(admin, "GET", "/ws", &[], "").await.0, 404);
}
