package com.mspgateway.examples;

import com.mspgateway.v1.Charge;
import com.mspgateway.v1.ChargeServiceGrpc;
import com.mspgateway.v1.StreamChargesRequest;
import com.mspgateway.v1.StreamChargesResponse;
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
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;

/**
 * A credit-control consumer of ChargeService.StreamCharges that survives being killed.
 *
 * <p>State lives in two files: {@code --output-file}, the processed charges, one line each, appended
 * and forced to disk before the cursor moves (it stands in for whatever your processing writes: a
 * ledger table, a queue, ...); and {@code --cursor-file}, the last sequence processed, replaced
 * atomically (write a temp file, force, rename, force the directory).
 *
 * <p>On start it reads the cursor, and if the output shows a charge processed after it (the process
 * died between the two writes) it advances the cursor to that charge first. It then streams from
 * after_sequence=cursor; delivery is at-least-once, so a charge at or below the cursor is skipped.
 * Each sequence is processed exactly once across any number of kills and restarts. On a retryable
 * error or the end of the stream it reconnects from the cursor with back-off.
 *
 * <pre>
 * MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… java com.mspgateway.examples.CreditConsumer \
 *   --cursor-file state/charges.cursor --output-file state/charges.processed
 * </pre>
 *
 * The same pattern serves any other sequenced stream (e.g. credit events): one cursor file each.
 */
public final class CreditConsumer {
  private static final Set<Status.Code> RECONNECT =
      EnumSet.of(
          Status.Code.UNAVAILABLE, Status.Code.DEADLINE_EXCEEDED, Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.ABORTED, Status.Code.INTERNAL, Status.Code.UNKNOWN);

  private final Path cursorFile;
  private final FileChannel out;
  private final long delayMillis;
  private final Map<String, BigDecimal> exposure = new HashMap<>();
  private long cursor;

  private CreditConsumer(Path cursorFile, Path outputFile, long delayMillis) throws IOException {
    this.cursorFile = cursorFile;
    this.delayMillis = delayMillis;
    this.cursor = readCursor(cursorFile);
    long recovered = lastProcessed(outputFile);
    if (recovered > cursor) {
      // Processed but the cursor was not saved: do not process it again.
      System.err.printf("recovering cursor %d -> %d from the output file%n", cursor, recovered);
      cursor = recovered;
      writeCursor(cursorFile, cursor);
    }
    this.out =
        FileChannel.open(
            outputFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
  }

  public static void main(String[] args) throws Exception {
    CreditConsumer consumer =
        new CreditConsumer(
            Path.of(Gateway.arg(args, "--cursor-file", null)),
            Path.of(Gateway.arg(args, "--output-file", null)),
            Long.parseLong(Gateway.arg(args, "--process-delay-ms", "0")));
    ManagedChannel channel = Gateway.channel();
    try {
      System.exit(consumer.run(ChargeServiceGrpc.newBlockingStub(channel).withInterceptors(Gateway.bearer())));
    } finally {
      channel.shutdownNow();
    }
  }

  private int run(ChargeServiceGrpc.ChargeServiceBlockingStub stub) throws Exception {
    long backoffMillis = 500;
    while (true) {
      System.err.printf("streaming charges after sequence %d%n", cursor);
      try {
        // No deadline: the stream is meant to stay open.
        Iterator<StreamChargesResponse> stream =
            stub.streamCharges(StreamChargesRequest.newBuilder().setAfterSequence(cursor).build());
        while (stream.hasNext()) {
          StreamChargesResponse response = stream.next();
          backoffMillis = 500;
          switch (response.getEventCase()) {
            case CHARGE:
              process(response.getCharge());
              break;
            case HEARTBEAT:
              long hwm = response.getHeartbeat().getHighWaterMark();
              System.err.printf(
                  "heartbeat: high_water_mark=%d cursor=%d (%s)%n",
                  hwm, cursor, hwm <= cursor ? "up to date" : "behind");
              break;
            default:
              break;
          }
        }
        System.err.println("stream ended by the server; reconnecting");
      } catch (StatusRuntimeException e) {
        Status.Code code = e.getStatus().getCode();
        if (!RECONNECT.contains(code)) {
          System.err.printf("StreamCharges failed: %s: %s%n", code, e.getStatus().getDescription());
          return 2;
        }
        System.err.printf("stream broke (%s); reconnecting in %d ms%n", code, backoffMillis);
      }
      Thread.sleep(backoffMillis);
      backoffMillis = Math.min(backoffMillis * 2, 10_000);
    }
  }

  private void process(Charge charge) throws IOException, InterruptedException {
    if (charge.getSequence() <= cursor) {
      return; // already processed (at-least-once delivery after a reconnect)
    }
    BigDecimal amount = Gateway.money(charge.getAmount()); // exact; never double
    exposure.merge(charge.getCustomerId() + " " + charge.getCurrency(), amount, BigDecimal::add);
    if (delayMillis > 0) {
      Thread.sleep(delayMillis); // stands in for real work
    }
    String line =
        String.format(
            "%d\t%s\t%s\t%s\t%s%n", charge.getSequence(), charge.getCustomerId(), charge.getKind(),
            amount.toPlainString(), charge.getCurrency());
    ByteBuffer bytes = ByteBuffer.wrap(line.getBytes(StandardCharsets.UTF_8));
    while (bytes.hasRemaining()) {
      out.write(bytes);
    }
    out.force(true);
    cursor = charge.getSequence();
    writeCursor(cursorFile, cursor);
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
