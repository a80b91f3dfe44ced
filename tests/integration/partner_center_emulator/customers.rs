//! Partner Center's customers and subscriptions, as service control uses them:
//! - `POST /v1/customers` (idempotent on `MS-RequestId`; a taken domain is a 409);
//! - `GET /v1/customers/{tenant}/subscriptions` and `…/subscriptions/{id}` (with an etag, in
//!   the `ETag` header and in `attributes.etag`);
//! - `PATCH /v1/customers/{tenant}/subscriptions/{id}` with the whole resource and `If-Match`
//!   (412 on a stale etag), status `active` / `suspended` / `deleted`; a subscription marked so
//!   refuses deletion (past its cancellation window), and a deleted one cannot come back.
//! - New Commerce orders: `GET /v1/customers/{tenant}/products/{product}/skus/{sku}/
//!   availabilities`, `POST /v1/customers/{tenant}/carts` (one line item: `catalogItemId`
//!   `product:sku:availability`, `quantity`, `termDuration`, `billingCycle`), `POST
//!   …/carts/{cart}/checkout` (an order whose line item names the new subscription) and `GET
//!   …/orders/{order}`; both POSTs are idempotent on `MS-RequestId` (a repeat gets the first
//!   answer, nothing is bought twice); a quantity PATCH of a subscription under `If-Match`,
//!   and what it does at renewal (`scheduledNextTermInstructions`, validated: the product with
//!   its term and billing cycle, a quantity, auto-renewal on; `autoRenewEnabled`); a quantity
//!   changed now deletes the scheduled instructions, as Partner Center does.
//!   Refusals with Partner Center's error body (`code`, `description`): a SKU scripted
//!   unavailable, a quantity over the scripted limit (cart or PATCH).
//!
//! Tokens must carry Partner Center's scope. Faults through [`CustomerScript`]: 429 with
//! `Retry-After`, 503, and etags that go stale just before a PATCH (another writer).
use std::collections::{BTreeMap, HashMap};

use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Answer, Emulator, State, json};

pub const PARTNER_CENTER_SCOPE: &str = "https://api.partnercenter.microsoft.com/.default";

/// Faults for the next `/v1/customers…` requests, each counted down as it is served.
#[derive(Debug, Clone, Default)]
pub struct CustomerScript {
    pub throttle: u32,
    pub throttle_retry_after: Option<u64>,
    pub unavailable: u32,
    /// The next N PATCHes find the subscription changed by someone else (its etag moves).
    pub stale_etags: u32,
    /// `product:sku` keys a cart refuses: not available in the customer's market.
    pub unavailable_skus: Vec<String>,
    /// The most seats a cart line or a PATCH may hold.
    pub max_quantity: Option<u64>,
    /// The next N checkouts are carried out (or replayed) and their answers lost: the
    /// connection closes without one.
    pub lose_checkout_answers: u32,
}

/// Marks an answer to be lost (see [`CustomerScript::lose_checkout_answers`]).
pub const LOSE_ANSWER: &str = "x-emulator-lose-answer";

/// The emulator's refusal codes (Partner Center's error body shape).
pub const SKU_UNAVAILABLE: u32 = 800002;
pub const QUANTITY_LIMIT: u32 = 800031;
/// Next-term instructions naming no product, a term or billing cycle Partner Center does not
/// sell together, or no seats; or set on a subscription that does not renew.
pub const INVALID_NEXT_TERM: u32 = 800040;
/// The availability the emulator sells every SKU under.
pub const AVAILABILITY: &str = "CFQ7TTC0K5DL";

#[derive(Debug, Clone, Default)]
pub struct CustomersSeen {
    pub creates: u32,
    pub create_bodies: Vec<Value>,
    pub reads: u32,
    pub patches: u32,
    /// The `status` of every PATCH body, in order.
    pub patched_statuses: Vec<String>,
    pub stale_etag_answers: u32,
    /// Cart bodies, in order (repeats included).
    pub carts: Vec<Value>,
    /// The `MS-RequestId` of every cart and checkout request.
    pub order_request_ids: Vec<String>,
    pub checkouts: u32,
    /// Orders actually placed (a repeated request id places none).
    pub orders_placed: u32,
    pub availability_reads: u32,
    /// (subscription, quantity, If-Match) of every PATCH that asked for a new quantity.
    pub quantity_patches: Vec<(String, u64, String)>,
    /// (subscription, instructions) of every PATCH that changed `scheduledNextTermInstructions`
    /// (null: withdrawn), accepted or not.
    pub next_term_patches: Vec<(String, Value)>,
    /// (subscription, autoRenewEnabled) of every PATCH that changed it.
    pub auto_renew_patches: Vec<(String, bool)>,
    pub throttled: u32,
    pub unavailable: u32,
    pub unauthorized: u32,
}

