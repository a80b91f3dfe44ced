//! InvoiceService: closing billing periods (one customer, or a tenant-wide run), invoices with
//! their lines, payments, the live invoice stream, a period's export for BSS imports, and the
//! tenant's invoicing settings.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::auth::principal;
use super::convert::{billing_cycle_to_proto, enum_field, instant, timestamp, vendor_to_proto};
use super::cursor_stream::{self, CursorSource, Delivery, Pacing};
use super::invoice_export::ExportFormat;
use super::replies::{guard, reply};
use super::stream_slots::holding;
use super::{Gateway, customer_of, optional_customer_of};
use crate::domain::error::{Error, Violations};
use crate::domain::idempotency::{IdempotencyKey, Written};
use crate::domain::invoice::InvoiceLine;
use crate::domain::invoice_number::parse_prefix;
use crate::domain::invoice_record::{CloseRun, Invoice, InvoiceFilter, NewPayment, Payment};
use crate::domain::invoice_settings::InvoiceSettings;
use crate::domain::money::{Currency, format_amount, format_decimal};
use crate::domain::paging::PageRequest;
use crate::domain::payment::PaymentStatus;
use crate::domain::period_close::Grace;
use crate::domain::rounding::RoundingRule;
use crate::domain::text;
use crate::proto::v1;
use crate::proto::v1::invoice_service_server::InvoiceService;
use crate::store::Store;

pub struct InvoiceApi {
    gw: Gateway,
}

impl InvoiceApi {
    pub fn new(gw: Gateway) -> Self {
        Self { gw }
    }
}

fn status_to_proto(s: PaymentStatus) -> v1::PaymentStatus {
    match s {
        PaymentStatus::Unpaid => v1::PaymentStatus::Unpaid,
        PaymentStatus::PartiallyPaid => v1::PaymentStatus::PartiallyPaid,
        PaymentStatus::Paid => v1::PaymentStatus::Paid,
        PaymentStatus::Credit => v1::PaymentStatus::Credit,
    }
}

fn line_to_proto(l: &InvoiceLine, currency: Currency) -> v1::InvoiceLine {
    v1::InvoiceLine {
        vendor: vendor_to_proto(l.vendor).into(),
        service: l.service.clone(),
        meter: l.meter.clone(),
        unit: l.unit.clone(),
        quantity: format_decimal(l.quantity),
        unrounded_amount: format_amount(l.unrounded_amount, currency),
        amount: format_amount(l.amount, currency),
        currency: currency.code().to_string(),
        adjusts: l.adjusts.as_ref().map(|a| v1::AdjustedPeriod {
            period_start: Some(timestamp(a.start)),
            period_end: Some(timestamp(a.end)),
            invoice_id: a.invoice.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            invoice_number: a
                .invoice
                .as_ref()
                .and_then(|i| i.number.clone())
                .unwrap_or_default(),
        }),
    }
}

fn rounding_to_proto(r: RoundingRule) -> v1::RoundingRule {
    match r {
        RoundingRule::HalfUp => v1::RoundingRule::HalfUp,
        RoundingRule::HalfEven => v1::RoundingRule::HalfEven,
    }
}

pub fn invoice_to_proto(i: &Invoice) -> v1::Invoice {
    let c = i.currency;
    v1::Invoice {
        id: i.id.clone(),
        number: i.number.clone().unwrap_or_default(),
        number_counter: i.number_counter.unwrap_or(0),
        customer_id: i.customer.id.clone(),
        customer_external_ref: i.customer.external_ref.clone(),
        customer_name: i.customer.display_name.clone(),
        currency: c.code().to_string(),
        period_start: Some(timestamp(i.period_start)),
        period_end: Some(timestamp(i.period_end)),
        time_zone: i.time_zone.clone(),
        billing_cycle: billing_cycle_to_proto(i.cycle).into(),
        close_sequence: i.close_sequence,
        rounding: rounding_to_proto(i.rounding).into(),
        lines: i.lines.iter().map(|l| line_to_proto(l, c)).collect(),
        total: format_amount(i.total, c),
        unrounded_total: format_amount(i.unrounded_total, c),
        rounding_difference: format_amount(i.rounding_difference, c),
        paid: format_amount(i.paid, c),
        balance: format_amount(i.balance(), c),
        payment_status: status_to_proto(i.payment_status()).into(),
        finalize_time: Some(timestamp(i.finalized_at)),
    }
}

