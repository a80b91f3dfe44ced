//! The enterprise cost portal: server-rendered pages on the gateway's own port (axum routes
//! merged into tonic's router), for one customer per browser session.
//!
//! `CreatePortalSession` (PortalService) hands the BSS a single-use link,
//! `/portal/open/<session id>.<signature>`; opening it sets an HttpOnly session cookie and
//! redirects to the customer's pages under `/portal/c/<customer id>/`. Every page checks the
//! cookie and that the customer in the URL is the session's: another id answers "not found",
//! whatever the URL says. No script runs (the Content-Security-Policy forbids it): charts are
//! inline SVG, the overview refreshes itself with a meta refresh.
mod chart;
mod csv;
mod pages;

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;

use self::pages::{
    BreakdownPage, Colours, Frame, InvoicePage, InvoiceSummary, InvoicesPage, MessagePage,
    OverviewPage,
};
use super::Gateway;
use crate::domain::error::Error;
use crate::domain::portal::{LinkRefusal, PortalSession, SESSION_TTL};
use crate::domain::spend::{Grouping, parse_range};
use crate::domain::tenant::Branding;

/// The session cookie's name.
pub const COOKIE: &str = "mspgw_portal";

/// The portal's routes (no fallback: tonic's router keeps its own for gRPC).
pub fn router(gw: Gateway) -> Router {
    Router::new()
        .route("/portal/open/{token}", get(open))
        .route("/portal/c/{customer}", get(overview))
        .route("/portal/c/{customer}/", get(overview))
        .route("/portal/c/{customer}/breakdown", get(breakdown))
        .route("/portal/c/{customer}/breakdown.csv", get(breakdown_csv))
        .route("/portal/c/{customer}/invoices", get(invoices))
        .route("/portal/c/{customer}/invoices/{invoice}", get(invoice))
        .route("/portal", get(unknown_page))
        .route("/portal/{*rest}", get(unknown_page))
        .with_state(gw)
}

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

/// No scripts, no framing, no caching of a customer's figures, no referrer (links carry ids).
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn render(status: StatusCode, page: impl Template) -> Response {
    match page.render() {
        Ok(body) => html(status, body),
        Err(error) => {
            tracing::error!(%error, "portal page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown.",
            )
                .into_response()
        }
    }
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(
        status,
        MessagePage {
            frame: Frame {
                brand: "Cost portal".into(),
                title: title.into(),
                base: String::new(),
                page: "",
                return_url: String::new(),
                colours: Colours::of(&Branding::default()),
            },
            message: text.into(),
        },
    )
}

fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page in this portal session.",
    )
}

async fn unknown_page() -> Response {
    not_found()
}

/// A failure of the gateway itself, shown without details (they are logged).
fn failure(error: Error) -> Response {
    match error {
        Error::NotFound { .. } => not_found(),
        error => {
            tracing::error!(%error, "portal page failed");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The portal cannot show this page right now. Try again in a moment.",
            )
        }
    }
}

async fn open(State(gw): State<Gateway>, Path(token): Path<String>) -> Response {
    let opened = match gw.store.open_portal_link(&token, Utc::now()).await {
        Ok(opened) => opened,
        Err(error) => return failure(error),
    };
    let (session, cookie) = match opened {
        Ok(opened) => opened,
        Err(refusal) => {
            let status = match refusal {
                LinkRefusal::Invalid => StatusCode::NOT_FOUND,
                LinkRefusal::Expired | LinkRefusal::AlreadyUsed => StatusCode::GONE,
            };
            return message(status, "Link not valid", refusal.explanation());
        }
    };
    let secure = if gw.portal.secure { "; Secure" } else { "" };
    let set_cookie = format!(
        "{COOKIE}={}; Path=/portal; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        cookie.value,
        SESSION_TTL.num_seconds()
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    secure_headers(headers);
    let location = format!("/portal/c/{}/", session.customer_id);
    match (
        HeaderValue::from_str(&set_cookie),
        HeaderValue::from_str(&location),
    ) {
        (Ok(cookie), Ok(location)) => {
            headers.insert(header::SET_COOKIE, cookie);
            headers.insert(header::LOCATION, location);
            response
        }
        _ => failure(Error::Internal(
            "portal cookie or location not a header".into(),
        )),
    }
}

/// The session of the request's cookie, if it is live and for `customer`; otherwise the page
/// to answer with.
async fn session(
    gw: &Gateway,
    headers: &HeaderMap,
    customer: &str,
) -> Result<PortalSession, Response> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='));
    let ended = || {
        message(
            StatusCode::UNAUTHORIZED,
            "Session ended",
            "Your portal session has ended or was never started.",
        )
    };
    let Some(cookie) = cookie else {
        return Err(ended());
    };
    match gw.store.portal_session_for_cookie(cookie, Utc::now()).await {
        Err(error) => Err(failure(error)),
        Ok(None) => Err(ended()),
        // Another customer's id in the URL is indistinguishable from a missing page.
        Ok(Some(s)) if s.customer_id != customer => Err(not_found()),
        Ok(Some(s)) => Ok(s),
    }
}