#[derive(Debug, Clone)]
struct Subscription {
    tenant: String,
    offer_id: String,
    offer_name: String,
    status: String,
    version: u32,
    refuses_deletion: bool,
    quantity: u64,
    term: String,
    billing_cycle: String,
    auto_renew: bool,
    /// `scheduledNextTermInstructions` (null: none).
    next_term: Value,
}

impl Subscription {
    fn new(tenant: &str, offer_id: &str, offer_name: &str, status: &str) -> Self {
        Subscription {
            tenant: tenant.into(),
            offer_id: offer_id.into(),
            offer_name: offer_name.into(),
            status: status.into(),
            version: 1,
            refuses_deletion: false,
            quantity: 10,
            term: "P1Y".into(),
            billing_cycle: "monthly".into(),
            auto_renew: true,
            next_term: Value::Null,
        }
    }
}

impl Subscription {
    fn etag(&self, id: &str) -> String {
        format!("\"{id}-v{}\"", self.version)
    }

    fn resource(&self, id: &str) -> Value {
        json!({
            "id": id,
            "offerId": self.offer_id,
            "offerName": self.offer_name,
            "friendlyName": self.offer_name,
            "quantity": self.quantity,
            "unitType": "Licenses",
            "status": self.status,
            "autoRenewEnabled": self.auto_renew,
            "scheduledNextTermInstructions": self.next_term,
            "termDuration": self.term,
            "billingCycle": self.billing_cycle,
            "attributes": { "etag": self.etag(id), "objectType": "Subscription" },
        })
    }
}

#[derive(Default)]
pub(super) struct Book {
    pub(super) tokens: Vec<String>,
    /// Tenant id by domain.
    customers: BTreeMap<String, String>,
    /// The first answer per MS-RequestId, replayed to a repeat.
    requests: HashMap<String, Value>,
    subscriptions: BTreeMap<String, Subscription>,
    /// Carts by id: the customer tenant, the cart, and the order its checkout placed.
    carts: HashMap<String, (String, Value, Option<Value>)>,
    /// Orders by id: the customer tenant and the order.
    orders: HashMap<String, (String, Value)>,
    script: CustomerScript,
    seen: CustomersSeen,
}

impl Emulator {
    /// Adds subscriptions (id, offer name, status) to a customer tenant, creating it if needed.
    pub fn add_subscriptions(&self, tenant: &str, subscriptions: &[(&str, &str, &str)]) {
        let book = &mut self.state.lock().unwrap().customers;
        book.customers
            .entry(format!("{tenant}.onmicrosoft.com"))
            .or_insert_with(|| tenant.to_string());
        for (id, offer, status) in subscriptions {
            book.subscriptions.insert(
                id.to_string(),
                Subscription::new(tenant, "CFQ7TTC0LH18:0001", offer, status),
            );
        }
    }

    /// The subscription answers deletion with a 400: past its cancellation window.
    pub fn refuse_deletion(&self, subscription: &str) {
        let book = &mut self.state.lock().unwrap().customers;
        book.subscriptions
            .get_mut(subscription)
            .expect("a known subscription")
            .refuses_deletion = true;
    }

    /// (offer id, quantity, term, billing cycle, status) of a subscription.
    pub fn subscription(&self, subscription: &str) -> (String, u64, String, String, String) {
        let book = &self.state.lock().unwrap().customers;
        let s = &book.subscriptions[subscription];
        (
            s.offer_id.clone(),
            s.quantity,
            s.term.clone(),
            s.billing_cycle.clone(),
            s.status.clone(),
        )
    }

    /// (autoRenewEnabled, scheduledNextTermInstructions) of a subscription.
    pub fn renewal(&self, subscription: &str) -> (bool, Value) {
        let book = &self.state.lock().unwrap().customers;
        let s = &book.subscriptions[subscription];
        (s.auto_renew, s.next_term.clone())
    }

