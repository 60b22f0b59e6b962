use super::*;

/// The dashboard with no API server behind it (its watches fail and say so): enough for
/// what is refused before anything is asked of the cluster.
async fn served() -> (SocketAddr, reqwest::Client) {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a url"));
    let client = Client::try_from(config).expect("a client");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(serve(client, listener, None, std::future::pending()));
    (addr, reqwest::Client::new())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let (addr, http) = served().await;
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/style.css", "text/css")] {
        let r = http.get(format!("http://{addr}{path}")).send().await.expect("an answer");
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
    }
}

#[tokio::test]
async fn another_host_name_is_refused_dns_rebinding() {
    let (addr, http) = served().await;
    let r = http
        .get(format!("http://{addr}/api/releases"))
        .header("host", format!("attacker.example:{}", addr.port()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 403);
    let r = http
        .get(format!("http://{addr}/api/releases"))
        .header("host", format!("localhost:{}", addr.port()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_action_not_sent_by_the_page_itself_is_refused() {
    let (addr, http) = served().await;
    let url = format!("http://{addr}/api/releases/shop/api/rollback");
    // A form on another site: no header of ours.
    let r = http.post(&url).send().await.expect("an answer");
    assert_eq!(r.status(), 403);
    // A script on another site naming itself.
    let r =
        http.post(&url).header("x-shipshape-dashboard", "1").header("origin", "http://attacker.example").send().await.expect("an answer");
    assert_eq!(r.status(), 403);
    // The page's own request reaches the API server (absent here: a 4xx/5xx of its own, not ours).
    let r =
        http.post(&url).header("x-shipshape-dashboard", "1").header("origin", format!("http://{addr}")).send().await.expect("an answer");
    assert_ne!(r.status(), 403);
    let r = http
        .post(format!("http://{addr}/api/releases/shop/api/delete"))
        .header("x-shipshape-dashboard", "1")
        .send()
        .await
        .expect("an answer");
    assert_eq!(r.status(), 404);
}
