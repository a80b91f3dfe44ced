#!/usr/bin/env python3
"""A refused IngestUsage batch of 300 bad lines, through the generated Python client at its
default settings: the gateway's error must arrive as INVALID_ARGUMENT naming the first bad field,
not as RESOURCE_EXHAUSTED "metadata size exceeds hard limit" (grpcio's default limit is 16 KiB,
Java's 8 KiB; the gateway keeps an error's trailers under 8 KiB).

Reads MSP_GATEWAY_ADDRESS and MSP_GATEWAY_API_KEY; prints `ok <what>` or exits non-zero.
Used by clients/test.sh.
"""
import os
import sys

import grpc
from google.protobuf import timestamp_pb2

from msp.gateway.v1 import (
    common_pb2,
    partner_account_pb2,
    partner_account_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

BAD_LINES = 300


def main() -> int:
    channel = grpc.insecure_channel(os.environ["MSP_GATEWAY_ADDRESS"])
    auth = [("authorization", "Bearer " + os.environ["MSP_GATEWAY_API_KEY"])]
    account = partner_account_pb2_grpc.PartnerAccountServiceStub(channel).CreatePartnerAccount(
        partner_account_pb2.CreatePartnerAccountRequest(
            request_id="refused-batch-account",
            partner_account=partner_account_pb2.PartnerAccount(
                vendor=common_pb2.SIMULATOR,
                display_name="Refused batch",
                vendor_account_id="refused-batch",
                partner_discount_rate="0",
            ),
        ),
        metadata=auth,
        timeout=30,
    )
    start = timestamp_pb2.Timestamp(seconds=1_780_000_000)
    end = timestamp_pb2.Timestamp(seconds=1_780_003_600)
    lines = [
        usage_pb2.UsageLine(
            vendor_account_id=f"sim-{i}",
            service="Compute",
            window_start=start,
            window_end=end,
            quantity="-1",
            cost="not a number",
            currency="USD",
        )
        for i in range(BAD_LINES)
    ]
    request = usage_pb2.IngestUsageRequest(
        request_id="refused-batch", partner_account_id=account.id, lines=lines
    )
    try:
        usage_pb2_grpc.UsageServiceStub(channel).IngestUsage(
            iter([request]), metadata=auth, timeout=30
        )
    except grpc.RpcError as error:
        code, details = error.code(), error.details() or ""
        trailers = sum(len(m.key) + len(m.value) for m in error.trailing_metadata() or ())
        if code != grpc.StatusCode.INVALID_ARGUMENT or "lines[0].quantity" not in details:
            print(f"refused batch answered {code}: {details[:300]}", file=sys.stderr)
            return 1
        if trailers >= 8192:
            print(f"refused batch: {trailers} bytes of trailers (over 8 KiB)", file=sys.stderr)
            return 1
        print(f"ok {BAD_LINES} bad lines answer INVALID_ARGUMENT in {trailers} bytes of trailers")
        return 0
    print("a batch of bad lines was accepted", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