    pub fn subscription_status(&self, subscription: &str) -> String {
        let book = &self.state.lock().unwrap().customers;
        book.subscriptions[subscription].status.clone()
    }

    /// Customer tenants by domain.
    pub fn customers(&self) -> BTreeMap<String, String> {
        self.state.lock().unwrap().customers.customers.clone()
    }

    pub fn customers_script(&self, change: impl FnOnce(&mut CustomerScript)) {
        change(&mut self.state.lock().unwrap().customers.script);
    }

    pub fn customers_seen(&self) -> CustomersSeen {
        self.state.lock().unwrap().customers.seen.clone()
    }
}

/// Partner Center's error body.
fn error(status: StatusCode, code: u32, description: &str) -> Answer {
    json(
        status,
        &[],
        json!({"code": code, "description": description, "isRetryable": false}),
    )
}

pub(super) fn handle(
    state: &mut State,
    method: &Method,
    rest: &[&str],
    authorization: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let book = &mut state.customers;
    let authorized = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| book.tokens.iter().any(|issued| issued == t));
    if !authorized {
        book.seen.unauthorized += 1;
        return error(
            StatusCode::UNAUTHORIZED,
            900,
            "Unauthorized: invalid token or scope.",
        );
    }
    if book.script.throttle > 0 {
        book.script.throttle -= 1;
        book.seen.throttled += 1;
        let retry_after: Vec<(&str, String)> = book
            .script
            .throttle_retry_after
            .map(|s| vec![("retry-after", s.to_string())])
            .unwrap_or_default();
        return json(
            StatusCode::TOO_MANY_REQUESTS,
            &retry_after,
            json!({"code": 429, "description": "Rate limit is exceeded."}),
        );
    }
    if book.script.unavailable > 0 {
        book.script.unavailable -= 1;
        book.seen.unavailable += 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, 503, "Service unavailable.");
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body: Value = serde_json::from_slice(body).unwrap_or_default();
    match (method, rest) {
        (&Method::POST, []) => create_customer(book, header("ms-requestid"), body),
        (&Method::GET, [tenant, "subscriptions"]) => list(book, tenant),
        (&Method::GET, [tenant, "subscriptions", id]) => read(book, tenant, id),
        (&Method::PATCH, [tenant, "subscriptions", id]) => {
            patch(book, tenant, id, header("if-match"), body)
        }
        (&Method::GET, [tenant, "products", product, "skus", sku, "availabilities"]) => {
            availabilities(book, tenant, product, sku)
        }
        (&Method::POST, [tenant, "carts"]) => {
            create_cart(book, tenant, header("ms-requestid"), body)
        }
        (&Method::POST, [tenant, "carts", cart, "checkout"]) => {
            let mut answer = checkout(book, tenant, cart, header("ms-requestid"));
            if book.script.lose_checkout_answers > 0 {
                book.script.lose_checkout_answers -= 1;
                answer
                    .headers_mut()
                    .insert(LOSE_ANSWER, hyper::header::HeaderValue::from_static("1"));
            }
            answer
        }
        (&Method::GET, [tenant, "orders", order]) => match book.orders.get(*order) {
            Some((owner, order)) if owner == tenant => json(StatusCode::OK, &[], order.clone()),
            _ => error(StatusCode::NOT_FOUND, 800, "Order not found."),
        },
        _ => error(StatusCode::NOT_FOUND, 404, "No such resource."),
    }
}

