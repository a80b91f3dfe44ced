#!/usr/bin/env python3
"""A credit-control consumer of charges and credit events that survives being killed.

It follows two streams at once, each on its own thread with its own cursor:
  ChargeService.StreamCharges              the charge ledger (the exposure moving);
  CreditControlService.StreamCreditEvents  threshold crossings, with what the policy asks for
                                           (SUSPENSION_REQUIRED, RESUMPTION_ALLOWED).

Each stream's state lives in two files in --state-dir (charges.*, credit-events.*):
  *.processed  what was processed, one line per item, appended and fsynced before the cursor moves
               (stands in for whatever your processing writes: a ledger table, a queue, ...);
  *.cursor     the last sequence processed, replaced atomically (write a temp file, fsync, rename,
               fsync the directory).

On start it reads each cursor, and if the output shows an item processed after it (the process
died between the two writes) it advances the cursor to that item first. It then streams from
after_sequence=cursor; delivery is at-least-once, so an item at or below the cursor is skipped.
Each sequence of each stream is therefore processed exactly once across any number of kills and
restarts. On a retryable error or the end of a stream it reconnects from that stream's cursor
with back-off; the two streams are independent (their sequences are separate counters).

    MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… python3 credit_consumer.py \
      --state-dir state/
"""
import argparse
import os
import queue
import sys
import threading
import time
from decimal import Decimal
from typing import Callable, Iterable, Optional, TypeVar

import grpc

from msp.gateway.v1 import charges_pb2, charges_pb2_grpc, credit_pb2, credit_pb2_grpc

Response = TypeVar("Response")

RECONNECT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


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


