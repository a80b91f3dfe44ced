package com.mspgateway.examples;

import com.mspgateway.v1.Charge;
import com.mspgateway.v1.ChargeServiceGrpc;
import com.mspgateway.v1.CreditAction;
import com.mspgateway.v1.CreditControlServiceGrpc;
import com.mspgateway.v1.CreditEvent;
import com.mspgateway.v1.StreamChargesRequest;
import com.mspgateway.v1.StreamChargesResponse;
import com.mspgateway.v1.StreamCreditEventsRequest;
import com.mspgateway.v1.StreamCreditEventsResponse;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.EnumSet;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.function.LongFunction;

/**
 * A credit-control consumer of charges and credit events that survives being killed.
 *
 * <p>It follows two streams at once, each on its own thread with its own cursor:
 * ChargeService.StreamCharges (the charge ledger: the exposure moving) and
 * CreditControlService.StreamCreditEvents (threshold crossings, with what the policy asks for:
 * SUSPENSION_REQUIRED, RESUMPTION_ALLOWED).
 *
 * <p>Each stream's state lives in two files in {@code --state-dir} ({@code charges.*},
 * {@code credit-events.*}): {@code *.processed}, what was processed, one line per item, appended
 * and forced to disk before the cursor moves (it stands in for whatever your processing writes: a
 * ledger table, a queue, ...); and {@code *.cursor}, the last sequence processed, replaced
 * atomically (write a temp file, force, rename, force the directory).
 *
 * <p>On start it reads each cursor, and if the output shows an item processed after it (the
 * process died between the two writes) it advances the cursor to that item first. It then streams
 * from after_sequence=cursor; delivery is at-least-once, so an item at or below the cursor is
 * skipped. Each sequence of each stream is processed exactly once across any number of kills and
 * restarts. On a retryable error or the end of a stream it reconnects from that stream's cursor
 * with back-off; the two streams are independent (their sequences are separate counters).
 *
 * <pre>
 * MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… java com.mspgateway.examples.CreditConsumer \
 *   --state-dir state/
 * </pre>
 */
public final class CreditConsumer {
  private static final Set<Status.Code> RECONNECT =
      EnumSet.of(
          Status.Code.UNAVAILABLE, Status.Code.DEADLINE_EXCEEDED, Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.ABORTED, Status.Code.INTERNAL, Status.Code.UNKNOWN);

  private final long delayMillis;
  private final Journal charges;
  private final Journal creditEvents;
  /** Seen in this run only: the gateway keeps the real exposure. */
  private final Map<String, BigDecimal> exposure = new ConcurrentHashMap<>();

  private CreditConsumer(Path stateDir, long delayMillis) throws IOException {
    Files.createDirectories(stateDir);
    this.delayMillis = delayMillis;
    this.charges = new Journal("charges", stateDir);
    this.creditEvents = new Journal("credit-events", stateDir);
  }

  public static void main(String[] args) throws Exception {
    CreditConsumer consumer =
        new CreditConsumer(
            Path.of(Gateway.arg(args, "--state-dir", null)),
            Long.parseLong(Gateway.arg(args, "--process-delay-ms", "0")));
    ManagedChannel channel = Gateway.channel();
    ChargeServiceGrpc.ChargeServiceBlockingStub chargeStub =
        ChargeServiceGrpc.newBlockingStub(channel).withInterceptors(Gateway.bearer());
    CreditControlServiceGrpc.CreditControlServiceBlockingStub creditStub =
        CreditControlServiceGrpc.newBlockingStub(channel).withInterceptors(Gateway.bearer());
    // Each stream on its own thread; the first to fail for good ends the process.
    LinkedBlockingQueue<Integer> done = new LinkedBlockingQueue<>();
    Thread chargeThread =
        new Thread(
            () ->
                done.add(
                    consumer.follow(
                        consumer.charges,
                        "StreamCharges",
                        cursor ->
                            chargeStub.streamCharges(
                                StreamChargesRequest.newBuilder().setAfterSequence(cursor).build()),
                        consumer::handleCharge)),
            "charges");
    Thread creditThread =
        new Thread(
            () ->
                done.add(
                    consumer.follow(
                        consumer.creditEvents,
                        "StreamCreditEvents",
                        cursor ->
                            creditStub.streamCreditEvents(
                                StreamCreditEventsRequest.newBuilder().setAfterSequence(cursor).build()),
                        consumer::handleCreditEvent)),
            "credit-events");
    chargeThread.setDaemon(true);
    creditThread.setDaemon(true);
    chargeThread.start();
    creditThread.start();
    int code = done.take();
    channel.shutdownNow();
    System.exit(code);
  }

