//! Every charge says what its quantity counts (`Charge.unit`): a usage charge its usage line's
//! unit, read with the event; a subscription's charge "seat". Through ListCharges and
//! StreamCharges (the stream's first page from the database, its later events through the
//! tenant's ring).
use std::collections::HashMap;

use chrono::Duration as Span;
use msp_gateway::domain::usage::UsageLine;

use crate::charge_streams::{all_charges, charges_client, ledger, line, open, until_mark};
use crate::harness::{Backend, TestGateway, fresh_request};
use crate::subscriptions::{clients, purchase, setup};

async fn usage_and_seat_charges_carry_their_unit(backend: Backend) {
    let Some(gw) = TestGateway::start(backend).await else {
        return;
    };
    let l = ledger(&gw, 1, "0").await;
    let customer = &l.customers[0];
    let mut storage = line(customer, "blob", "3.50", l.base);
    storage.unit = "GB-Mo".into();
    let push = async |lines: Vec<UsageLine>| {
        let request = fresh_request();
        gw.ledger
            .ingest_push(&gw.tenant_id, &l.account, lines, &request)
            .await
            .unwrap()
            .fresh()
            .expect("a new request id");
    };
    push(vec![line(customer, "vm", "1.25", l.base), storage.clone()]).await;
    // A revision keeps its line's unit; another window of the same meter is a line of its own.
    storage.cost = "4.00".parse().unwrap();
    push(vec![
        storage,
        line(customer, "vm", "1.25", l.base - Span::hours(1)),
    ])
    .await;
    let (item, seat_customer) = setup(&gw).await;
    let (_, mut subscriptions, _) = clients(&gw, &gw.admin_key).await;
    subscriptions
        .create_subscription(purchase(&seat_customer, &item, 3))
        .await
        .unwrap();

    let listed = all_charges(gw.channel().await, &gw.admin_key).await;
    let units = |charges: &[msp_gateway::proto::v1::Charge]| -> HashMap<(String, i32), String> {
        charges
            .iter()
            .map(|c| ((c.meter.clone(), c.kind), c.unit.clone()))
            .collect()
    };
    let expected: HashMap<(String, i32), String> = listed
        .iter()
        .map(|c| {
            let unit = match c.meter.as_str() {
                "vm" => "h",
                "blob" => "GB-Mo",
                _ => "seat",
            };
            ((c.meter.clone(), c.kind), unit.to_string())
        })
        .collect();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert_eq!(units(&listed), expected, "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|c| c.meter == "blob"
                && c.kind == msp_gateway::proto::v1::ChargeKind::Revision as i32),
        "{listed:?}"
    );
    assert_eq!(
        listed.iter().filter(|c| c.unit == "seat").count(),
        1,
        "the subscription's first fee: {listed:?}"
    );

    // The stream: the backlog read from the database, then a live usage charge from the ring.
    let mut client = charges_client(gw.channel().await, &gw.admin_key);
    let mut stream = open(&mut client, 0, &[]).await;
    let (streamed, mark) = until_mark(&mut stream, listed.last().unwrap().sequence).await;
    assert_eq!(units(&streamed), expected);
    let mut disk = line(customer, "disk", "0.30", l.base);
    disk.unit = "GB".into();
    push(vec![disk]).await;
    let (live, _) = until_mark(&mut stream, mark + 1).await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(
        (live[0].meter.as_str(), live[0].unit.as_str()),
        ("disk", "GB")
    );
    drop(stream);
    gw.stop().await;
}

crate::both_backends!(usage_and_seat_charges_carry_their_unit);
