#!/usr/bin/env python3
"""A stand-in ChargeService and CreditControlService for testing the credit consumers' cursor
handling on their own: it is NOT the gateway. It serves a fixed ledger of N charges (sequences
1..N) and M credit events (1..M) and, like an at-least-once stream after a reconnect, first
replays up to three items at or before the requested cursor; then heartbeats with the
high-water mark. It requires a bearer key.

    PYTHONPATH=<generated python> stub_charge_server.py PORT N M
"""
import sys
import time
from concurrent import futures
from typing import Iterator

import grpc

from msp.gateway.v1 import charges_pb2, charges_pb2_grpc, credit_pb2, credit_pb2_grpc


def require_bearer(context: grpc.ServicerContext) -> None:
    if not str(dict(context.invocation_metadata()).get("authorization", "")).startswith("Bearer "):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer key")


class StubCharges(charges_pb2_grpc.ChargeServiceServicer):
    def __init__(self, count: int) -> None:
        self.count = count

    def StreamCharges(self, request: charges_pb2.StreamChargesRequest,
                      context: grpc.ServicerContext) -> Iterator[charges_pb2.StreamChargesResponse]:
        require_bearer(context)
        for sequence in range(max(1, request.after_sequence - 2), self.count + 1):
            yield charges_pb2.StreamChargesResponse(charge=charges_pb2.Charge(
                sequence=sequence, customer_id="cus_stub", kind=charges_pb2.NEW,
                amount=f"{sequence}.0000000123", currency="ZAR"))
        while context.is_active():
            yield charges_pb2.StreamChargesResponse(
                heartbeat=charges_pb2.Heartbeat(high_water_mark=self.count))
            time.sleep(0.5)


class StubCredit(credit_pb2_grpc.CreditControlServiceServicer):
    def __init__(self, count: int) -> None:
        self.count = count

    def StreamCreditEvents(self, request: credit_pb2.StreamCreditEventsRequest, context: grpc.ServicerContext
                           ) -> Iterator[credit_pb2.StreamCreditEventsResponse]:
        require_bearer(context)
        for sequence in range(max(1, request.after_sequence - 2), self.count + 1):
            up = sequence % 2 == 1
            yield credit_pb2.StreamCreditEventsResponse(credit_event=credit_pb2.CreditEvent(
                sequence=sequence, customer_id="cus_stub", threshold_percent=100,
                direction=credit_pb2.UP if up else credit_pb2.DOWN,
                exposure="1000.01" if up else "999.99", credit_limit="1000", currency="ZAR",
                policy=credit_pb2.AUTO_SUSPEND,
                action=credit_pb2.SUSPENSION_REQUIRED if up else credit_pb2.RESUMPTION_ALLOWED,
                ledger_sequence=sequence))
        while context.is_active():
            yield credit_pb2.StreamCreditEventsResponse(
                heartbeat=charges_pb2.Heartbeat(high_water_mark=self.count))
            time.sleep(0.5)


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    charges_pb2_grpc.add_ChargeServiceServicer_to_server(StubCharges(int(sys.argv[2])), server)
    credit_pb2_grpc.add_CreditControlServiceServicer_to_server(StubCredit(int(sys.argv[3])), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