fn create_customer(book: &mut Book, request_id: Option<String>, body: Value) -> Answer {
    book.seen.creates += 1;
    book.seen.create_bodies.push(body.clone());
    let Some(request_id) = request_id.filter(|r| uuid::Uuid::try_parse(r).is_ok()) else {
        return error(StatusCode::BAD_REQUEST, 400, "MS-RequestId must be a GUID.");
    };
    if let Some(first) = book.requests.get(&request_id) {
        return json(StatusCode::CREATED, &[], first.clone());
    }
    let domain = body
        .pointer("/CompanyProfile/Domain")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let address = body
        .pointer("/BillingProfile/DefaultAddress")
        .cloned()
        .unwrap_or_default();
    let complete = domain.ends_with(".onmicrosoft.com")
        && ["FirstName", "LastName", "AddressLine1", "City", "Country"]
            .iter()
            .all(|f| address[f].as_str().is_some_and(|v| !v.is_empty()))
        && body.pointer("/BillingProfile/Email").is_some();
    if !complete {
        return error(
            StatusCode::BAD_REQUEST,
            60041,
            "The billing profile is incomplete.",
        );
    }
    if book.customers.contains_key(&domain) {
        return error(
            StatusCode::CONFLICT,
            60034,
            &format!("The domain {domain} is already in use."),
        );
    }
    let tenant = uuid::Uuid::new_v4().to_string();
    book.customers.insert(domain.clone(), tenant.clone());
    let created = json!({
        "id": tenant,
        "companyProfile": {
            "tenantId": tenant,
            "domain": domain,
            "companyName": body.pointer("/BillingProfile/CompanyName"),
        },
        "billingProfile": body["BillingProfile"],
        "attributes": { "objectType": "Customer" },
    });
    book.requests.insert(request_id, created.clone());
    json(StatusCode::CREATED, &[], created)
}

fn known_customer(book: &Book, tenant: &str) -> bool {
    book.customers.values().any(|t| t == tenant)
}

fn list(book: &mut Book, tenant: &str) -> Answer {
    if !known_customer(book, tenant) {
        return error(StatusCode::NOT_FOUND, 600, "Customer not found.");
    }
    let items: Vec<Value> = book
        .subscriptions
        .iter()
        .filter(|(_, s)| s.tenant == tenant)
        .map(|(id, s)| s.resource(id))
        .collect();
    json(
        StatusCode::OK,
        &[],
        json!({"totalCount": items.len(), "items": items, "attributes": {"objectType": "Collection"}}),
    )
}

fn read(book: &mut Book, tenant: &str, id: &str) -> Answer {
    book.seen.reads += 1;
    match book.subscriptions.get(id).filter(|s| s.tenant == tenant) {
        Some(s) => json(StatusCode::OK, &[("etag", s.etag(id))], s.resource(id)),
        None => error(StatusCode::NOT_FOUND, 800, "Subscription not found."),
    }
}

fn patch(book: &mut Book, tenant: &str, id: &str, if_match: Option<String>, body: Value) -> Answer {
    book.seen.patches += 1;
    let wanted = body["status"].as_str().unwrap_or_default().to_string();
    book.seen.patched_statuses.push(wanted.clone());
    let Some(subscription) = book
        .subscriptions
        .get_mut(id)
        .filter(|s| s.tenant == tenant)
    else {
        return error(StatusCode::NOT_FOUND, 800, "Subscription not found.");
    };
    let Some(if_match) = if_match else {
        return error(StatusCode::BAD_REQUEST, 400, "If-Match is required.");
    };
    if book.script.stale_etags > 0 {
        book.script.stale_etags -= 1;
        subscription.version += 1;
    }
    if if_match != subscription.etag(id) {
        book.seen.stale_etag_answers += 1;
        return error(
            StatusCode::PRECONDITION_FAILED,
            412,
            "The subscription was modified; read it again.",
        );
    }
    // The whole resource, as Partner Center wants it.
    if body["id"] != json!(id) || body["offerId"].as_str().is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            400,
            "Send the whole subscription resource.",
        );
    }
    match (subscription.status.as_str(), wanted.as_str()) {
        ("deleted", _) => {
            return error(
                StatusCode::BAD_REQUEST,
                800,
                "A deleted subscription cannot be changed.",
            );
        }
        (_, "deleted") if subscription.refuses_deletion => {
            return error(
                StatusCode::BAD_REQUEST,
                80036,
                "Cancellation is not allowed: the subscription is past its 168-hour cancellation \
                 window.",
            );
        }
        (_, "active" | "suspended" | "deleted") => {}
        _ => return error(StatusCode::BAD_REQUEST, 400, "Unknown status."),
    }
    let quantity = body["quantity"].as_u64().unwrap_or(subscription.quantity);
    let auto_renew = body["autoRenewEnabled"].as_bool().unwrap_or(true);
    let mut next_term = body
        .get("scheduledNextTermInstructions")
        .cloned()
        .unwrap_or(Value::Null);
    if quantity != subscription.quantity {
        book.seen
            .quantity_patches
            .push((id.to_string(), quantity, if_match.clone()));
        if let Some(refusal) = over_limit(&book.script, quantity) {
            return refusal;
        }
        // A change made now deletes every change scheduled for the renewal.
        next_term = Value::Null;
    } else if next_term != subscription.next_term {
        book.seen
            .next_term_patches
            .push((id.to_string(), next_term.clone()));
        if let Some(refusal) = invalid_next_term(&next_term, auto_renew) {
            return refusal;
        }
        if let Some(quantity) = next_term["quantity"].as_u64()
            && let Some(refusal) = over_limit(&book.script, quantity)
        {
            return refusal;
        }
    }
    if auto_renew != subscription.auto_renew {
        book.seen
            .auto_renew_patches
            .push((id.to_string(), auto_renew));
    }
    subscription.quantity = quantity;
    subscription.next_term = next_term;
    subscription.auto_renew = auto_renew;
    subscription.status = wanted;
    subscription.version += 1;
    json(
        StatusCode::OK,
        &[("etag", subscription.etag(id))],
        subscription.resource(id),
    )
}

