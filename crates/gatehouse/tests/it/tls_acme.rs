//! `[tls.acme]` end to end against Pebble, the ACME test server (Debian package `pebble`), started
//! here with its own config on free ports: `pebble-challtestsrv` is its DNS (every name is
//! 127.0.0.1, except `bad.test`, which points where nothing listens), Pebble's own HTTPS certificate
//! comes from a CA made in the test and reaches Gatehouse as `ca_file`. A host gets its first
//! certificate, it is renewed without a restart (renewal window longer than Pebble's certificates
//! live, checked every 2 s), a host whose challenge fails is reported in `/readyz` and `/metrics`,
//! and keys are written 0600. Once with HTTP-01 (on `http_redirect_listen`), once with TLS-ALPN-01
//! (on the gateway's HTTPS port).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::free_port;
use crate::tls::{client, eventually, http1_upstream, peer_certificate, start, TestCa};

/// Pebble and its DNS server; killed when dropped.
struct Pebble {
    children: Vec<Child>,
    dir: tempfile::TempDir,
    acme: u16,
    management: u16,
    dns_management: u16,
    ca: TestCa,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of 127.0.0.1.
    async fn start(http_port: u16, tls_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new();
        let (chain, key, _) = ca.leaf(&["127.0.0.1", "localhost"]);
        std::fs::write(d.join("pebble.pem"), chain).unwrap();
        std::fs::write(d.join("pebble.key"), key).unwrap();
        std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
        let (acme, management, dns, dns_management) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": d.join("pebble.pem"),
            "privateKey": d.join("pebble.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        std::fs::write(d.join("pebble.json"), config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}"), "-management", &format!("127.0.0.1:{dns_management}")])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (Debian package pebble; scripts/test.sh installs it)");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (Debian package pebble; scripts/test.sh installs it)");
        let p = Pebble { children: vec![dns_server, pebble], dir, acme, management, dns_management, ca };
        let c = client(&[p.ca.der()], &[]);
        let start = Instant::now();
        while c.get(p.directory()).send().await.map(|r| r.status() != 200).unwrap_or(true)
            || reqwest::get(format!("http://127.0.0.1:{dns_management}/")).await.is_err()
        {
            assert!(start.elapsed() < Duration::from_secs(20), "pebble did not start: {}", p.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p
    }

    fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// Points `host` at `ip` in the mock DNS.
    async fn add_a(&self, host: &str, ip: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/add-a", self.dns_management))
            .json(&serde_json::json!({"host": host, "addresses": [ip]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "add-a: {}", r.status());
    }

    /// The root that Pebble signs issued certificates with (random per run).
    async fn issuing_root(&self) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        let c = client(&[self.ca.der()], &[]);
        let pem =
            c.get(format!("https://127.0.0.1:{}/roots/0", self.management)).send().await.unwrap().text().await.unwrap();
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

async fn acme_end_to_end(challenge: &str) {
    let (cp, gw, plain) = (free_port(), free_port(), free_port());
    let pebble = Pebble::start(plain, gw).await;
    pebble.add_a("bad.test", "127.0.0.2").await;
    let upstream = http1_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), pebble.ca.pem()).unwrap();
    std::fs::write(
        d.join("Spacefile"),
        format!("v: 0\nmicros:\n  - name: main\n    upstream: http://{upstream}\n    public: true\n"),
    )
    .unwrap();
    let redirect =
        if challenge == "http-01" { format!("http_redirect_listen = \"127.0.0.1:{plain}\"\n") } else { String::new() };
    std::fs::write(
        d.join("gatehouse.toml"),
        format!(
            "listen = \"127.0.0.1:{cp}\"\ngateway_listen = \"127.0.0.1:{gw}\"\ndata_dir = \"data\"\nlog_level = \"info\"\n\
             public_url = \"https://cp.test:{cp}\"\n{redirect}\
             [tls.acme]\ndirectory_url = \"{}\"\nemail = \"ops@example.com\"\nca_file = \"ca.pem\"\nchallenge = \"{challenge}\"\n\
             renew_before_days = 36500\ncheck_interval_secs = 2\nretry_min_secs = 1\nretry_max_secs = 2\n\n\
             [[apps]]\nname = \"app\"\nhosts = [\"app.test\", \"bad.test\"]\nspacefile = \"Spacefile\"\n",
            pebble.directory()
        ),
    )
    .unwrap();
    let node = start(d);
    let roots = [pebble.issuing_root().await];
    let names = [("app.test", loopback(gw)), ("cp.test", loopback(cp)), ("bad.test", loopback(gw))];
    let readyz = format!("https://cp.test:{cp}/readyz");
    // Both good hosts get a certificate; bad.test's challenge fails, and /readyz says so.
    let (status, ready) =
        eventually("certificates for app.test and cp.test, and bad.test failing", 60, &node, || async {
            let r = client(&roots, &names).get(&readyz).send().await.ok()?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.ok()?;
            let t = &body["tls"];
            (t["app.test"]["not_after"].is_i64()
                && t["cp.test"]["not_after"].is_i64()
                && t["bad.test"]["failures"].as_u64() >= Some(1))
            .then_some((status, body))
        })
        .await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "no_certificate", "{ready}");
    assert!(ready["tls"]["bad.test"]["not_after"].is_null(), "{ready}");
    let why = ready["tls"]["bad.test"]["last_error"].as_str().unwrap();
    // Pebble's own words: it tried bad.test where the DNS points, and nothing answered.
    assert!(why.contains("was not validated") && why.contains("127.0.0.2"), "{why}\n{}", node.log());
    assert!(node.log().contains("ACME certificate not obtained; will retry"), "{}", node.log());
    let old = client(&roots, &names);
    let metrics = old.get(format!("https://cp.test:{cp}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("gatehouse_acme_failing{certificate=\"bad.test\"} 1"), "{metrics}");
    assert!(metrics.contains("gatehouse_acme_failing{certificate=\"app.test\"} 0"), "{metrics}");
    assert!(metrics.contains("gatehouse_acme_orders_total{host=\"bad.test\",outcome=\"failed\"}"), "{metrics}");

    // The app is served with a certificate that chains to Pebble's root (the client trusts only it).
    let app_url = format!("https://app.test:{gw}/");
    let first = old.get(&app_url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let first_der = peer_certificate(&first);
    // bad.test has no certificate of its own; nothing valid for it is presented.
    assert!(client(&roots, &names).get(format!("https://bad.test:{gw}/")).send().await.is_err());

    // Renewal without a restart: a new connection gets a new certificate; the open one keeps working.
    eventually("a renewed certificate", 60, &node, || async {
        let r = client(&roots, &names).get(&app_url).send().await.ok()?;
        (peer_certificate(&r) != first_der).then_some(())
    })
    .await;
    let again = old.get(&app_url).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(peer_certificate(&again), first_der);

    let acme = d.join("data/acme");
    assert_eq!(mode(&acme.join("account.json")), 0o600);
    assert_eq!(mode(&acme.join("certificates/app.test/key.pem")), 0o600);
    assert!(!acme.join("certificates/bad.test/key.pem").exists());
}

#[tokio::test]
async fn acme_http_01_first_certificate_renewal_and_a_failing_challenge() {
    acme_end_to_end("http-01").await;
}

#[tokio::test]
async fn acme_tls_alpn_01_first_certificate_renewal_and_a_failing_challenge() {
    acme_end_to_end("tls-alpn-01").await;
}
