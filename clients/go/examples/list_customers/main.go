// Command list_customers lists every customer, following next_page_token across pages, and totals
// their credit limits exactly (math/big.Rat, never float64).
//
//	MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… list_customers -page-size 50
//
// Prints one line per customer, then `total=<n> pages=<p> credit_limits=<CUR>:<sum>[,…]`.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/big"
	"os"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/mspgateway/msp-gateway/clients/go/gen/msp/gateway/v1"
)

// sum is an exact running total and the largest scale seen, to print it without rounding.
type sum struct {
	value *big.Rat
	scale int
}

func main() {
	address := flag.String("address", envOr("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"), "gateway host:port")
	pageSize := flag.Int("page-size", 100, "customers per page (1 to 1000)")
	deadline := flag.Duration("deadline", 10*time.Second, "deadline per page")
	flag.Parse()

	conn, err := grpc.Dial(*address, grpc.WithInsecure())
	if err != nil {
		fatalf("dial: %v", err)
	}
	defer conn.Close()
	client := gatewayv1.NewCustomerServiceClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer "+os.Getenv("MSP_GATEWAY_API_KEY"))

	total, pages := 0, 0
	sums := map[string]*sum{}
	pageToken := ""
	for {
		callCtx, cancel := context.WithTimeout(ctx, *deadline)
		page, err := client.ListCustomers(callCtx, &gatewayv1.ListCustomersRequest{
			PageSize: int32(*pageSize), PageToken: pageToken,
		})
		cancel()
		if err != nil {
			fatalf("ListCustomers failed: %v: %s", status.Code(err), status.Convert(err).Message())
		}
		pages++
		for _, c := range page.GetCustomers() {
			limit, scale, err := parseDecimal(c.GetCreditLimit())
			if err != nil {
				fatalf("customer %s credit_limit: %v", c.GetId(), err)
			}
			s := sums[c.GetBillingCurrency()]
			if s == nil {
				s = &sum{value: new(big.Rat)}
				sums[c.GetBillingCurrency()] = s
			}
			s.value.Add(s.value, limit)
			if scale > s.scale {
				s.scale = scale
			}
			total++
			fmt.Printf("%s\t%s\t%s\t%s %s\n", c.GetId(), c.GetExternalRef(), c.GetDisplayName(),
				limit.FloatString(scale), c.GetBillingCurrency())
		}
		if page.GetNextPageToken() == "" {
			break
		}
		pageToken = page.GetNextPageToken()
	}
	currencies := make([]string, 0, len(sums))
	for cur := range sums {
		currencies = append(currencies, cur)
	}
	sort.Strings(currencies)
	parts := make([]string, 0, len(currencies))
	for _, cur := range currencies {
		parts = append(parts, cur+":"+sums[cur].value.FloatString(sums[cur].scale))
	}
	fmt.Printf("total=%d pages=%d credit_limits=%s\n", total, pages, strings.Join(parts, ","))
}

// parseDecimal reads an exact decimal string into a big.Rat and its number of fractional digits.
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