/// Next-term instructions as Partner Center documents them: the product (productId, skuId,
/// availabilityId, with the termDuration and billingCycle it renews as, sold together: monthly
/// for any term, annual for P1Y and P3Y, triennial for P3Y) and a quantity, on a subscription
/// that renews (auto-renewal on). Null withdraws them.
fn invalid_next_term(next: &Value, auto_renew: bool) -> Option<Answer> {
    if next.is_null() {
        return None;
    }
    let product = &next["product"];
    let named = |key: &str| product[key].as_str().is_some_and(|id| !id.is_empty());
    let refuse = |what: &str| {
        Some(error(
            StatusCode::BAD_REQUEST,
            INVALID_NEXT_TERM,
            &format!("Invalid scheduledNextTermInstructions: {what}."),
        ))
    };
    if !auto_renew {
        return refuse("changes are scheduled only with autoRenewEnabled");
    }
    if !(named("productId") && named("skuId") && named("availabilityId")) {
        return refuse("product needs a productId, a skuId and an availabilityId");
    }
    if next["quantity"].as_u64().unwrap_or(0) == 0 {
        return refuse("quantity must be at least 1");
    }
    let term = product["termDuration"].as_str().unwrap_or_default();
    let cycle = product["billingCycle"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match (term, cycle.as_str()) {
        ("P1M" | "P1Y" | "P3Y", "monthly") | ("P1Y" | "P3Y", "annual") | ("P3Y", "triennial") => {
            None
        }
        _ => refuse(&format!(
            "product.termDuration {term:?} is not sold with product.billingCycle {cycle:?}"
        )),
    }
}

fn over_limit(script: &CustomerScript, quantity: u64) -> Option<Answer> {
    let limit = script.max_quantity.filter(|limit| quantity > *limit)?;
    Some(error(
        StatusCode::BAD_REQUEST,
        QUANTITY_LIMIT,
        &format!("The quantity {quantity} exceeds the limit of {limit} licences for this offer."),
    ))
}

fn availabilities(book: &mut Book, tenant: &str, product: &str, sku: &str) -> Answer {
    book.seen.availability_reads += 1;
    if !known_customer(book, tenant) {
        return error(StatusCode::NOT_FOUND, 600, "Customer not found.");
    }
    let terms: Vec<Value> = ["P1M", "P1Y", "P3Y"]
        .iter()
        .map(|d| json!({"duration": d, "description": d}))
        .collect();
    let item = json!({
        "id": AVAILABILITY,
        "productId": product,
        "skuId": sku,
        "catalogItemId": format!("{product}:{sku}:{AVAILABILITY}"),
        "segment": "commercial",
        "isPurchasable": true,
        "terms": terms,
    });
    json(
        StatusCode::OK,
        &[],
        json!({"totalCount": 1, "items": [item], "attributes": {"objectType": "Collection"}}),
    )
}

/// The first answer to a repeated MS-RequestId, or the refusal of a missing one; None for a new
/// request.
fn replayed(book: &mut Book, request_id: &Option<String>) -> Option<Answer> {
    let Some(request_id) = request_id
        .as_ref()
        .filter(|r| uuid::Uuid::try_parse(r).is_ok())
    else {
        return Some(error(
            StatusCode::BAD_REQUEST,
            400,
            "MS-RequestId must be a GUID.",
        ));
    };
    book.seen.order_request_ids.push(request_id.clone());
    book.requests
        .get(request_id)
        .map(|first| json(StatusCode::CREATED, &[], first.clone()))
}

fn create_cart(book: &mut Book, tenant: &str, request_id: Option<String>, body: Value) -> Answer {
    book.seen.carts.push(body.clone());
    if let Some(answer) = replayed(book, &request_id) {
        return answer;
    }
    if !known_customer(book, tenant) {
        return error(StatusCode::NOT_FOUND, 600, "Customer not found.");
    }
    let line = &body["lineItems"][0];
    let catalog_item = line["catalogItemId"].as_str().unwrap_or_default();
    let parts: Vec<&str> = catalog_item.split(':').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            400,
            "catalogItemId must be product:sku:availability.",
        );
    }
    let sku = format!("{}:{}", parts[0], parts[1]);
    if book.script.unavailable_skus.contains(&sku) {
        return error(
            StatusCode::BAD_REQUEST,
            SKU_UNAVAILABLE,
            &format!("The SKU {sku} is not available for purchase in the customer's market."),
        );
    }
    let quantity = line["quantity"].as_u64().unwrap_or(0);
    if quantity == 0
        || line["termDuration"].as_str().is_none()
        || line["billingCycle"].as_str().is_none()
    {
        return error(
            StatusCode::BAD_REQUEST,
            400,
            "A line item needs a quantity, a termDuration and a billingCycle.",
        );
    }
    if let Some(refusal) = over_limit(&book.script, quantity) {
        return refusal;
    }
    let id = uuid::Uuid::new_v4().to_string();
    let cart = json!({
        "id": id,
        "lineItems": body["lineItems"],
        "status": "Active",
        "attributes": {"objectType": "Cart"},
    });
    book.carts
        .insert(id, (tenant.to_string(), cart.clone(), None));
    book.requests
        .insert(request_id.unwrap_or_default(), cart.clone());
    json(StatusCode::CREATED, &[], cart)
}