fn payment_to_proto(p: &Payment) -> v1::Payment {
    let c = p.currency;
    v1::Payment {
        id: p.id.clone(),
        invoice_id: p.invoice_id.clone(),
        amount: format_amount(p.amount, c),
        currency: c.code().to_string(),
        reference: p.reference.clone(),
        paid_after: format_amount(p.paid_after, c),
        balance_after: format_amount(p.balance_after, c),
        record_time: Some(timestamp(p.recorded_at)),
    }
}

fn run_to_proto(r: &CloseRun) -> v1::CloseRunProgress {
    v1::CloseRunProgress {
        run_id: r.id.clone(),
        status: r.status.as_str().to_string(),
        customers_planned: r.customers_planned,
        customers_done: r.customers_done,
        invoices_closed: r.invoices_closed,
        cursor_customer_id: r.cursor_customer_id.clone().unwrap_or_default(),
        last_error: r.last_error.clone().unwrap_or_default(),
        as_of: Some(timestamp(r.as_of)),
    }
}

fn payment_status(field: &str, value: i32) -> Result<Option<PaymentStatus>, Error> {
    Ok(enum_field::<v1::PaymentStatus>(field, value)
        .map_err(|v| Error::InvalidArgument(vec![v]))?
        .and_then(|s| match s {
            v1::PaymentStatus::Unspecified => None,
            v1::PaymentStatus::Unpaid => Some(PaymentStatus::Unpaid),
            v1::PaymentStatus::PartiallyPaid => Some(PaymentStatus::PartiallyPaid),
            v1::PaymentStatus::Paid => Some(PaymentStatus::Paid),
            v1::PaymentStatus::Credit => Some(PaymentStatus::Credit),
        }))
}

