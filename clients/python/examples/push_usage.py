#!/usr/bin/env python3
"""Pushes usage from the ISP's own sources with UsageService.IngestUsage (client streaming), and
the set-up that makes it rate: a simulator partner account, a customer with a linked simulator
vendor account, a markup price rule and a USD->ZAR FX rate. Every call is idempotent on its
request_id, so the whole script is safe to run again.

    push_usage.py setup --account-id sim-acct-1 --external-ref STREAM-1
        -> partner_account=<id> customer=<id>
    push_usage.py push --partner-account-id pa_… --account-id sim-acct-1 --lines 100 \
        --first-hour 0 --base 2026-11-01T00:00:00Z --request-id push-1
        -> lines_received=… lines_written=… events_appended=… last_sequence=… replayed=…
    push_usage.py high-water-mark
        -> high_water_mark=<the tenant's last ledger sequence>

Client used by clients/test-streaming.sh.
"""
import argparse
import os
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterator

import grpc
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from msp.gateway.v1 import (
    charges_pb2,
    charges_pb2_grpc,
    common_pb2,
    customer_pb2,
    customer_pb2_grpc,
    partner_account_pb2,
    partner_account_pb2_grpc,
    pricing_pb2,
    pricing_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

DEADLINE = 30.0
# The RPC in progress, for error messages.
step = ""


def timestamp(at: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(at)
    return ts


def setup(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    global step
    step = "CreatePartnerAccount"
    partner: partner_account_pb2.PartnerAccount = partner_account_pb2_grpc.PartnerAccountServiceStub(channel).CreatePartnerAccount(
        partner_account_pb2.CreatePartnerAccountRequest(
            request_id=f"{args.prefix}-partner-account",
            partner_account=partner_account_pb2.PartnerAccount(
                vendor=common_pb2.SIMULATOR,
                display_name="Usage push (simulator)",
                vendor_account_id=f"{args.prefix}-partner",
                partner_discount_rate="0.10",
                poll_interval=duration_pb2.Duration(seconds=86400),
                enabled=True,  # disabled below, once the customer is enrolled and linked
            ),
        ),
        metadata=metadata,
        timeout=DEADLINE,
    )
    customers = customer_pb2_grpc.CustomerServiceStub(channel)
    step = "CreateCustomer"
    customer: customer_pb2.Customer = customers.CreateCustomer(
        customer_pb2.CreateCustomerRequest(
            request_id=f"{args.prefix}-customer-{args.external_ref}",
            external_ref=args.external_ref,
            display_name=f"Streaming customer {args.external_ref}",
            billing_currency="ZAR",
            billing_cycle=customer_pb2.MONTHLY,
            credit_limit="1000000.00",
            enrollments=[customer_pb2.EnrollmentRequest(vendor=common_pb2.SIMULATOR,
                                                        partner_account_id=partner.id)],
        ),
        metadata=metadata,
        timeout=DEADLINE,
    )
    if not any(v.account_id == args.account_id for v in customer.vendor_accounts):
        step = "LinkVendorAccount"
        customer = customers.LinkVendorAccount(
            customer_pb2.LinkVendorAccountRequest(
                customer_id=customer.id,
                vendor_account=customer_pb2.VendorAccount(
                    vendor=common_pb2.SIMULATOR,
                    kind=customer_pb2.SIMULATOR_ACCOUNT,
                    account_id=args.account_id,
                    partner_account_id=partner.id,
                ),
                request_id=f"{args.prefix}-link-{args.account_id}",
            ),
            metadata=metadata,
            timeout=DEADLINE,
        )
    # This account's usage arrives only by IngestUsage: disable it so that no poller pulls it.
    step = "UpdatePartnerAccount"
    partner_account_pb2_grpc.PartnerAccountServiceStub(channel).UpdatePartnerAccount(
        partner_account_pb2.UpdatePartnerAccountRequest(
            partner_account=partner_account_pb2.PartnerAccount(id=partner.id, enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
            request_id=f"{args.prefix}-partner-account-push-only",
        ),
        metadata=metadata,
        timeout=DEADLINE,
    )
    pricing = pricing_pb2_grpc.PricingServiceStub(channel)
    since = timestamp(datetime(2020, 1, 1, tzinfo=timezone.utc))
    step = "CreatePriceRule"
    pricing.CreatePriceRule(
        pricing_pb2.CreatePriceRuleRequest(
            request_id=f"{args.prefix}-price-rule",
            price_rule=pricing_pb2.PriceRule(
                vendor=common_pb2.SIMULATOR, kind=pricing_pb2.MARKUP, value="0.15",
                effective_from=since,
            ),
        ),
        metadata=metadata,
        timeout=DEADLINE,
    )
    step = "SetFxRate"
    pricing.SetFxRate(
        pricing_pb2.SetFxRateRequest(fx_rate=pricing_pb2.FxRate(
            from_currency="USD", to_currency="ZAR", rate="18.2345", effective_from=since)),
        metadata=metadata,
        timeout=DEADLINE,
    )
    print(f"partner_account={partner.id} customer={customer.id}")


def usage_messages(args: argparse.Namespace) -> Iterator[usage_pb2.IngestUsageRequest]:
    base = datetime.fromisoformat(args.base.replace("Z", "+00:00"))
    lines = []
    for i in range(args.first_hour, args.first_hour + args.lines):
        start = base + timedelta(hours=i)
        cost = Decimal("1.25") + Decimal("0.0000000123") * (i + 1)  # vendor precision, exact
        lines.append(usage_pb2.UsageLine(
            vendor_account_id=args.account_id, service="Compute", meter="vm-small-hours",
            region="af-south-1", window_start=timestamp(start),
            window_end=timestamp(start + timedelta(hours=1)), meter_name="Small VM hours",
            quantity="1", unit="Hrs", cost=str(cost), currency="USD", estimated=True,
        ))
    # The whole stream is one batch; later messages may leave request_id and partner account empty.
    chunk = 50
    for n in range(0, max(len(lines), 1), chunk):
        first = n == 0
        yield usage_pb2.IngestUsageRequest(
            request_id=args.request_id if first else "",
            partner_account_id=args.partner_account_id if first else "",
            lines=lines[n:n + chunk],
        )


def push(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    global step
    step = "IngestUsage"
    stub = usage_pb2_grpc.UsageServiceStub(channel)
    response: usage_pb2.IngestUsageResponse = stub.IngestUsage(usage_messages(args), metadata=metadata, timeout=DEADLINE)
    print(f"lines_received={response.lines_received} lines_written={response.lines_written} "
          f"events_appended={response.events_appended} last_sequence={response.last_sequence} "
          f"replayed={str(response.replayed).lower()}")


def high_water_mark(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    global step
    step = "ListCharges"
    page: charges_pb2.ListChargesResponse = charges_pb2_grpc.ChargeServiceStub(channel).ListCharges(
        charges_pb2.ListChargesRequest(page_size=1), metadata=metadata, timeout=DEADLINE)
    print(f"high_water_mark={page.high_water_mark}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("setup")
    s.add_argument("--account-id", required=True)
    s.add_argument("--external-ref", required=True)
    s.add_argument("--prefix", default="usage-push")
    p = commands.add_parser("push")
    p.add_argument("--partner-account-id", required=True)
    p.add_argument("--account-id", required=True)
    p.add_argument("--lines", type=int, default=100)
    p.add_argument("--first-hour", type=int, default=0)
    p.add_argument("--base", required=True, help="RFC 3339 start of hour 0, e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--request-id", required=True)
    commands.add_parser("high-water-mark")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {os.environ['MSP_GATEWAY_API_KEY']}")]
    action = {"setup": setup, "push": push, "high-water-mark": high_water_mark}[args.command]
    with grpc.insecure_channel(args.address) as channel:
        try:
            action(channel, metadata, args)
        except grpc.RpcError as error:
            print(f"{args.command} failed in {step}: {error.code().name}: {error.details()}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
