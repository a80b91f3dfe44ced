#!/usr/bin/env python3
"""Creates a customer idempotently: every attempt carries the same request_id, so a retry after a
timeout or UNAVAILABLE returns the customer the first attempt created instead of a second one.

    MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… \
      python3 create_customer.py --external-ref ISP-1001 --display-name "Acme Mining" \
      --credit-limit 150000.00 [--request-id bss-7f3a]

Prints `customer <id> external_ref=<ref> credit_limit=<amount> <currency> attempts=<n>`.
"""
import argparse
import os
import sys
import time
import uuid
from decimal import Decimal

import grpc

from msp.gateway.v1 import common_pb2, customer_pb2, customer_pb2_grpc

# Worth retrying with the same request_id: the call may or may not have been applied.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--external-ref", required=True)
    parser.add_argument("--display-name", required=True)
    parser.add_argument("--currency", default="ZAR")
    parser.add_argument("--credit-limit", default="0")
    # Choose the id once per business operation and keep it across retries (store it with the
    # order in the BSS if the process itself may restart).
    parser.add_argument("--request-id", default=f"bss-{uuid.uuid4()}")
    parser.add_argument("--deadline", type=float, default=5.0, help="seconds per attempt")
    parser.add_argument("--max-attempts", type=int, default=8)
    args = parser.parse_args()

    api_key = os.environ["MSP_GATEWAY_API_KEY"]
    metadata = [("authorization", f"Bearer {api_key}")]
    request = customer_pb2.CreateCustomerRequest(
        request_id=args.request_id,
        external_ref=args.external_ref,
        display_name=args.display_name,
        billing_currency=args.currency,
        billing_cycle=customer_pb2.MONTHLY,
        credit_limit=str(Decimal(args.credit_limit)),  # an exact decimal string, never a float
        enrollments=[customer_pb2.EnrollmentRequest(vendor=common_pb2.SIMULATOR)],
    )

    # Use grpc.secure_channel(address, grpc.ssl_channel_credentials(...)) when the gateway has TLS.
    with grpc.insecure_channel(args.address) as channel:
        stub = customer_pb2_grpc.CustomerServiceStub(channel)
        backoff = 0.2
        for attempt in range(1, args.max_attempts + 1):
            try:
                customer: customer_pb2.Customer = stub.CreateCustomer(request, metadata=metadata, timeout=args.deadline)
            except grpc.RpcError as error:
                code = error.code()
                if code in RETRYABLE and attempt < args.max_attempts:
                    print(f"attempt {attempt}: {code.name}; retrying with request_id "
                          f"{args.request_id} in {backoff:.1f}s", file=sys.stderr)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                print(f"CreateCustomer failed: {code.name}: {error.details()}",
                      file=sys.stderr)
                return 1
            limit = Decimal(customer.credit_limit)  # exact: Decimal, never float
            print(f"customer {customer.id} external_ref={customer.external_ref} "
                  f"credit_limit={limit:f} {customer.billing_currency} attempts={attempt}")
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