  /** Processes one response; returns a heartbeat's high-water mark, or -1. */
  @FunctionalInterface
  private interface Handler<R> {
    long handle(R response) throws IOException, InterruptedException;
  }

  /** Streams from the journal's cursor, reconnecting with back-off; returns only on a fatal error. */
  private <R> int follow(Journal journal, String rpc, LongFunction<Iterator<R>> open, Handler<R> handler) {
    long backoffMillis = 500;
    try {
      while (true) {
        System.err.printf("%s: streaming after sequence %d%n", journal.name, journal.cursor);
        try {
          // No deadline: the stream is meant to stay open.
          Iterator<R> stream = open.apply(journal.cursor);
          while (stream.hasNext()) {
            R response = stream.next();
            backoffMillis = 500;
            long hwm = handler.handle(response);
            if (hwm >= 0) {
              System.err.printf(
                  "%s: heartbeat: high_water_mark=%d cursor=%d (%s)%n",
                  journal.name, hwm, journal.cursor, hwm <= journal.cursor ? "up to date" : "behind");
            }
          }
          System.err.printf("%s: stream ended by the server; reconnecting%n", journal.name);
        } catch (StatusRuntimeException e) {
          Status.Code code = e.getStatus().getCode();
          if (!RECONNECT.contains(code)) {
            System.err.printf("%s failed: %s: %s%n", rpc, code, e.getStatus().getDescription());
            return 2;
          }
          System.err.printf("%s: stream broke (%s); reconnecting in %d ms%n", journal.name, code, backoffMillis);
        }
        Thread.sleep(backoffMillis);
        backoffMillis = Math.min(backoffMillis * 2, 10_000);
      }
    } catch (IOException | RuntimeException e) {
      System.err.printf("%s: processing after sequence %d: %s%n", journal.name, journal.cursor, e);
      return 1;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return 1;
    }
  }

  private long handleCharge(StreamChargesResponse response) throws IOException, InterruptedException {
    switch (response.getEventCase()) {
      case CHARGE:
        processCharge(response.getCharge());
        return -1;
      case HEARTBEAT:
        return response.getHeartbeat().getHighWaterMark();
      default:
        return -1;
    }
  }

  private long handleCreditEvent(StreamCreditEventsResponse response)
      throws IOException, InterruptedException {
    switch (response.getEventCase()) {
      case CREDIT_EVENT:
        processCreditEvent(response.getCreditEvent());
        return -1;
      case HEARTBEAT:
        return response.getHeartbeat().getHighWaterMark();
      default:
        return -1;
    }
  }

  private void processCharge(Charge charge) throws IOException, InterruptedException {
    if (charges.seen(charge.getSequence())) {
      return;
    }
    BigDecimal amount = Gateway.money(charge.getAmount()); // exact; never double
    exposure.merge(charge.getCustomerId() + " " + charge.getCurrency(), amount, BigDecimal::add);
    if (delayMillis > 0) {
      Thread.sleep(delayMillis); // stands in for real work
    }
    charges.record(
        charge.getSequence(),
        String.join(
            "\t", Long.toString(charge.getSequence()), charge.getCustomerId(), charge.getKind().name(),
            amount.toPlainString(), charge.getCurrency()));
  }

