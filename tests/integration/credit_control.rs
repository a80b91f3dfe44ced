//! CreditControlService: threshold crossings under revisions (one event per crossing, either
//! way), policies, the forecast, settings and defaults, bad input, scopes.
use std::time::Duration;

use chrono::{Duration as Span, Utc};
use msp_gateway::proto::v1;
use msp_gateway::proto::v1::credit_control_service_client::CreditControlServiceClient;
use prost_types::FieldMask;
use tonic::Streaming;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::charge_streams::{Ledger, dec, ledger, line};
use crate::harness::{Backend, Bearer, TestGateway, assert_violation};

type Credit = CreditControlServiceClient<InterceptedService<Channel, Bearer>>;

pub async fn credit_client(gw: &TestGateway, key: &str) -> Credit {
    CreditControlServiceClient::with_interceptor(gw.channel().await, Bearer::new(key))
}

/// Restates customer 0's single line at `cost` (a revision of the same usage key).
pub async fn restate(gw: &TestGateway, l: &Ledger, cost: &str) {
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![line(&l.customers[0], "vm", cost, l.base)],
            &crate::harness::fresh_request(),
        )
        .await
        .expect("ingest")
        .fresh()
        .expect("a new request id");
}

pub async fn open(client: &mut Credit, after: i64) -> Streaming<v1::StreamCreditEventsResponse> {
    client
        .stream_credit_events(v1::StreamCreditEventsRequest {
            after_sequence: after,
            customer_ids: vec![],
        })
        .await
        .expect("credit stream")
        .into_inner()
}

pub async fn take(
    stream: &mut Streaming<v1::StreamCreditEventsResponse>,
    n: usize,
) -> Vec<v1::CreditEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} credit events", out.len()))
            .expect("stream error")
            .expect("stream ended");
        if let Some(v1::stream_credit_events_response::Event::CreditEvent(e)) = message.event {
            out.push(e);
        }
    }
    out
}

/// Drains until a heartbeat; returns the events before it and its high-water mark.
pub async fn until_heartbeat(
    stream: &mut Streaming<v1::StreamCreditEventsResponse>,
) -> (Vec<v1::CreditEvent>, i64) {
    let mut out = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("timed out waiting for a heartbeat")
            .expect("stream error")
            .expect("stream ended");
        match message.event {
            Some(v1::stream_credit_events_response::Event::CreditEvent(e)) => out.push(e),
            Some(v1::stream_credit_events_response::Event::Heartbeat(h)) => {
                return (out, h.high_water_mark);
            }
            None => {}
        }
    }
}

pub fn summary(events: &[v1::CreditEvent]) -> Vec<(u32, &'static str)> {
    events
        .iter()
        .map(|e| {
            let direction = if e.direction == v1::CrossingDirection::Up as i32 {
                "UP"
            } else {
                "DOWN"
            };
            (e.threshold_percent, direction)
        })
        .collect()
}