/// The session (see [`session`]) and what its pages share.
async fn framed(
    gw: &Gateway,
    headers: &HeaderMap,
    customer: &str,
    title: &str,
    page: &'static str,
) -> Result<(PortalSession, Frame), Response> {
    let session = session(gw, headers, customer).await?;
    let tenant = gw.store.tenant(&session.tenant_id).await.map_err(failure)?;
    let frame = Frame {
        brand: tenant.name,
        title: title.into(),
        base: format!("/portal/c/{}", session.customer_id),
        page,
        return_url: session.return_url.clone(),
        colours: Colours::of(&tenant.branding),
    };
    Ok((session, frame))
}

async fn overview(
    State(gw): State<Gateway>,
    Path(customer): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (session, frame) = framed(&gw, &headers, &customer, "Overview", "overview").await?;
    let o = gw
        .ledger
        .spend_overview(&session.tenant_id, &session.customer_id, Utc::now())
        .await
        .map_err(failure)?;
    Ok(render(StatusCode::OK, OverviewPage::new(frame, &o)))
}

/// Invoices a page of the invoice list shows.
const INVOICES_PER_PAGE: i64 = 24;

/// The customer's invoices, newest first, a page at a time (`?before=<invoice id>`: the page
/// after that invoice).
async fn invoices(
    State(gw): State<Gateway>,
    Path(customer): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (session, frame) = framed(&gw, &headers, &customer, "Invoices", "invoices").await?;
    let before = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == "before")
        .map(|(_, value)| value.into_owned())
        .filter(|v| !v.is_empty());
    let mut found = gw
        .store
        .latest_invoices(
            &session.tenant_id,
            &session.customer_id,
            before.as_deref(),
            INVOICES_PER_PAGE + 1,
        )
        .await
        .map_err(failure)?;
    let more = found.len() as i64 > INVOICES_PER_PAGE;
    found.truncate(INVOICES_PER_PAGE as usize);
    let older = match found.last() {
        Some(last) if more => form_urlencoded::Serializer::new(String::new())
            .append_pair("before", &last.id)
            .finish(),
        _ => String::new(),
    };
    let page = InvoicesPage {
        frame,
        invoices: found.iter().map(InvoiceSummary::of).collect(),
        older,
    };
    Ok(render(StatusCode::OK, page))
}

