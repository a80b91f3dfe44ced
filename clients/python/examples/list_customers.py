#!/usr/bin/env python3
"""Lists every customer, following next_page_token across pages, and totals their credit limits
exactly (Decimal).

    MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… python3 list_customers.py --page-size 50

Prints one line per customer, then `total=<n> pages=<p> credit_limits=<CUR>:<sum>[,…]` (the
exact sum of the credit limits per currency).
"""
import argparse
import os
import sys
from decimal import Decimal

import grpc

from msp.gateway.v1 import customer_pb2, customer_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--deadline", type=float, default=10.0, help="seconds per page")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {os.environ['MSP_GATEWAY_API_KEY']}")]
    total, pages = 0, 0
    limit_sums: dict[str, Decimal] = {}
    with grpc.insecure_channel(args.address) as channel:
        stub = customer_pb2_grpc.CustomerServiceStub(channel)
        page_token = ""
        while True:
            try:
                page: customer_pb2.ListCustomersResponse = stub.ListCustomers(
                    customer_pb2.ListCustomersRequest(page_size=args.page_size, page_token=page_token),
                    metadata=metadata,
                    timeout=args.deadline,
                )
            except grpc.RpcError as error:
                print(f"ListCustomers failed: {error.code().name}: {error.details()}",
                      file=sys.stderr)
                return 1
            pages += 1
            for customer in page.customers:
                limit = Decimal(customer.credit_limit)
                currency = customer.billing_currency
                limit_sums[currency] = limit_sums.get(currency, Decimal(0)) + limit
                total += 1
                print(f"{customer.id}\t{customer.external_ref}\t{customer.display_name}\t"
                      f"{limit:f} {customer.billing_currency}")
            if not page.next_page_token:
                break
            page_token = page.next_page_token
    sums = ",".join(f"{currency}:{amount:f}" for currency, amount in sorted(limit_sums.items()))
    print(f"total={total} pages={pages} credit_limits={sums}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