async fn one_event_per_crossing_under_revisions(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    gw.ledger
        .feed()
        .set_heartbeat_interval(Duration::from_millis(300));
    let l = ledger(&gw, 2, "1000.00").await;
    let mut client = credit_client(&gw, &gw.admin_key).await;
    let mut stream = open(&mut client, 0).await;

    restate(&gw, &l, "400").await; // 40 %: nothing
    restate(&gw, &l, "600").await; // 60 %: 50 up
    restate(&gw, &l, "650").await; // same side: nothing
    restate(&gw, &l, "1000").await; // 100 %: 80 up, 100 up
    restate(&gw, &l, "1000").await; // identical: no charge, nothing
    restate(&gw, &l, "700").await; // 70 %: 100 down, 80 down
    restate(&gw, &l, "850").await; // 85 %: 80 up again
    let events = take(&mut stream, 6).await;
    assert_eq!(
        summary(&events),
        vec![
            (50, "UP"),
            (80, "UP"),
            (100, "UP"),
            (100, "DOWN"),
            (80, "DOWN"),
            (80, "UP")
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_eq!(events[0].exposure, "600.00");
    assert_eq!(events[0].credit_limit, "1000.00");
    assert_eq!(events[0].currency, "ZAR");
    assert!(events.iter().all(|e| e.customer_id == l.customers[0]));
    assert!(
        events
            .iter()
            .all(|e| e.action == v1::CreditAction::NotifyOnly as i32)
    );
    // Nothing else was emitted: the next heartbeat says 6.
    let (more, hwm) = until_heartbeat(&mut stream).await;
    assert!(more.is_empty());
    assert_eq!(hwm, 6);

    // AUTO_SUSPEND: reaching the limit requires suspension; falling back allows resumption.
    let settings = client
        .update_credit_settings(v1::UpdateCreditSettingsRequest {
            settings: Some(v1::CreditSettings {
                customer_id: l.customers[0].clone(),
                policy: v1::CreditPolicy::AutoSuspend.into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["policy".into()],
            }),
            request_id: "auto-suspend".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.policy, v1::CreditPolicy::AutoSuspend as i32);
    assert!(!settings.policy_inherited && settings.thresholds_inherited);
    restate(&gw, &l, "1000.01").await;
    restate(&gw, &l, "999.99").await;
    let events = take(&mut stream, 2).await;
    assert_eq!(summary(&events), vec![(100, "UP"), (100, "DOWN")]);
    assert_eq!(
        events[0].action,
        v1::CreditAction::SuspensionRequired as i32
    );
    assert_eq!(events[1].action, v1::CreditAction::ResumptionAllowed as i32);

    // Lowering the limit crosses without any charge; so does a new threshold.
    client
        .update_credit_settings(v1::UpdateCreditSettingsRequest {
            settings: Some(v1::CreditSettings {
                customer_id: l.customers[0].clone(),
                credit_limit: "990".into(),
                threshold_percents: vec![50, 80, 90],
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["credit_limit".into(), "threshold_percents".into()],
            }),
            request_id: "lower-limit".into(),
        })
        .await
        .unwrap();
    let events = take(&mut stream, 2).await;
    assert_eq!(summary(&events), vec![(90, "UP"), (100, "UP")]);
    assert_eq!(events[1].credit_limit, "990.00");
    // The ledger had reached sequence 8 when the settings changed.
    assert_eq!(events[1].ledger_sequence, 8);

    // A consumer reconnecting from its cursor gets exactly what follows.
    let mut again = open(&mut client, 7).await;
    let (events, hwm) = until_heartbeat(&mut again).await;
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    assert_eq!(hwm, 10);

    // UpdateCustomer's limit change re-evaluates too: at 2000 the exposure (999.99) is below 50 %.
    let mut customers = gw.customers(&gw.admin_key).await;
    customers
        .update_customer(v1::UpdateCustomerRequest {
            customer: Some(v1::Customer {
                id: l.customers[0].clone(),
                credit_limit: "2000.00".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["credit_limit".into()],
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let events = take(&mut stream, 4).await;
    assert_eq!(
        summary(&events),
        vec![(100, "DOWN"), (90, "DOWN"), (80, "DOWN"), (50, "DOWN")]
    );
    assert_eq!(events[0].action, v1::CreditAction::ResumptionAllowed as i32);

    // The other customer never crossed anything.
    let position = client
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: l.customers[1].clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(position.exposure, "0.00");
    assert!(position.crossed_threshold_percents.is_empty());
    gw.stop().await;
}

async fn position_and_forecast(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000.00").await;
    let c = &l.customers[0];
    let day = Utc::now() - Span::days(1);
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![
                line(c, "vm", "500", day),
                line(c, "disk", "200", day - Span::days(2)),
                // Outside the 7-day run-rate window, but part of the exposure.
                line(c, "old", "100", day - Span::days(20)),
            ],
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .expect("a new request id");
    let mut client = credit_client(&gw, &gw.admin_key).await;
    let before = Utc::now();
    let p = client
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.exposure, "800.00");
    assert_eq!(p.open_charges, "800.00");
    assert_eq!(p.unpaid_invoices, "0.00");
    assert_eq!(p.headroom, "200.00");
    assert_eq!(p.credit_limit, "1000.00");
    assert_eq!(p.crossed_threshold_percents, vec![50, 80]);
    // 700 over 7 days = 100 a day; 200 of headroom = 2 days.
    assert_eq!(p.run_rate_per_day, "100.00");
    assert_eq!(p.days_to_limit, "2");
    let at = p.limit_reached_time.unwrap();
    let expected = (before + Span::days(2)).timestamp();
    assert!((at.seconds - expected).abs() <= 5, "{at:?} vs {expected}");
    assert_eq!(p.as_of_sequence, 3);

    // No run rate, no forecast; a zero limit means no limit.
    let mut customers = gw.customers(&gw.admin_key).await;
    let mut request = crate::customers::new_customer("idle", "ISP-IDLE");
    request.credit_limit = "0".into();
    let idle = customers
        .create_customer(request)
        .await
        .unwrap()
        .into_inner();
    let p = client
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: idle.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.exposure, "0.00");
    assert_eq!(p.days_to_limit, "");
    assert!(p.limit_reached_time.is_none());

    // Over the limit: reached now.
    restate_cost(&gw, &l, "vm", "900", day).await;
    let p = client
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.exposure, "1200.00");
    assert_eq!(p.headroom, "-200.00");
    assert_eq!(p.days_to_limit, "0");

    // No limit is not over the limit: no headroom at all.
    update_settings(&mut client, settings_update(c, "0", "no-limit")).await;
    let p = client
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.exposure, "1200.00");
    assert_eq!(p.headroom, "", "no limit, no headroom");
    assert_eq!(p.days_to_limit, "");
    gw.stop().await;
}

async fn restate_cost(
    gw: &TestGateway,
    l: &Ledger,
    meter: &str,
    cost: &str,
    window: chrono::DateTime<Utc>,
) {
    gw.ledger
        .ingest_push(
            &gw.tenant_id,
            &l.account,
            vec![line(&l.customers[0], meter, cost, window)],
            &crate::harness::fresh_request(),
        )
        .await
        .unwrap()
        .fresh()
        .expect("a new request id");
}

async fn defaults_and_bad_input(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000.00").await;
    let c = l.customers[0].clone();
    let mut client = credit_client(&gw, &gw.admin_key).await;
    let defaults = client
        .get_credit_defaults(v1::GetCreditDefaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(defaults.threshold_percents, vec![50, 80, 100]);
    assert_eq!(defaults.policy, v1::CreditPolicy::Notify as i32);
    let updated = client
        .update_credit_defaults(v1::UpdateCreditDefaultsRequest {
            defaults: Some(v1::CreditDefaults {
                threshold_percents: vec![75, 25],
                policy: v1::CreditPolicy::AutoSuspend.into(),
            }),
            request_id: "defaults-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.threshold_percents, vec![25, 75, 100]);
    let settings = client
        .get_credit_settings(v1::GetCreditSettingsRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.threshold_percents, vec![25, 75, 100]);
    assert_eq!(settings.policy, v1::CreditPolicy::AutoSuspend as i32);
    assert!(settings.thresholds_inherited && settings.policy_inherited);
    assert_eq!(settings.credit_limit, "1000.00");

    let update =
        |limit: &str, thresholds: Vec<u32>, paths: &[&str]| v1::UpdateCreditSettingsRequest {
            settings: Some(v1::CreditSettings {
                customer_id: c.clone(),
                credit_limit: limit.into(),
                threshold_percents: thresholds,
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            request_id: "refused".into(),
        };
    for bad in [
        "-5",
        "abc",
        "12.345",
        "1E-3",
        "99999999999999999999999999999999999",
    ] {
        assert_violation(
            client
                .update_credit_settings(update(bad, vec![], &["credit_limit"]))
                .await,
            tonic::Code::InvalidArgument,
            "settings.credit_limit",
        );
    }
    assert_violation(
        client
            .update_credit_settings(update("", vec![0], &["threshold_percents"]))
            .await,
        tonic::Code::InvalidArgument,
        "settings.threshold_percents[0]",
    );
    assert_violation(
        client
            .update_credit_settings(update("", vec![50, 2000], &["threshold_percents"]))
            .await,
        tonic::Code::InvalidArgument,
        "settings.threshold_percents[1]",
    );
    assert_violation(
        client
            .update_credit_settings(update("", vec![50, 50], &["threshold_percents"]))
            .await,
        tonic::Code::InvalidArgument,
        "settings.threshold_percents[1]",
    );
    assert_violation(
        client
            .update_credit_settings(update("5", vec![], &[]))
            .await,
        tonic::Code::InvalidArgument,
        "update_mask",
    );
    assert_violation(
        client
            .update_credit_settings(update("5", vec![], &["currency"]))
            .await,
        tonic::Code::InvalidArgument,
        "update_mask.paths[0]",
    );
    assert_violation(
        client
            .update_credit_defaults(v1::UpdateCreditDefaultsRequest {
                defaults: Some(v1::CreditDefaults {
                    threshold_percents: vec![50],
                    policy: 0,
                }),
                request_id: "refused".into(),
            })
            .await,
        tonic::Code::InvalidArgument,
        "defaults.policy",
    );
    let missing = client
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: "cus_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    // Nothing changed by the refused calls.
    let settings = client
        .get_credit_settings(v1::GetCreditSettingsRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings.credit_limit, "1000.00");

    // A help-desk key reads positions but cannot change settings.
    let mut tenants = gw.tenants(&gw.admin_key).await;
    let key = tenants
        .create_api_key(v1::CreateApiKeyRequest {
            request_id: "hd".into(),
            name: "help desk".into(),
            scope: v1::ApiKeyScope::HelpDesk.into(),
            customer_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut help_desk = credit_client(&gw, &key.secret).await;
    help_desk
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap();
    let denied = help_desk
        .update_credit_settings(update("5", vec![], &["credit_limit"]))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(dec("1000"), dec(&settings.credit_limit));
    gw.stop().await;
}

fn settings_update(
    customer_id: &str,
    limit: &str,
    request_id: &str,
) -> v1::UpdateCreditSettingsRequest {
    v1::UpdateCreditSettingsRequest {
        settings: Some(v1::CreditSettings {
            customer_id: customer_id.into(),
            credit_limit: limit.into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["credit_limit".into()],
        }),
        request_id: request_id.into(),
    }
}

fn defaults_update(
    percents: Vec<u32>,
    policy: v1::CreditPolicy,
    request_id: &str,
) -> v1::UpdateCreditDefaultsRequest {
    v1::UpdateCreditDefaultsRequest {
        defaults: Some(v1::CreditDefaults {
            threshold_percents: percents,
            policy: policy.into(),
        }),
        request_id: request_id.into(),
    }
}

async fn update_settings(
    client: &mut Credit,
    request: v1::UpdateCreditSettingsRequest,
) -> v1::CreditSettings {
    client
        .update_credit_settings(request)
        .await
        .expect("settings updated")
        .into_inner()
}

async fn update_defaults(
    client: &mut Credit,
    request: v1::UpdateCreditDefaultsRequest,
) -> v1::CreditDefaults {
    client
        .update_credit_defaults(request)
        .await
        .expect("defaults updated")
        .into_inner()
}

/// UpdateCreditSettings and UpdateCreditDefaults are idempotent on their request id: a retry
/// answers the first answer without applying the change again (no crossing re-emitted, no later
/// change undone),
/// the same id with a different request is refused, and the id is required.
async fn credit_updates_are_idempotent_on_request_id(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "1000.00").await;
    let c = l.customers[0].clone();
    let mut client = credit_client(&gw, &gw.admin_key).await;
    restate(&gw, &l, "400").await; // 40 % of 1000: nothing crossed
    let credit_hwm = || gw.store.credit_high_water_mark(&gw.tenant_id);
    assert_eq!(credit_hwm().await.unwrap(), 0);

    // 400 of 500 is 80 %: crosses 50 and 80.
    let first = update_settings(&mut client, settings_update(&c, "500", "limit-500")).await;
    assert_eq!(first.credit_limit, "500.00");
    assert_eq!(credit_hwm().await.unwrap(), 2);
    let retry = update_settings(&mut client, settings_update(&c, "500", "limit-500")).await;
    assert_eq!(retry, first);
    assert_eq!(credit_hwm().await.unwrap(), 2, "the retry emitted nothing");

    // A later change, then a late retry of the first: it must not put the limit back.
    let second = update_settings(&mut client, settings_update(&c, "700", "limit-700")).await;
    assert_eq!(second.credit_limit, "700.00");
    assert_eq!(credit_hwm().await.unwrap(), 3, "80 % crossed down");
    let late = update_settings(&mut client, settings_update(&c, "500", "limit-500")).await;
    assert_eq!(late, first, "a late retry answers the first answer");
    assert_eq!(credit_hwm().await.unwrap(), 3);

    // The same id with a different request, or for the other RPC, is refused.
    assert_violation(
        client
            .update_credit_settings(settings_update(&c, "900", "limit-500"))
            .await,
        tonic::Code::InvalidArgument,
        "request_id",
    );
    assert_violation(
        client
            .update_credit_defaults(defaults_update(
                vec![60],
                v1::CreditPolicy::Notify,
                "limit-500",
            ))
            .await,
        tonic::Code::InvalidArgument,
        "request_id",
    );
    // Missing or malformed ids are refused before anything is written.
    for bad in ["", "has space", &"x".repeat(129)] {
        assert_violation(
            client
                .update_credit_settings(settings_update(&c, "900", bad))
                .await,
            tonic::Code::InvalidArgument,
            "request_id",
        );
        assert_violation(
            client
                .update_credit_defaults(defaults_update(vec![60], v1::CreditPolicy::Notify, bad))
                .await,
            tonic::Code::InvalidArgument,
            "request_id",
        );
    }
    let settings = client
        .get_credit_settings(v1::GetCreditSettingsRequest {
            customer_id: c.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(settings, second);
    let unchanged = client
        .get_credit_defaults(v1::GetCreditDefaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(unchanged.threshold_percents, vec![50, 80, 100]);

    // Defaults: 400 of 700 is 57 %; a 55 % threshold crosses up once.
    let first = update_defaults(
        &mut client,
        defaults_update(vec![55], v1::CreditPolicy::Notify, "d-55"),
    )
    .await;
    assert_eq!(first.threshold_percents, vec![55, 100]);
    // 50 is no longer configured (forgotten, not crossed down): one event, 55 up.
    assert_eq!(credit_hwm().await.unwrap(), 4);
    let retry = update_defaults(
        &mut client,
        defaults_update(vec![55], v1::CreditPolicy::Notify, "d-55"),
    )
    .await;
    assert_eq!(retry, first);
    let second = update_defaults(
        &mut client,
        defaults_update(vec![60], v1::CreditPolicy::AutoSuspend, "d-60"),
    )
    .await;
    let hwm = credit_hwm().await.unwrap();
    let late = update_defaults(
        &mut client,
        defaults_update(vec![55], v1::CreditPolicy::Notify, "d-55"),
    )
    .await;
    assert_eq!(late, first, "a late retry answers the first answer");
    assert_eq!(credit_hwm().await.unwrap(), hwm);
    assert_violation(
        client
            .update_credit_defaults(defaults_update(vec![70], v1::CreditPolicy::Notify, "d-55"))
            .await,
        tonic::Code::InvalidArgument,
        "request_id",
    );
    let defaults = client
        .get_credit_defaults(v1::GetCreditDefaultsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(defaults, second);
    gw.stop().await;
}

/// One money format everywhere: a credit limit reads the same from CustomerService and
/// CreditControlService, and amounts carry at least their currency's minor digits.
async fn money_reads_the_same_everywhere(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let priced = crate::usage::priced_tenant(&gw).await;
    let mut credit = credit_client(&gw, &gw.admin_key).await;
    credit
        .update_credit_settings(v1::UpdateCreditSettingsRequest {
            settings: Some(v1::CreditSettings {
                customer_id: priced.customer_id.clone(),
                credit_limit: "5".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["credit_limit".into()],
            }),
            request_id: "limit-5".into(),
        })
        .await
        .unwrap();
    let customer = gw
        .customers(&gw.admin_key)
        .await
        .get_customer(v1::GetCustomerRequest {
            id: priced.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let settings = credit
        .get_credit_settings(v1::GetCreditSettingsRequest {
            customer_id: priced.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customer.credit_limit, "5.00");
    assert_eq!(settings.credit_limit, customer.credit_limit);

    // 10.00 USD x 1.20 x 18.5 = 222 ZAR, exactly.
    let line = crate::usage::usage_line("sim-linked", "vm", 0, "10");
    crate::usage::push(&gw, "money-1", &priced.partner_account_id, vec![vec![line]])
        .await
        .unwrap();
    let mut charges = v1::charge_service_client::ChargeServiceClient::with_interceptor(
        gw.channel().await,
        Bearer::new(&gw.admin_key),
    );
    let listed = charges
        .list_charges(v1::ListChargesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.charges.len(), 1);
    assert_eq!(listed.charges[0].amount, "222.00");
    assert_eq!(listed.charges[0].quantity, "1.5");
    let position = credit
        .get_credit_position(v1::GetCreditPositionRequest {
            customer_id: priced.customer_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(position.credit_limit, "5.00");
    assert_eq!(position.exposure, "222.00");
    assert_eq!(position.headroom, "-217.00");
    gw.stop().await;
}

crate::both_backends!(
    money_reads_the_same_everywhere,
    one_event_per_crossing_under_revisions,
    position_and_forecast,
    defaults_and_bad_input,
    credit_updates_are_idempotent_on_request_id,
);
