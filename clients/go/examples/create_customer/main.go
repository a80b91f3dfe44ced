// Command create_customer creates a customer idempotently: every attempt carries the same
// request_id, so a retry after a timeout or UNAVAILABLE returns the customer the first attempt
// created instead of a second one.
//
//	MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… create_customer \
//	  -external-ref ISP-1001 -display-name "Acme Mining" -credit-limit 150000.00 [-request-id bss-7f3a]
//
// Prints `customer <id> external_ref=<ref> credit_limit=<amount> <currency> attempts=<n>`.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/mspgateway/msp-gateway/clients/go/gen/msp/gateway/v1"
)

func main() {
	address := flag.String("address", envOr("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"), "gateway host:port")
	externalRef := flag.String("external-ref", "", "the ISP's id for the customer (required)")
	displayName := flag.String("display-name", "", "the customer's name (required)")
	currency := flag.String("currency", "ZAR", "ISO 4217 billing currency")
	creditLimit := flag.String("credit-limit", "0", "exact decimal credit limit")
	// Choose the id once per business operation and keep it across retries.
	requestID := flag.String("request-id", "bss-"+randomID(), "idempotency key")
	deadline := flag.Duration("deadline", 5*time.Second, "deadline per attempt")
	maxAttempts := flag.Int("max-attempts", 8, "attempts before giving up")
	flag.Parse()
	if *externalRef == "" || *displayName == "" {
		fatalf("-external-ref and -display-name are required")
	}
	if _, _, err := parseDecimal(*creditLimit); err != nil {
		fatalf("-credit-limit: %v", err)
	}

	// grpc.WithTransportCredentials(credentials.NewTLS(...)) when the gateway has TLS.
	conn, err := grpc.Dial(*address, grpc.WithInsecure())
	if err != nil {
		fatalf("dial: %v", err)
	}
	defer conn.Close()
	client := gatewayv1.NewCustomerServiceClient(conn)
	// Every call carries `authorization: Bearer <key>`.
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer "+os.Getenv("MSP_GATEWAY_API_KEY"))

	request := &gatewayv1.CreateCustomerRequest{
		RequestId:       *requestID,
		ExternalRef:     *externalRef,
		DisplayName:     *displayName,
		BillingCurrency: *currency,
		BillingCycle:    gatewayv1.BillingCycle_MONTHLY,
		CreditLimit:     *creditLimit, // an exact decimal string, never a float
		Enrollments:     []*gatewayv1.EnrollmentRequest{{Vendor: gatewayv1.Vendor_SIMULATOR}},
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		callCtx, cancel := context.WithTimeout(ctx, *deadline)
		customer, err := client.CreateCustomer(callCtx, request)
		cancel()
		if err != nil {
			code := status.Code(err)
			// The call may or may not have been applied: retry with the same request_id.
			if (code == codes.Unavailable || code == codes.DeadlineExceeded) && attempt < *maxAttempts {
				fmt.Fprintf(os.Stderr, "attempt %d: %v; retrying with request_id %s in %v\n",
					attempt, code, *requestID, backoff)
				time.Sleep(backoff)
				if backoff *= 2; backoff > 5*time.Second {
					backoff = 5 * time.Second
				}
				continue
			}
			fatalf("CreateCustomer failed: %v: %s", code, status.Convert(err).Message())
		}
		limit, scale, err := parseDecimal(customer.GetCreditLimit())
		if err != nil {
			fatalf("credit_limit %q: %v", customer.GetCreditLimit(), err)
		}
		fmt.Printf("customer %s external_ref=%s credit_limit=%s %s attempts=%d\n", customer.GetId(),
			customer.GetExternalRef(), limit.FloatString(scale), customer.GetBillingCurrency(), attempt)
		return
	}
}

// parseDecimal reads an exact decimal string ("150000.10", "-0.0000000123") into a big.Rat and
// its number of fractional digits (to print it back at the same scale). Never a float64.
func parseDecimal(s string) (*big.Rat, int, error) {
	body := strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	intPart, frac, _ := strings.Cut(body, ".")
	if body == "" || strings.Trim(intPart+frac, "0123456789") != "" || intPart+frac == "" {
		return nil, 0, fmt.Errorf("not a decimal number: %q", s)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, 0, fmt.Errorf("not a decimal number: %q", s)
	}
	return r, len(frac), nil
}

func randomID() string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
