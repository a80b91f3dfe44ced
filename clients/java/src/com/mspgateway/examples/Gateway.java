package com.mspgateway.examples;

import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.stub.MetadataUtils;
import java.math.BigDecimal;

/** What every example shares: the channel, the bearer key, exact money. */
final class Gateway {
  static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private Gateway() {}

  /** MSP_GATEWAY_ADDRESS, default 127.0.0.1:50051. Use .useTransportSecurity() when the gateway has TLS. */
  static ManagedChannel channel() {
    String address = System.getenv().getOrDefault("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051");
    return ManagedChannelBuilder.forTarget(address).usePlaintext().build();
  }

  /** Adds `authorization: Bearer <MSP_GATEWAY_API_KEY>` to every call of a stub. */
  static ClientInterceptor bearer() {
    String key = System.getenv("MSP_GATEWAY_API_KEY");
    if (key == null || key.isEmpty()) {
      throw new IllegalStateException("set MSP_GATEWAY_API_KEY to a key printed by `msp-gateway tenant create`");
    }
    Metadata headers = new Metadata();
    headers.put(AUTHORIZATION, "Bearer " + key);
    return MetadataUtils.newAttachHeadersInterceptor(headers);
  }

  /** Money arrives as an exact decimal string: BigDecimal, never double. */
  static BigDecimal money(String amount) {
    return new BigDecimal(amount);
  }

  /** The value of `--name value` in args, or the fallback. */
  static String arg(String[] args, String name, String fallback) {
    for (int i = 0; i + 1 < args.length; i++) {
      if (args[i].equals(name)) {
        return args[i + 1];
      }
    }
    if (fallback == null) {
      throw new IllegalArgumentException(name + " is required");
    }
    return fallback;
  }
}