/// Progress messages of a run: intermediate ones may be skipped for a slow reader (each carries
/// the whole state), the final one never is.
fn progress_stream(
    gw: Gateway,
    tenant_id: String,
    run_id: String,
) -> impl Stream<Item = Result<v1::CloseRunProgress, Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let result = gw
            .ledger
            .close_run(&tenant_id, &run_id, Utc::now(), |run| {
                let _ = progress_tx.try_send(Ok(run_to_proto(run)));
            })
            .await;
        let last = match result {
            Ok(run) => Ok(run_to_proto(&run)),
            Err(error) => Err(Status::from(error)),
        };
        let _ = tx.send(last).await;
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl InvoiceService for InvoiceApi {
    async fn close_billing_period(
        &self,
        request: Request<v1::CloseBillingPeriodRequest>,
    ) -> Result<Response<v1::Invoice>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, false)).flatten();
        let customer_id =
            v.check_error(customer_of(&principal, "customer_id", &req.customer_id))?;
        let period_start = v
            .check(instant("period_start", req.period_start.as_ref()))
            .flatten();
        v.into_result()?;
        let customer_id = customer_id.ok_or_else(|| Status::internal("validated id missing"))?;
        let key = request_id.map(|id| {
            IdempotencyKey::new(
                id,
                "CloseBillingPeriod",
                &(&customer_id, period_start.map(|p| p.to_rfc3339())),
            )
        });
        let to_response = |closed: &Written<Invoice>| invoice_to_proto(&closed.value);
        let guard = key.map(|key| guard(key, to_response));
        let answer = self
            .gw
            .ledger
            .close_billing_period(
                &principal.tenant_id,
                &customer_id,
                period_start,
                Utc::now(),
                guard.as_ref(),
            )
            .await?;
        reply(answer, to_response)
    }

    type CloseBillingPeriodsStream = BoxStream<'static, Result<v1::CloseRunProgress, Status>>;

    async fn close_billing_periods(
        &self,
        request: Request<v1::CloseBillingPeriodsRequest>,
    ) -> Result<Response<Self::CloseBillingPeriodsStream>, Status> {
        let principal = principal(&request)?;
        let run_id = text::request_id(&request.get_ref().request_id, true)
            .map_err(|v| Error::InvalidArgument(vec![v]))?
            .ok_or_else(|| Status::internal("validated request id missing"))?;
        let stream = progress_stream(self.gw.clone(), principal.tenant_id.clone(), run_id);
        Ok(Response::new(stream.boxed()))
    }

    async fn get_invoice(
        &self,
        request: Request<v1::GetInvoiceRequest>,
    ) -> Result<Response<v1::Invoice>, Status> {
        let principal = principal(&request)?;
        let id = super::convert::required_id("id", &request.get_ref().id)?;
        let invoice = self.gw.store.invoice(&principal.tenant_id, &id).await?;
        // A portal key sees its own customer's invoices only.
        if principal
            .customer_scope()
            .is_some_and(|own| own != invoice.customer.id)
        {
            return Err(Error::not_found("invoice", id).into());
        }
        Ok(Response::new(invoice_to_proto(&invoice)))
    }

    async fn list_invoices(
        &self,
        request: Request<v1::ListInvoicesRequest>,
    ) -> Result<Response<v1::ListInvoicesResponse>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let customer_id = v
            .check_error(optional_customer_of(
                &principal,
                "customer_id",
                &req.customer_id,
            ))?
            .flatten();
        let period_start = v
            .check(instant("period_start", req.period_start.as_ref()))
            .flatten();
        let status = v
            .check_error(payment_status("payment_status", req.payment_status))?
            .flatten();
        let filters = format!(
            "customer={:?}|period={:?}|status={:?}",
            customer_id, period_start, status
        );
        let page = match PageRequest::parse(req.page_size, &req.page_token, &filters) {
            Ok(page) => Some(page),
            Err(violations) => {
                violations
                    .into_iter()
                    .for_each(|f| v.add(f.field, f.description));
                None
            }
        };
        v.into_result()?;
        let page = page.ok_or_else(|| Status::internal("validated page missing"))?;
        let filter = InvoiceFilter {
            customer_id,
            period_start,
            status,
        };
        let page = self
            .gw
            .store
            .list_invoices(&principal.tenant_id, &filter, &page)
            .await?;
        Ok(Response::new(v1::ListInvoicesResponse {
            invoices: page.items.iter().map(invoice_to_proto).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn record_payment(
        &self,
        request: Request<v1::RecordPaymentRequest>,
    ) -> Result<Response<v1::Payment>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let invoice_id =
            v.check_error(super::convert::required_id("invoice_id", &req.invoice_id))?;
        let reference = v.check(text::display_name(
            "reference",
            &req.reference,
            text::NAME_MAX,
        ));
        if req.amount.is_empty() {
            v.add("amount", "is required (an exact decimal, e.g. \"100.00\")");
        }
        v.into_result()?;
        let (Some(request_id), Some(invoice_id), Some(reference)) =
            (request_id, invoice_id, reference)
        else {
            return Err(Status::internal("validated fields missing"));
        };
        let new = NewPayment {
            invoice_id,
            amount: req.amount,
            reference,
        };
        let key = IdempotencyKey::new(request_id, "RecordPayment", &new);
        let answer = self
            .gw
            .ledger
            .record_payment(
                &principal.tenant_id,
                &new,
                Utc::now(),
                &guard(key, payment_to_proto),
            )
            .await?;
        reply(answer, payment_to_proto)
    }

    type StreamInvoicesStream = BoxStream<'static, Result<v1::StreamInvoicesResponse, Status>>;

    async fn stream_invoices(
        &self,
        request: Request<v1::StreamInvoicesRequest>,
    ) -> Result<Response<Self::StreamInvoicesStream>, Status> {
        let principal = principal(&request)?;
        let after = super::charges::cursor(
            "after_number_counter",
            request.get_ref().after_number_counter,
        )
        .map_err(|v| Error::InvalidArgument(vec![v]))?;
        let slot = self.gw.stream_slots.take(&principal.tenant_id)?;
        let source = NumberedInvoices {
            store: self.gw.store.clone(),
            tenant_id: principal.tenant_id.clone(),
            customer_id: principal.customer_scope().map(str::to_string),
        };
        let pacing = Pacing {
            page: STREAM_PAGE,
            poll: STREAM_POLL,
            heartbeat: self.gw.ledger.feed().heartbeat_interval(),
        };
        let stream = cursor_stream::stream(
            source,
            after,
            self.gw.store.written().subscribe(),
            pacing,
            |delivery| v1::StreamInvoicesResponse {
                event: Some(match delivery {
                    Delivery::Item(invoice) => {
                        v1::stream_invoices_response::Event::Invoice(invoice_to_proto(&invoice))
                    }
                    Delivery::Heartbeat(heartbeat) => {
                        v1::stream_invoices_response::Event::HighWaterMark(
                            heartbeat.high_water_mark,
                        )
                    }
                }),
            },
        );
        Ok(Response::new(holding(stream, slot)))
    }

    type ExportInvoicesStream = BoxStream<'static, Result<v1::ExportChunk, Status>>;

    async fn export_invoices(
        &self,
        request: Request<v1::ExportInvoicesRequest>,
    ) -> Result<Response<Self::ExportInvoicesStream>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let period_start = match v.check(instant("period_start", req.period_start.as_ref())) {
            Some(None) => {
                v.add(
                    "period_start",
                    "is required: the start of the period to export, as in Invoice.period_start",
                );
                None
            }
            other => other.flatten(),
        };
        let format = v.check(ExportFormat::parse("format", &req.format));
        v.into_result()?;
        let (Some(period_start), Some(format)) = (period_start, format) else {
            return Err(Status::internal("validated fields missing"));
        };
        let export = Export {
            store: self.gw.store.clone(),
            tenant_id: principal.tenant_id.clone(),
            filter: InvoiceFilter {
                customer_id: principal.customer_scope().map(str::to_string),
                period_start: Some(period_start),
                status: None,
            },
            format,
            token: None,
            buffer: format.header(),
            ready: VecDeque::new(),
            done: false,
        };
        let stream = futures::stream::unfold(export, |mut export| async move {
            let chunk = export.next_chunk().await?;
            Some((chunk, export))
        });
        Ok(Response::new(stream.boxed()))
    }

    async fn get_invoice_settings(
        &self,
        request: Request<v1::GetInvoiceSettingsRequest>,
    ) -> Result<Response<v1::InvoiceSettings>, Status> {
        let principal = principal(&request)?;
        let settings = self.gw.store.invoice_settings(&principal.tenant_id).await?;
        Ok(Response::new(settings_to_proto(&settings)))
    }

    async fn update_invoice_settings(
        &self,
        request: Request<v1::UpdateInvoiceSettingsRequest>,
    ) -> Result<Response<v1::InvoiceSettings>, Status> {
        let principal = principal(&request)?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let request_id = v.check(text::request_id(&req.request_id, true)).flatten();
        let settings = match &req.settings {
            None => {
                v.add("settings", "is required");
                None
            }
            Some(s) => {
                let number_prefix =
                    v.check(parse_prefix("settings.number_prefix", &s.number_prefix));
                let rounding = match enum_field::<v1::RoundingRule>("settings.rounding", s.rounding)
                {
                    Ok(Some(v1::RoundingRule::HalfUp)) => Some(RoundingRule::HalfUp),
                    Ok(Some(v1::RoundingRule::HalfEven)) => Some(RoundingRule::HalfEven),
                    Ok(_) => {
                        v.add("settings.rounding", "is required (HALF_UP or HALF_EVEN)");
                        None
                    }
                    Err(violation) => {
                        v.add(violation.field, violation.description);
                        None
                    }
                };
                let grace = v.check(Grace::days("settings.grace_days", s.grace_days));
                match (number_prefix, rounding, grace) {
                    (Some(number_prefix), Some(rounding), Some(grace)) => Some(InvoiceSettings {
                        number_prefix,
                        rounding,
                        grace,
                    }),
                    _ => None,
                }
            }
        };
        v.into_result()?;
        let (Some(request_id), Some(settings)) = (request_id, settings) else {
            return Err(Status::internal("validated settings missing"));
        };
        let key = IdempotencyKey::new(request_id, "UpdateInvoiceSettings", &settings);
        let answer = self
            .gw
            .store
            .update_invoice_settings(
                &principal.tenant_id,
                &settings,
                &guard(key, settings_to_proto),
            )
            .await?;
        reply(answer, settings_to_proto)
    }
}