  private void processCreditEvent(CreditEvent event) throws IOException, InterruptedException {
    if (creditEvents.seen(event.getSequence())) {
      return;
    }
    BigDecimal exposure = Gateway.money(event.getExposure()); // exact; never double
    BigDecimal limit = Gateway.money(event.getCreditLimit());
    // Act on what the policy asks for (here: say it; in a BSS: open a ticket, call provisioning).
    if (event.getAction() == CreditAction.SUSPENSION_REQUIRED) {
      System.err.printf(
          "credit-events: SUSPEND %s: exposure %s reached the limit %s %s%n",
          event.getCustomerId(), exposure.toPlainString(), limit.toPlainString(), event.getCurrency());
    } else if (event.getAction() == CreditAction.RESUMPTION_ALLOWED) {
      System.err.printf(
          "credit-events: RESUME %s: exposure %s is below the limit %s %s%n",
          event.getCustomerId(), exposure.toPlainString(), limit.toPlainString(), event.getCurrency());
    }
    if (delayMillis > 0) {
      Thread.sleep(delayMillis); // stands in for real work
    }
    creditEvents.record(
        event.getSequence(),
        String.join(
            "\t", Long.toString(event.getSequence()), event.getCustomerId(),
            Integer.toString(event.getThresholdPercent()), event.getDirection().name(),
            exposure.toPlainString(), limit.toPlainString(), event.getCurrency(),
            event.getPolicy().name(), event.getAction().name(),
            Long.toString(event.getLedgerSequence())));
  }

  /** One stream's durable progress: the processed-items file and the cursor file. */
  private static final class Journal {
    final String name;
    private final Path cursorFile;
    private final FileChannel out;
    /** Read and written by this stream's thread only. */
    long cursor;

    Journal(String name, Path stateDir) throws IOException {
      this.name = name;
      this.cursorFile = stateDir.resolve(name + ".cursor");
      Path outputFile = stateDir.resolve(name + ".processed");
      this.cursor = readCursor(cursorFile);
      long recovered = lastProcessed(outputFile);
      if (recovered > cursor) {
        // Processed but the cursor was not saved: do not process it again.
        System.err.printf("%s: recovering cursor %d -> %d from the output file%n", name, cursor, recovered);
        cursor = recovered;
        writeCursor(cursorFile, cursor);
      }
      this.out =
          FileChannel.open(
              outputFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
    }

    /** True when this sequence was processed already (at-least-once delivery). */
    boolean seen(long sequence) {
      return sequence <= cursor;
    }

    /** Appends the item's line, makes it durable, then moves the cursor. */
    void record(long sequence, String line) throws IOException {
      ByteBuffer bytes = ByteBuffer.wrap((line + "\n").getBytes(StandardCharsets.UTF_8));
      while (bytes.hasRemaining()) {
        out.write(bytes);
      }
      out.force(true);
      cursor = sequence;
      writeCursor(cursorFile, cursor);
    }
  }

  private static long readCursor(Path path) throws IOException {
    try {
      String text = Files.readString(path, StandardCharsets.US_ASCII).trim();
      return text.isEmpty() ? 0 : Long.parseLong(text);
    } catch (NoSuchFileException e) {
      return 0;
    }
  }

  /** Replaces the cursor file atomically: a reader sees the old cursor or the new one. */
  private static void writeCursor(Path path, long sequence) throws IOException {
    Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
    try (FileChannel file =
        FileChannel.open(
            tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.TRUNCATE_EXISTING)) {
      file.write(ByteBuffer.wrap((sequence + "\n").getBytes(StandardCharsets.US_ASCII)));
      file.force(true);
    }
    Files.move(tmp, path, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    Path dir = path.toAbsolutePath().getParent();
    try (FileChannel directory = FileChannel.open(dir, StandardOpenOption.READ)) {
      directory.force(true); // makes the rename durable (Linux)
    }
  }

  /** The last sequence in the output file; drops a torn last line left by a kill mid-write. */
  private static long lastProcessed(Path path) throws IOException {
    byte[] data;
    try {
      data = Files.readAllBytes(path);
    } catch (NoSuchFileException e) {
      return 0;
    }
    int end = data.length;
    while (end > 0 && data[end - 1] != '\n') {
      end--;
    }
    if (end != data.length) {
      try (FileChannel file = FileChannel.open(path, StandardOpenOption.WRITE)) {
        file.truncate(end);
        file.force(true);
      }
    }
    if (end == 0) {
      return 0;
    }
    int start = end - 1;
    while (start > 0 && data[start - 1] != '\n') {
      start--;
    }
    String last = new String(data, start, end - 1 - start, StandardCharsets.UTF_8);
    return Long.parseLong(last.split("\t", 2)[0]);
  }
}
