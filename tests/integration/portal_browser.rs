//! The portal in a real browser: Debian's chromium driven through chromedriver (WebDriver), one
//! gateway and one browser session for every page check. Opens the link CreatePortalSession
//! returns, checks month to date and the chart, follows to the breakdown, downloads its CSV and
//! compares it with GetSpendSummary digit for digit, opens the invoices and an invoice (an
//! adjustment naming its original period), sees the tenant's brand colours applied, and is
//! refused for another customer's id, another customer's invoice (an edited invoice id), a
//! reused link and an expired one. Screenshots of each page land in
//! `target/portal-screenshots/`.
//!
//! The browser comes from `scripts/install-browser.sh` (apt: chromium, chromium-driver), which
//! `scripts/test.sh` runs when it is missing. Without it this test fails and says so, unless
//! `MSPGW_TEST_SKIP_BROWSER=1`.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{Duration as Span, Utc};
use msp_gateway::domain::portal::NewPortalSession;
use msp_gateway::proto::v1;
use serde_json::{Value, json};

use crate::harness::{Backend, TestGateway};
use crate::helpdesk::{fixture, help_desk, invoices, portal, record, summary_request};

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,1000",
];

fn find(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a port of its own, killed when dropped.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it yields a value or `limit` passes (each poll is a condition check,
/// not a guess at how long something takes).
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Driver {
    async fn start(chromedriver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let status = format!("{}/status", driver.url);
        wait_for("chromedriver to be ready", Duration::from_secs(30), || {
            let request = driver.http.get(&status).send();
            async move {
                let body = request.await.ok()?.text().await.ok()?;
                let v: Value = serde_json::from_str(&body).ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap());
        }
        let response = request.send().await.expect("webdriver call");
        let text = response.text().await.expect("webdriver body");
        let v: Value = serde_json::from_str(&text).expect("webdriver json");
        if v["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }
}

struct Browser<'a> {
    driver: &'a Driver,
    session: String,
}

impl Browser<'_> {
    async fn open<'a>(driver: &'a Driver, profile: &Path, downloads: &Path) -> Browser<'a> {
        let chromium = find("chromium").expect("chromium on PATH");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let v = driver
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": args,
                        "prefs": {
                            "download.default_directory": downloads,
                            "download.prompt_for_download": false,
                        },
                    },
                }}})),
            )
            .await;
        Browser {
            driver,
            session: v["sessionId"].as_str().expect("session id").to_string(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver
            .call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn title(&self) -> String {
        self.call(reqwest::Method::GET, "/title", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    async fn find(&self, css: &str) -> String {
        let all = self.find_all(css).await;
        assert!(!all.is_empty(), "no element matches {css}");
        all[0].clone()
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/text"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
    }

    /// The computed value of a CSS property of the first element matching `css`.
    async fn style(&self, css: &str, property: &str) -> String {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{element}/css/{property}"),
            None,
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/portal-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn close(self) {
        self.driver
            .call(
                reqwest::Method::DELETE,
                &format!("/session/{}", self.session),
                None,
            )
            .await;
    }
}

/// One CSV line's fields (the portal quotes none of these).
fn csv_lines(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_in_a_real_browser() {
    let (Some(chromedriver), Some(_)) = (find("chromedriver"), find("chromium")) else {
        if std::env::var("MSPGW_TEST_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("chromium not installed; browser test SKIPPED (MSPGW_TEST_SKIP_BROWSER=1)");
            return;
        }
        panic!(
            "chromium and chromedriver are needed: run scripts/install-browser.sh (apt), or set \
             MSPGW_TEST_SKIP_BROWSER=1 to skip this test"
        );
    };
    // One gateway: the pages' reads are the API's, tested on both backends in `helpdesk`.
    let Some(gw) = TestGateway::start(Backend::Sqlite).await else {
        return;
    };
    let l = fixture(&gw).await;
    let (c0, c1) = (l.customers[0].clone(), l.customers[1].clone());
    // This period's usage, for month to date and the chart.
    let mut now_line = crate::charge_streams::line(&c0, "vm", "12.345", l.base);
    now_line.key.service = "Compute".into();
    record(&gw, &l, vec![now_line]).await;
    // Invoices (customer 0: October, partly paid, and November with an adjustment of October;
    // customer 1: October) and the tenant's brand colours.
    let inv = invoices(&gw, &l).await;
    gw.tenants(&gw.admin_key)
        .await
        .update_tenant_branding(v1::UpdateTenantBrandingRequest {
            request_id: "brand-1".into(),
            branding: Some(v1::TenantBranding {
                primary_color: "#0e6e6e".into(),
                accent_color: "#f2a900".into(),
            }),
        })
        .await
        .unwrap();

    let session = portal(&gw, &gw.admin_key)
        .await
        .create_portal_session(v1::CreatePortalSessionRequest {
            customer_id: c0.clone(),
            return_url: "https://bss.example/accounts/0".into(),
            request_id: "browser-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut hd = help_desk(&gw, &gw.admin_key).await;
    let overview = hd
        .get_spend_overview(v1::GetSpendOverviewRequest {
            customer_id: c0.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    let driver = Driver::start(&chromedriver).await;
    let scratch = tempfile::tempdir().unwrap();
    let (profile, downloads) = (
        scratch.path().join("profile"),
        scratch.path().join("downloads"),
    );
    std::fs::create_dir_all(&downloads).unwrap();
    let browser = Browser::open(&driver, &profile, &downloads).await;
    let base = format!("http://{}", gw.address);

    // The link opens the customer's overview.
    browser.go(&session.url).await;
    assert_eq!(
        browser.current_url().await,
        format!("{base}/portal/c/{c0}/")
    );
    assert!(browser.title().await.starts_with("Overview · Test ISP"));
    let mut mtd: rust_decimal::Decimal = overview.month_to_date.parse().unwrap();
    mtd = mtd.round_dp(2);
    mtd.rescale(2);
    assert_eq!(browser.text("#month-to-date").await, format!("{mtd} ZAR"));
    assert_eq!(browser.text("#credit-limit").await, "1000.00 ZAR");
    assert_eq!(browser.find_all("svg.chart rect.bar").await.len(), 30);
    assert_eq!(
        browser.find_all("svg.chart title#chart-title").await.len(),
        1,
        "the chart is labelled"
    );
    assert!(browser.text("#top-services").await.contains("Compute"));
    // White label: the tenant's colours, applied.
    let header = browser.style("header", "background-color").await;
    assert!(header.contains("14, 110, 110"), "header {header}");
    let marker = browser
        .style("nav a[aria-current='page']", "border-bottom-color")
        .await;
    assert!(
        marker.contains("242, 169, 0"),
        "current page marker {marker}"
    );
    let number = |i: &v1::Invoice| i.number.clone();
    assert!(
        browser
            .text("#recent-invoices")
            .await
            .contains(&number(&inv.october))
    );
    browser.screenshot("overview").await;

    // Invoices: the list, newest first, then one invoice with its lines.
    browser.click("#all-invoices").await;
    assert_eq!(
        browser.current_url().await,
        format!("{base}/portal/c/{c0}/invoices")
    );
    assert_eq!(browser.find_all("#invoices tbody tr").await.len(), 2);
    let first_row = browser.text("#invoices tbody tr").await;
    assert!(first_row.contains(&number(&inv.november)), "{first_row}");
    browser.screenshot("invoices").await;
    browser
        .click(&format!(
            "#invoices a[href$='/invoices/{}']",
            inv.october.id
        ))
        .await;
    assert_eq!(
        browser.current_url().await,
        format!("{base}/portal/c/{c0}/invoices/{}", inv.october.id)
    );
    assert_eq!(browser.text("#invoice-total").await, "6.60 ZAR");
    assert_eq!(browser.text("#invoice-paid").await, "1.00 ZAR");
    assert_eq!(browser.text("#invoice-balance").await, "5.60 ZAR");
    assert_eq!(browser.find_all("#lines tbody tr").await.len(), 3);
    assert!(browser.text("#lines").await.contains("3.10 ZAR"));
    browser.screenshot("invoice").await;
    browser
        .go(&format!(
            "{base}/portal/c/{c0}/invoices/{}",
            inv.november.id
        ))
        .await;
    let adjustment = browser.text("#lines tr.adjustment").await;
    assert!(
        adjustment.contains(&format!(
            "Adjusts 1 October 2026 to 31 October 2026 (invoice {})",
            number(&inv.october)
        )),
        "{adjustment}"
    );
    browser.screenshot("invoice-adjustment").await;
    // Another customer's invoice under this customer's path (an edited invoice id), and this
    // customer's invoice under another's: not found, and nothing of it shown.
    browser
        .go(&format!(
            "{base}/portal/c/{c0}/invoices/{}",
            inv.other_customer.id
        ))
        .await;
    assert!(browser.title().await.starts_with("Not found"));
    assert!(
        !browser
            .text("main")
            .await
            .contains(&number(&inv.other_customer))
    );
    browser.screenshot("other-customers-invoice").await;
    browser
        .go(&format!("{base}/portal/c/{c1}/invoices/{}", inv.october.id))
        .await;
    assert!(browser.title().await.starts_with("Not found"));
    browser
        .go(&format!("{base}/portal/c/{c0}/invoices/inv_nonexistent"))
        .await;
    assert!(browser.title().await.starts_with("Not found"));
    browser.go(&format!("{base}/portal/c/{c0}/")).await;

    // Follow to the breakdown, then choose a period by meter.
    browser.click("nav a[href$='/breakdown']").await;
    assert_eq!(
        browser.current_url().await,
        format!("{base}/portal/c/{c0}/breakdown")
    );
    browser
        .go(&format!(
            "{base}/portal/c/{c0}/breakdown?start=2026-10-01&end=2026-10-03&by=meter"
        ))
        .await;
    assert_eq!(browser.text("#total").await, "6.60 ZAR");
    assert_eq!(browser.find_all("#breakdown tbody tr").await.len(), 3);
    browser.screenshot("breakdown").await;

    // The CSV download equals the API to the last digit.
    browser.click("#csv").await;
    let csv_path = wait_for("the CSV download", Duration::from_secs(30), || {
        let downloads = downloads.clone();
        async move {
            std::fs::read_dir(&downloads)
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "csv"))
        }
    })
    .await;
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    use v1::SpendDimension::{Meter, Service, Vendor};
    let api = hd
        .get_spend_summary(summary_request(
            &c0,
            "2026-10-01",
            "2026-10-03",
            &[Vendor, Service, Meter],
        ))
        .await
        .unwrap()
        .into_inner();
    let lines = csv_lines(&csv);
    assert_eq!(
        lines[0],
        [
            "vendor", "service", "meter", "date", "amount", "quantity", "currency"
        ]
    );
    assert_eq!(lines.len(), api.rows.len() + 2, "{csv}");
    for (line, row) in lines[1..].iter().zip(&api.rows) {
        assert_eq!(line[0], "SIMULATOR");
        assert_eq!((&line[1], &line[2]), (&row.service, &row.meter));
        assert_eq!(
            line[4], row.amount,
            "amount of {}/{}",
            row.service, row.meter
        );
        assert_eq!(line[5], row.quantity);
    }
    let total = lines.last().unwrap();
    assert_eq!(
        (total[0].as_str(), total[4].as_str()),
        ("TOTAL", api.total.as_str())
    );
    assert_eq!(api.total, "6.600000001");

    // Another customer's id in the URL: not found, and none of its figures.
    browser.go(&format!("{base}/portal/c/{c1}/")).await;
    assert!(browser.title().await.starts_with("Not found"));
    assert!(!browser.text("main").await.contains("100"));
    browser.screenshot("other-customer").await;
    browser
        .go(&format!(
            "{base}/portal/c/{c1}/breakdown.csv?start=2026-10-01&end=2026-10-03"
        ))
        .await;
    assert!(browser.title().await.starts_with("Not found"));

    // The link again: already used.
    browser.go(&session.url).await;
    assert!(browser.title().await.starts_with("Link not valid"));
    assert!(browser.text("main").await.contains("already been used"));
    browser.screenshot("reused-link").await;

    // A link that expired before it was opened.
    let (expired, token) = gw
        .store
        .create_portal_session(
            &gw.tenant_id,
            &NewPortalSession {
                customer_id: c0.clone(),
                return_url: String::new(),
            },
            &crate::harness::fresh_request(),
            Utc::now() - Span::hours(1),
        )
        .await
        .unwrap()
        .fresh()
        .unwrap();
    assert_eq!(expired.customer_id, c0);
    browser.go(&format!("{base}/portal/open/{token}")).await;
    assert!(browser.text("main").await.contains("has expired"));
    browser.screenshot("expired-link").await;
    // A forged signature.
    browser
        .go(&format!("{base}/portal/open/{}.00", expired.id))
        .await;
    assert!(browser.text("main").await.contains("not valid"));

    browser.close().await;
    drop(driver);
    gw.stop().await;
}