fn settings_to_proto(s: &InvoiceSettings) -> v1::InvoiceSettings {
    v1::InvoiceSettings {
        number_prefix: s.number_prefix.clone(),
        rounding: rounding_to_proto(s.rounding).into(),
        grace_days: s.grace.in_days(),
    }
}

/// How many invoices StreamInvoices reads at a time.
const STREAM_PAGE: i64 = 64;
/// The longest a stream waits before reading again when no commit of this process woke it
/// (another replica's closes on PostgreSQL).
const STREAM_POLL: Duration = Duration::from_millis(250);

/// A tenant's numbered invoices (one customer's for a portal key), for [`cursor_stream`].
struct NumberedInvoices {
    store: Arc<Store>,
    tenant_id: String,
    customer_id: Option<String>,
}

#[async_trait::async_trait]
impl CursorSource for NumberedInvoices {
    type Item = Invoice;

    async fn after(
        &mut self,
        after: i64,
        limit: i64,
    ) -> crate::domain::error::Result<Vec<(i64, Invoice)>> {
        let invoices = self
            .store
            .invoices_numbered_after(&self.tenant_id, self.customer_id.as_deref(), after, limit)
            .await?;
        Ok(invoices
            .into_iter()
            .map(|i| (i.number_counter.unwrap_or(after), i))
            .collect())
    }