fn checkout(book: &mut Book, tenant: &str, cart_id: &str, request_id: Option<String>) -> Answer {
    book.seen.checkouts += 1;
    if let Some(answer) = replayed(book, &request_id) {
        return answer;
    }
    let Some((owner, cart, placed)) = book.carts.get(cart_id).cloned() else {
        return error(StatusCode::NOT_FOUND, 800, "Cart not found.");
    };
    if owner != tenant {
        return error(StatusCode::NOT_FOUND, 800, "Cart not found.");
    }
    if placed.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            800,
            "The cart was already checked out.",
        );
    }
    let line = &cart["lineItems"][0];
    let offer_id = line["catalogItemId"].as_str().unwrap_or_default();
    let subscription_id = uuid::Uuid::new_v4().to_string();
    let mut subscription = Subscription::new(tenant, offer_id, offer_id, "active");
    subscription.quantity = line["quantity"].as_u64().unwrap_or(1);
    subscription.term = line["termDuration"].as_str().unwrap_or_default().into();
    subscription.billing_cycle = line["billingCycle"].as_str().unwrap_or_default().into();
    book.subscriptions
        .insert(subscription_id.clone(), subscription);
    let order_id = uuid::Uuid::new_v4().simple().to_string();
    let order = json!({
        "id": order_id,
        "referenceCustomerId": tenant,
        "lineItems": [{
            "lineItemNumber": 0,
            "offerId": offer_id,
            "subscriptionId": subscription_id,
            "quantity": line["quantity"],
            "termDuration": line["termDuration"],
            "billingCycle": line["billingCycle"],
        }],
        "status": "completed",
        "attributes": {"objectType": "Order"},
    });
    book.seen.orders_placed += 1;
    book.orders
        .insert(order_id, (tenant.to_string(), order.clone()));
    if let Some(entry) = book.carts.get_mut(cart_id) {
        entry.2 = Some(order.clone());
    }
    let result = json!({"orders": [order], "orderErrors": [], "attributes": {"objectType": "CartCheckoutResult"}});
    book.requests
        .insert(request_id.unwrap_or_default(), result.clone());
    json(StatusCode::CREATED, &[], result)
}
