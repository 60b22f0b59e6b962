//! The dashboard as a person sees it: `shipshape dashboard` in its own process with a user's
//! kubeconfig, and Debian's headless Chromium driven over WebDriver (chromedriver, the
//! fantoccini client).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, ClientBuilder};

use crate::harness::{free_port, http_get, kubectl_path, shipshape_binary, Cluster};

/// A process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `shipshape dashboard` with `kubeconfig` (and `extra` arguments), once it serves; its URL.
pub fn dashboard(kubeconfig: &Path, extra: &[&str]) -> (Proc, String) {
    let port = free_port();
    let child = Command::new(shipshape_binary())
        .args(["dashboard", "--port", &port.to_string()])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("shipshape dashboard starts");
    let addr = format!("127.0.0.1:{port}");
    let start = Instant::now();
    while http_get(&addr, "/").is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "the dashboard did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), format!("http://{addr}"))
}

/// chromedriver and a headless Chromium session (1400×1000).
pub async fn browser() -> (Proc, Browser) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (apt-get install chromium-driver)");
    let driver = Proc(driver);
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a browser session");
    (driver, client)
}

/// A kubeconfig for ServiceAccount `sa` of `ns` (a TokenRequest token), beside the admin's.
pub fn kubeconfig_for(c: &Cluster, ns: &str, sa: &str) -> PathBuf {
    let token = c.kubectl(&["create", "token", sa, "-n", ns, "--duration=1h"]).success().stdout;
    let path = c.dir().join(format!("{sa}.kubeconfig"));
    std::fs::copy(&c.kubeconfig, &path).expect("copied");
    let set = |args: &[&str]| {
        let out = Command::new(kubectl_path()).args(args).env("KUBECONFIG", &path).output().expect("kubectl runs");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    set(&["config", "set-credentials", sa, &format!("--token={}", token.trim())]);
    set(&["config", "set-context", "--current", &format!("--user={sa}")]);
    path
}
