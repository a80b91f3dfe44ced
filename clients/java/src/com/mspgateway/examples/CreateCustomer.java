package com.mspgateway.examples;

import com.mspgateway.v1.BillingCycle;
import com.mspgateway.v1.CreateCustomerRequest;
import com.mspgateway.v1.Customer;
import com.mspgateway.v1.CustomerServiceGrpc;
import com.mspgateway.v1.EnrollmentRequest;
import com.mspgateway.v1.Vendor;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.math.BigDecimal;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Creates a customer idempotently: every attempt carries the same request_id, so a retry after a
 * timeout or UNAVAILABLE returns the customer the first attempt created instead of a second one.
 *
 * <pre>
 * MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… java com.mspgateway.examples.CreateCustomer \
 *   --external-ref ISP-1001 --display-name "Acme Mining" --credit-limit 150000.00 [--request-id bss-7f3a]
 * </pre>
 *
 * Prints {@code customer <id> external_ref=<ref> credit_limit=<amount> <currency> attempts=<n>}.
 */
public final class CreateCustomer {
  public static void main(String[] args) throws InterruptedException {
    String externalRef = Gateway.arg(args, "--external-ref", null);
    String displayName = Gateway.arg(args, "--display-name", null);
    String currency = Gateway.arg(args, "--currency", "ZAR");
    BigDecimal creditLimit = Gateway.money(Gateway.arg(args, "--credit-limit", "0"));
    // Choose the id once per business operation and keep it across retries.
    String requestId = Gateway.arg(args, "--request-id", "bss-" + UUID.randomUUID());
    long deadlineMillis = Long.parseLong(Gateway.arg(args, "--deadline-ms", "5000"));
    int maxAttempts = Integer.parseInt(Gateway.arg(args, "--max-attempts", "8"));

    CreateCustomerRequest request =
        CreateCustomerRequest.newBuilder()
            .setRequestId(requestId)
            .setExternalRef(externalRef)
            .setDisplayName(displayName)
            .setBillingCurrency(currency)
            .setBillingCycle(BillingCycle.MONTHLY)
            .setCreditLimit(creditLimit.toPlainString()) // an exact decimal string, never a double
            .addEnrollments(EnrollmentRequest.newBuilder().setVendor(Vendor.SIMULATOR))
            .build();

    ManagedChannel channel = Gateway.channel();
    try {
      CustomerServiceGrpc.CustomerServiceBlockingStub stub =
          CustomerServiceGrpc.newBlockingStub(channel).withInterceptors(Gateway.bearer());
      long backoffMillis = 200;
      for (int attempt = 1; ; attempt++) {
        try {
          // A deadline per attempt: withDeadlineAfter starts counting now.
          Customer customer =
              stub.withDeadlineAfter(deadlineMillis, TimeUnit.MILLISECONDS).createCustomer(request);
          BigDecimal limit = Gateway.money(customer.getCreditLimit());
          System.out.printf(
              "customer %s external_ref=%s credit_limit=%s %s attempts=%d%n",
              customer.getId(), customer.getExternalRef(), limit.toPlainString(),
              customer.getBillingCurrency(), attempt);
          return;
        } catch (StatusRuntimeException e) {
          Status.Code code = e.getStatus().getCode();
          // The call may or may not have been applied: retry with the same request_id.
          boolean retryable = code == Status.Code.UNAVAILABLE || code == Status.Code.DEADLINE_EXCEEDED;
          if (!retryable || attempt >= maxAttempts) {
            System.err.printf("CreateCustomer failed: %s: %s%n", code, e.getStatus().getDescription());
            System.exit(1);
          }
          System.err.printf(
              "attempt %d: %s; retrying with request_id %s in %d ms%n",
              attempt, code, requestId, backoffMillis);
          Thread.sleep(backoffMillis);
          backoffMillis = Math.min(backoffMillis * 2, 5000);
        }
      }
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