    async fn high_water_mark(&mut self) -> crate::domain::error::Result<i64> {
        self.store.last_invoice_number(&self.tenant_id).await
    }
}

/// How many invoices an export reads at a time.
const EXPORT_PAGE: i32 = 200;
/// The size of an export chunk (the last one may be smaller).
const EXPORT_CHUNK: usize = 64 * 1024;

/// An export under way: pages of the period's invoices written into fixed-size chunks.
struct Export {
    store: Arc<Store>,
    tenant_id: String,
    filter: InvoiceFilter,
    format: ExportFormat,
    /// The next page's token; None before the first page.
    token: Option<String>,
    buffer: Vec<u8>,
    ready: VecDeque<Vec<u8>>,
    done: bool,
}

impl Export {
    async fn next_chunk(&mut self) -> Option<Result<v1::ExportChunk, Status>> {
        loop {
            if let Some(data) = self.ready.pop_front() {
                return Some(Ok(v1::ExportChunk { data }));
            }
            if self.done {
                if self.buffer.is_empty() {
                    return None;
                }
                let data = std::mem::take(&mut self.buffer);
                return Some(Ok(v1::ExportChunk { data }));
            }
            if let Err(error) = self.read_page().await {
                self.done = true;
                self.buffer.clear();
                return Some(Err(error.into()));
            }
        }
    }

    async fn read_page(&mut self) -> crate::domain::error::Result<()> {
        let page = PageRequest::parse(EXPORT_PAGE, self.token.as_deref().unwrap_or(""), "export")
            .map_err(|_| Error::Internal("export page token".into()))?;
        let page = self
            .store
            .list_invoices(&self.tenant_id, &self.filter, &page)
            .await?;
        for invoice in &page.items {
            self.format
                .write(&mut self.buffer, &invoice_to_proto(invoice));
            while self.buffer.len() >= EXPORT_CHUNK {
                let rest = self.buffer.split_off(EXPORT_CHUNK);
                self.ready
                    .push_back(std::mem::replace(&mut self.buffer, rest));
            }
        }
        match page.next_page_token {
            Some(token) => self.token = Some(token),
            None => self.done = true,
        }
        Ok(())
    }
}
