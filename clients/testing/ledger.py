#!/usr/bin/env python3
"""Test tool for clients/test-streaming.sh (not an example): makes credit events happen, and
reads what the gateway holds, in the credit consumers' output format, to compare with theirs.

    ledger.py credit-settings --customer-id C --credit-limit 1000000.00 --thresholds 10,20 --policy AUTO_SUSPEND
    ledger.py swing-limit --customer-id C --rounds 2 --final-percent 45
        moves the credit limit so that the exposure stands at 1 % of it, then at 105 %, per round
        (every threshold crossed down, then up), and leaves it at --final-percent, so that the
        next charges cross thresholds too. Prints exposure=… credit_limit=…
    ledger.py charges        every charge (ListCharges), one line each, as credit_consumer writes them
    ledger.py credit-events  every credit event (StreamCreditEvents from 0 until the first
                             heartbeat), one line each, as credit_consumer writes them; the last line
                             on stderr is credit_high_water_mark=N

Reads MSP_GATEWAY_ADDRESS and MSP_GATEWAY_API_KEY.
"""
import argparse
import os
import sys
import uuid
from decimal import ROUND_HALF_UP, Decimal

import grpc
from google.protobuf import field_mask_pb2

from msp.gateway.v1 import charges_pb2, charges_pb2_grpc, credit_pb2, credit_pb2_grpc

DEADLINE = 30.0
Metadata = list[tuple[str, str]]


def credit_settings(channel: grpc.Channel, metadata: Metadata, args: argparse.Namespace) -> None:
    paths = []
    settings = credit_pb2.CreditSettings(customer_id=args.customer_id)
    if args.credit_limit is not None:
        settings.credit_limit = args.credit_limit
        paths.append("credit_limit")
    if args.thresholds is not None:
        settings.threshold_percents.extend(int(p) for p in args.thresholds.split(",") if p)
        paths.append("threshold_percents")
    if args.policy is not None:
        settings.policy = {"NOTIFY": credit_pb2.NOTIFY, "AUTO_SUSPEND": credit_pb2.AUTO_SUSPEND}[args.policy]
        paths.append("policy")
    result: credit_pb2.CreditSettings = credit_pb2_grpc.CreditControlServiceStub(channel).UpdateCreditSettings(
        credit_pb2.UpdateCreditSettingsRequest(request_id=str(uuid.uuid4()), settings=settings,
                                               update_mask=field_mask_pb2.FieldMask(paths=paths)),
        metadata=metadata, timeout=DEADLINE)
    print(f"credit_limit={result.credit_limit} thresholds={','.join(map(str, result.threshold_percents))} "
          f"policy={credit_pb2.CreditPolicy.Name(result.policy)}")


def set_limit(stub: credit_pb2_grpc.CreditControlServiceStub, metadata: Metadata, customer_id: str,
              limit: Decimal) -> None:
    stub.UpdateCreditSettings(
        credit_pb2.UpdateCreditSettingsRequest(
            request_id=str(uuid.uuid4()),
            settings=credit_pb2.CreditSettings(customer_id=customer_id, credit_limit=f"{limit:f}"),
            update_mask=field_mask_pb2.FieldMask(paths=["credit_limit"])),
        metadata=metadata, timeout=DEADLINE)


def swing_limit(channel: grpc.Channel, metadata: Metadata, args: argparse.Namespace) -> None:
    stub = credit_pb2_grpc.CreditControlServiceStub(channel)
    position: credit_pb2.CreditPosition = stub.GetCreditPosition(
        credit_pb2.GetCreditPositionRequest(customer_id=args.customer_id), metadata=metadata,
        timeout=DEADLINE)
    exposure = Decimal(position.exposure)
    if exposure <= 0:
        raise SystemExit(f"swing-limit: the exposure is {exposure}: push usage first")
    cent = Decimal("0.01")

    def limit_at(percent: int) -> Decimal:
        return (exposure * 100 / percent).quantize(cent, rounding=ROUND_HALF_UP)

    for _ in range(args.rounds):
        set_limit(stub, metadata, args.customer_id, limit_at(1))
        set_limit(stub, metadata, args.customer_id, limit_at(105))
    final = limit_at(args.final_percent)
    set_limit(stub, metadata, args.customer_id, final)
    print(f"exposure={exposure:f} credit_limit={final:f}")


def charges(channel: grpc.Channel, metadata: Metadata, args: argparse.Namespace) -> None:
    stub = charges_pb2_grpc.ChargeServiceStub(channel)
    token = ""
    while True:
        page: charges_pb2.ListChargesResponse = stub.ListCharges(
            charges_pb2.ListChargesRequest(page_size=1000, page_token=token), metadata=metadata,
            timeout=DEADLINE)
        for c in page.charges:
            print(f"{c.sequence}\t{c.customer_id}\t{charges_pb2.ChargeKind.Name(c.kind)}\t"
                  f"{Decimal(c.amount):f}\t{c.currency}")
        token = page.next_page_token
        if not token:
            break


def credit_events(channel: grpc.Channel, metadata: Metadata, args: argparse.Namespace) -> None:
    stream = credit_pb2_grpc.CreditControlServiceStub(channel).StreamCreditEvents(
        credit_pb2.StreamCreditEventsRequest(after_sequence=0), metadata=metadata, timeout=args.timeout)
    response: credit_pb2.StreamCreditEventsResponse
    for response in stream:
        if response.WhichOneof("event") == "heartbeat":
            # Sent only once the backlog is drained: everything up to it has been printed.
            print(f"credit_high_water_mark={response.heartbeat.high_water_mark}", file=sys.stderr)
            stream.cancel()
            return
        e = response.credit_event
        print("\t".join([
            str(e.sequence), e.customer_id, str(e.threshold_percent),
            credit_pb2.CrossingDirection.Name(e.direction), f"{Decimal(e.exposure):f}",
            f"{Decimal(e.credit_limit):f}", e.currency, credit_pb2.CreditPolicy.Name(e.policy),
            credit_pb2.CreditAction.Name(e.action), str(e.ledger_sequence)]))
    raise SystemExit("credit-events: the stream ended without a heartbeat")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("credit-settings")
    s.add_argument("--customer-id", required=True)
    s.add_argument("--credit-limit")
    s.add_argument("--thresholds", help="comma-separated whole percentages")
    s.add_argument("--policy", choices=["NOTIFY", "AUTO_SUSPEND"])
    w = commands.add_parser("swing-limit")
    w.add_argument("--customer-id", required=True)
    w.add_argument("--rounds", type=int, default=1)
    w.add_argument("--final-percent", type=int, default=45)
    commands.add_parser("charges")
    c = commands.add_parser("credit-events")
    c.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the heartbeat")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {os.environ['MSP_GATEWAY_API_KEY']}")]
    action = {"credit-settings": credit_settings, "swing-limit": swing_limit, "charges": charges,
              "credit-events": credit_events}[args.command]
    with grpc.insecure_channel(args.address) as channel:
        try:
            action(channel, metadata, args)
        except grpc.RpcError as error:
            print(f"{args.command} failed: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