class Journal:
    """One stream's durable progress: the processed-items file and the cursor file."""

    def __init__(self, name: str, state_dir: str) -> None:
        self.name = name
        self.cursor_file = os.path.join(state_dir, f"{name}.cursor")
        output_file = os.path.join(state_dir, f"{name}.processed")
        self.cursor = read_cursor(self.cursor_file)
        recovered = last_processed(output_file)
        if recovered > self.cursor:
            # Processed but the cursor was not saved: do not process it again.
            log(f"{name}: recovering cursor {self.cursor} -> {recovered} from the output file")
            self.cursor = recovered
            write_cursor(self.cursor_file, self.cursor)
        self.out = os.open(output_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def seen(self, sequence: int) -> bool:
        """True when this sequence was processed already (at-least-once delivery)."""
        return sequence <= self.cursor

    def record(self, sequence: int, line: str) -> None:
        os.write(self.out, f"{line}\n".encode("utf-8"))  # one write: the line is whole or absent
        os.fsync(self.out)
        self.cursor = sequence
        write_cursor(self.cursor_file, self.cursor)


class Consumer:
    def __init__(self, state_dir: str, delay: float) -> None:
        os.makedirs(state_dir, exist_ok=True)
        self.delay = delay
        self.charges = Journal("charges", state_dir)
        self.credit_events = Journal("credit-events", state_dir)
        self.exposure: dict[str, Decimal] = {}  # seen in this run only: the gateway keeps the real one

    def process_charge(self, charge: charges_pb2.Charge) -> None:
        if self.charges.seen(charge.sequence):
            return
        amount = Decimal(charge.amount)  # exact; never float
        key = f"{charge.customer_id} {charge.currency}"
        self.exposure[key] = self.exposure.get(key, Decimal(0)) + amount
        if self.delay:
            time.sleep(self.delay)  # stands in for real work
        self.charges.record(charge.sequence, "\t".join([
            str(charge.sequence), charge.customer_id, charges_pb2.ChargeKind.Name(charge.kind),
            f"{amount:f}", charge.currency]))

    def process_credit_event(self, event: credit_pb2.CreditEvent) -> None:
        if self.credit_events.seen(event.sequence):
            return
        exposure, limit = Decimal(event.exposure), Decimal(event.credit_limit)
        action = credit_pb2.CreditAction.Name(event.action)
        # Act on what the policy asks for (here: say it; in a BSS: open a ticket, call provisioning).
        if event.action == credit_pb2.SUSPENSION_REQUIRED:
            log(f"credit-events: SUSPEND {event.customer_id}: exposure {exposure:f} reached the limit "
                f"{limit:f} {event.currency}")
        elif event.action == credit_pb2.RESUMPTION_ALLOWED:
            log(f"credit-events: RESUME {event.customer_id}: exposure {exposure:f} is below the limit "
                f"{limit:f} {event.currency}")
        if self.delay:
            time.sleep(self.delay)  # stands in for real work
        self.credit_events.record(event.sequence, "\t".join([
            str(event.sequence), event.customer_id, str(event.threshold_percent),
            credit_pb2.CrossingDirection.Name(event.direction), f"{exposure:f}", f"{limit:f}",
            event.currency, credit_pb2.CreditPolicy.Name(event.policy), action,
            str(event.ledger_sequence)]))


def follow(journal: Journal, rpc: str, open_stream: Callable[[int], Iterable[Response]],
           handle: Callable[[Response], Optional[int]]) -> int:
    """Streams from the journal's cursor, reconnecting with back-off; returns only on a fatal error.

    `handle` processes one response and returns the heartbeat's high-water mark, if it was one."""
    backoff = 0.5
    while True:
        log(f"{journal.name}: streaming after sequence {journal.cursor}")
        try:
            # No deadline: the stream is meant to stay open. Keepalives (channel options)
            # detect a dead connection instead.
            for response in open_stream(journal.cursor):
                backoff = 0.5
                hwm = handle(response)
                if hwm is not None:
                    state = "up to date" if hwm <= journal.cursor else "behind"
                    log(f"{journal.name}: heartbeat: high_water_mark={hwm} cursor={journal.cursor} ({state})")
            log(f"{journal.name}: stream ended by the server; reconnecting")
        except grpc.RpcError as error:
            code = error.code()
            if code not in RECONNECT:
                log(f"{rpc} failed: {code.name}: {error.details()}")
                return 2
            log(f"{journal.name}: stream broke ({code.name}); reconnecting in {backoff:.1f}s")
        time.sleep(backoff)
        backoff = min(backoff * 2, 10.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--address", default=os.environ.get("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"))
    parser.add_argument("--state-dir", required=True, help="where the cursors and outputs are kept")
    parser.add_argument("--process-delay-ms", type=int, default=0, help="simulated work per item")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {os.environ['MSP_GATEWAY_API_KEY']}")]
    consumer = Consumer(args.state_dir, args.process_delay_ms / 1000)
    options = [("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000)]
    with grpc.insecure_channel(args.address, options=options) as channel:
        charges = charges_pb2_grpc.ChargeServiceStub(channel)
        credit = credit_pb2_grpc.CreditControlServiceStub(channel)

        def open_charges(cursor: int) -> Iterable[charges_pb2.StreamChargesResponse]:
            stream: Iterable[charges_pb2.StreamChargesResponse] = charges.StreamCharges(
                charges_pb2.StreamChargesRequest(after_sequence=cursor), metadata=metadata)
            return stream

        def handle_charge(response: charges_pb2.StreamChargesResponse) -> Optional[int]:
            if response.WhichOneof("event") == "charge":
                consumer.process_charge(response.charge)
            elif response.WhichOneof("event") == "heartbeat":
                return response.heartbeat.high_water_mark
            return None

        def open_credit_events(cursor: int) -> Iterable[credit_pb2.StreamCreditEventsResponse]:
            stream: Iterable[credit_pb2.StreamCreditEventsResponse] = credit.StreamCreditEvents(
                credit_pb2.StreamCreditEventsRequest(after_sequence=cursor), metadata=metadata)
            return stream

        def handle_credit_event(response: credit_pb2.StreamCreditEventsResponse) -> Optional[int]:
            if response.WhichOneof("event") == "credit_event":
                consumer.process_credit_event(response.credit_event)
            elif response.WhichOneof("event") == "heartbeat":
                return response.heartbeat.high_water_mark
            return None

        # Each stream on its own thread; the first to fail for good ends the process.
        done: "queue.Queue[int]" = queue.Queue()
        threading.Thread(
            target=lambda: done.put(follow(consumer.charges, "StreamCharges", open_charges, handle_charge)),
            name="charges", daemon=True).start()
        threading.Thread(
            target=lambda: done.put(follow(consumer.credit_events, "StreamCreditEvents",
                                           open_credit_events, handle_credit_event)),
            name="credit-events", daemon=True).start()
        return done.get()


if __name__ == "__main__":
    sys.exit(main())