/// One invoice with its lines: the session's customer's only (any other id, this tenant's or
/// not, is "not found").
async fn invoice(
    State(gw): State<Gateway>,
    Path((customer, invoice_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (session, mut frame) = framed(&gw, &headers, &customer, "Invoice", "invoices").await?;
    let invoice = gw
        .store
        .invoice(&session.tenant_id, &invoice_id)
        .await
        .map_err(failure)?;
    if invoice.customer.id != session.customer_id {
        return Err(not_found());
    }
    if let Some(number) = &invoice.number {
        frame.title = format!("Invoice {number}");
    }
    Ok(render(StatusCode::OK, InvoicePage::new(frame, &invoice)))
}

/// The breakdown's query: `start`, `end` (dates; both or neither) and `by` (vendor, service or
/// meter).
struct BreakdownQuery {
    start: String,
    end: String,
    by: String,
}

impl BreakdownQuery {
    fn parse(query: Option<&str>) -> Self {
        let mut q = BreakdownQuery {
            start: String::new(),
            end: String::new(),
            by: "service".into(),
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "start" => q.start = value.into_owned(),
                "end" => q.end = value.into_owned(),
                "by" => q.by = value.into_owned(),
                _ => {}
            }
        }
        q
    }

    fn grouping(&self) -> Result<Grouping, String> {
        let (service, meter) = match self.by.as_str() {
            "vendor" => (false, false),
            "service" => (true, false),
            "meter" => (true, true),
            other => {
                return Err(format!(
                    "{other:?} is not a breakdown (vendor, service or meter)"
                ));
            }
        };
        Ok(Grouping {
            vendor: true,
            service,
            meter,
            day: false,
        })
    }

    /// The query string for these choices, with the dates `start` and `end`.
    fn encode(&self, start: &str, end: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("start", start)
            .append_pair("end", end)
            .append_pair("by", &self.by)
            .finish()
    }
}

/// The summary a breakdown shows, or the message explaining what is wrong with the query.
async fn breakdown_summary(
    gw: &Gateway,
    session: &PortalSession,
    q: &BreakdownQuery,
) -> Result<Result<crate::domain::spend::SpendSummary, String>, Response> {
    let grouping = match q.grouping() {
        Ok(g) => g,
        Err(e) => return Ok(Err(e)),
    };
    let range = match parse_range("start", &q.start, "end", &q.end) {
        Ok(r) => r,
        Err(violations) => {
            let text = violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("; ");
            return Ok(Err(text));
        }
    };
    gw.ledger
        .spend_summary(
            &session.tenant_id,
            &session.customer_id,
            range,
            grouping,
            Utc::now(),
        )
        .await
        .map(Ok)
        .map_err(failure)
}

async fn breakdown(
    State(gw): State<Gateway>,
    Path(customer): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let (session, frame) = framed(&gw, &headers, &customer, "Breakdown", "breakdown").await?;
    let q = BreakdownQuery::parse(query.as_deref());
    let (status, bad, fallback) = match breakdown_summary(&gw, &session, &q).await? {
        Ok(summary) => (StatusCode::OK, String::new(), summary),
        // Show the period to date beside the explanation.
        Err(problem) => {
            let shown = BreakdownQuery {
                start: String::new(),
                end: String::new(),
                by: "service".into(),
            };
            match breakdown_summary(&gw, &session, &shown).await? {
                Ok(summary) => (StatusCode::BAD_REQUEST, problem, summary),
                Err(problem) => return Err(failure(Error::Internal(problem))),
            }
        }
    };
    let by = if bad.is_empty() {
        q.by.as_str()
    } else {
        "service"
    };
    let shown = BreakdownQuery {
        by: by.to_string(),
        ..q
    };
    let query = shown.encode(
        &fallback.range.first.format("%Y-%m-%d").to_string(),
        &fallback.range.end.format("%Y-%m-%d").to_string(),
    );
    let mut page = BreakdownPage::new(frame, by, query, &fallback);
    page.error = bad;
    Ok(render(status, page))
}

async fn breakdown_csv(
    State(gw): State<Gateway>,
    Path(customer): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let session = session(&gw, &headers, &customer).await?;
    let q = BreakdownQuery::parse(query.as_deref());
    let summary = breakdown_summary(&gw, &session, &q)
        .await?
        .map_err(|problem| message(StatusCode::BAD_REQUEST, "Bad request", &problem))?;
    let filename = format!(
        "spend-{}-{}-{}.csv",
        summary.range.first.format("%Y-%m-%d"),
        summary.range.end.format("%Y-%m-%d"),
        q.by
    );
    let mut response = (StatusCode::OK, csv::spend_csv(&summary)).into_response();
    let headers = response.headers_mut();
    secure_headers(headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}
