#!/usr/bin/env python3
"""A stand-in ChargeService for testing the credit consumers' cursor handling before the gateway
serves StreamCharges: it is NOT the gateway. It serves a fixed ledger of N charges (sequences 1..N)
and, like an at-least-once stream after a reconnect, first replays up to three charges at or
before the requested cursor; then heartbeats with high_water_mark=N. It requires a bearer key.

    PYTHONPATH=<generated python> stub_charge_server.py PORT N
"""
import sys
import time
from concurrent import futures
from typing import Iterator

import grpc

from msp.gateway.v1 import charges_pb2, charges_pb2_grpc


class StubCharges(charges_pb2_grpc.ChargeServiceServicer):
    def __init__(self, count: int) -> None:
        self.count = count

    def StreamCharges(self, request: charges_pb2.StreamChargesRequest,
                      context: grpc.ServicerContext) -> Iterator[charges_pb2.StreamChargesResponse]:
        if not dict(context.invocation_metadata()).get("authorization", "").startswith("Bearer "):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer key")
        for sequence in range(max(1, request.after_sequence - 2), self.count + 1):
            yield charges_pb2.StreamChargesResponse(charge=charges_pb2.Charge(
                sequence=sequence, customer_id="cus_stub", kind=charges_pb2.NEW,
                amount=f"{sequence}.0000000123", currency="ZAR"))
        while context.is_active():
            yield charges_pb2.StreamChargesResponse(
                heartbeat=charges_pb2.Heartbeat(high_water_mark=self.count))
            time.sleep(0.5)


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    charges_pb2_grpc.add_ChargeServiceServicer_to_server(StubCharges(int(sys.argv[2])), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
