#!/usr/bin/env python3
"""A credit-control consumer of ChargeService.StreamCharges that survives being killed.

State lives in two files:
  --output-file  the processed charges, one line each, appended and fsynced before the cursor moves
                 (stands in for whatever your processing writes: a ledger table, a queue, ...);
  --cursor-file  the last sequence processed, replaced atomically (write temp, fsync, rename,
                 fsync the directory).

On start it reads the cursor, and if the output shows a charge processed after it (the process died
between the two writes) it advances the cursor to that charge first. It then streams from
after_sequence=cursor; delivery is at-least-once, so a charge at or below the cursor is skipped.
Each sequence is therefore processed exactly once across any number of kills and restarts. On a
retryable error or the end of the stream it reconnects from the cursor with back-off.

    MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… python3 credit_consumer.py \
      --cursor-file state/charges.cursor --output-file state/charges.processed

The same pattern serves any other sequenced stream (e.g. credit events): one cursor file each.
"""
import argparse
import os
import sys
import time
from decimal import Decimal

import grpc

from msp.gateway.v1 import charges_pb2, charges_pb2_grpc

RECONNECT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


def fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_cursor(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip() or 0)
    except FileNotFoundError:
        return 0


def write_cursor(path: str, sequence: int) -> None:
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{sequence}\n".encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)  # atomic: a reader sees the old cursor or the new one
    fsync_dir(path)


def last_processed(path: str) -> int:
    """The last sequence in the output file; drops a torn last line left by a kill mid-write."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            lines = data[:end].splitlines()
            return int(lines[-1].split(b"\t", 1)[0]) if lines else 0
    except FileNotFoundError:
        return 0


class Consumer:
    def __init__(self, cursor_file: str, output_file: str, delay: float) -> None:
        self.cursor_file = cursor_file
        self.delay = delay
        self.cursor = read_cursor(cursor_file)
        recovered = last_processed(output_file)
        if recovered > self.cursor:
            # Processed but the cursor was not saved: do not process it again.
            print(f"recovering cursor {self.cursor} -> {recovered} from the output file", file=sys.stderr)
            self.cursor = recovered
            write_cursor(cursor_file, self.cursor)
        self.out = os.open(output_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.exposure: dict[str, Decimal] = {}

    def process(self, charge: charges_pb2.Charge) -> None:
        if charge.sequence <= self.cursor:
            return  # already processed (at-least-once delivery after a reconnect)
        amount = Decimal(charge.amount)  # exact; never float
        key = f"{charge.customer_id} {charge.currency}"
        self.exposure[key] = self.exposure.get(key, Decimal(0)) + amount
        if self.delay:
            time.sleep(self.delay)  # stands in for real work
        line = (f"{charge.sequence}\t{charge.customer_id}\t{charges_pb2.ChargeKind.Name(charge.kind)}\t"
                f"{amount:f}\t{charge.currency}\n")
        os.write(self.out, line.encode("utf-8"))  # one write: the line is whole or absent
        os.fsync(self.out)
        self.cursor = charge.sequence
        write_cursor(self.cursor_file, self.cursor)

    def run(self, stub: charges_pb2_grpc.ChargeServiceStub, metadata: list[tuple[str, str]]) -> int:
        backoff = 0.5
        while True:
            request = charges_pb2.StreamChargesRequest(after_sequence=self.cursor)
            print(f"streaming charges after sequence {self.cursor}", file=sys.stderr)
            try:
                # No deadline: the stream is meant to stay open. Keepalives (channel options)
                # detect a dead connection instead.
                response: charges_pb2.StreamChargesResponse
                for response in stub.StreamCharges(request, metadata=metadata):
                    backoff = 0.5
                    event = response.WhichOneof("event")
                    if event == "charge":
                        self.process(response.charge)
                    elif event == "heartbeat":
                        hwm = response.heartbeat.high_water_mark
                        state = "up to date" if hwm <= self.cursor else "behind"
                        print(f"heartbeat: high_water_mark={hwm} cursor={self.cursor} ({state})",
                              file=sys.stderr)
                print("stream ended by the server; reconnecting", file=sys.stderr)
            except grpc.RpcError as error:
                code = error.code()
                if code not in RECONNECT:
                    print(f"StreamCharges failed: {code.name}: {error.details()}",
                          file=sys.stderr)
                    return 2
                print(f"stream broke ({code.name}); reconnecting in {backoff:.1f}s", file=sys.stderr)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--cursor-file", required=True)
    parser.add_argument("--output-file", required=True)
    parser.add_argument("--process-delay-ms", type=int, default=0, help="simulated work per charge")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {os.environ['MSP_GATEWAY_API_KEY']}")]
    consumer = Consumer(args.cursor_file, args.output_file, args.process_delay_ms / 1000)
    options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]
    with grpc.insecure_channel(args.address, options=options) as channel:
        return consumer.run(charges_pb2_grpc.ChargeServiceStub(channel), metadata)


if __name__ == "__main__":
    sys.exit(main())
