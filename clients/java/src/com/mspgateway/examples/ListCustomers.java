package com.mspgateway.examples;

import com.mspgateway.v1.Customer;
import com.mspgateway.v1.CustomerServiceGrpc;
import com.mspgateway.v1.ListCustomersRequest;
import com.mspgateway.v1.ListCustomersResponse;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.math.BigDecimal;
import java.util.Map;
import java.util.StringJoiner;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

/**
 * Lists every customer, following next_page_token across pages, and totals their credit limits
 * exactly (BigDecimal).
 *
 * <pre>
 * MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… java com.mspgateway.examples.ListCustomers --page-size 50
 * </pre>
 *
 * Prints one line per customer, then {@code total=<n> pages=<p> credit_limits=<CUR>:<sum>[,…]}.
 */
public final class ListCustomers {
  public static void main(String[] args) throws InterruptedException {
    int pageSize = Integer.parseInt(Gateway.arg(args, "--page-size", "100"));
    long deadlineMillis = Long.parseLong(Gateway.arg(args, "--deadline-ms", "10000"));

    ManagedChannel channel = Gateway.channel();
    try {
      CustomerServiceGrpc.CustomerServiceBlockingStub stub =
          CustomerServiceGrpc.newBlockingStub(channel).withInterceptors(Gateway.bearer());
      int total = 0;
      int pages = 0;
      Map<String, BigDecimal> sums = new TreeMap<>();
      String pageToken = "";
      do {
        ListCustomersResponse page;
        try {
          page =
              stub.withDeadlineAfter(deadlineMillis, TimeUnit.MILLISECONDS)
                  .listCustomers(
                      ListCustomersRequest.newBuilder()
                          .setPageSize(pageSize)
                          .setPageToken(pageToken)
                          .build());
        } catch (StatusRuntimeException e) {
          System.err.printf(
              "ListCustomers failed: %s: %s%n", e.getStatus().getCode(), e.getStatus().getDescription());
          System.exit(1);
          return;
        }
        pages++;
        for (Customer customer : page.getCustomersList()) {
          BigDecimal limit = Gateway.money(customer.getCreditLimit());
          sums.merge(customer.getBillingCurrency(), limit, BigDecimal::add);
          total++;
          System.out.printf(
              "%s\t%s\t%s\t%s %s%n", customer.getId(), customer.getExternalRef(),
              customer.getDisplayName(), limit.toPlainString(), customer.getBillingCurrency());
        }
        pageToken = page.getNextPageToken();
      } while (!pageToken.isEmpty());
      StringJoiner joined = new StringJoiner(",");
      sums.forEach((currency, sum) -> joined.add(currency + ":" + sum.toPlainString()));
      System.out.printf("total=%d pages=%d credit_limits=%s%n", total, pages, joined);
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
