// Command credit_consumer is a credit-control consumer of ChargeService.StreamCharges that
// survives being killed.
//
// State lives in two files:
//   - -output-file: the processed charges, one line each, appended and fsynced before the cursor
//     moves (it stands in for whatever your processing writes: a ledger table, a queue, ...);
//   - -cursor-file: the last sequence processed, replaced atomically (write a temp file, fsync,
//     rename, fsync the directory).
//
// On start it reads the cursor, and if the output shows a charge processed after it (the process
// died between the two writes) it advances the cursor to that charge first. It then streams from
// after_sequence=cursor; delivery is at-least-once, so a charge at or below the cursor is skipped.
// Each sequence is processed exactly once across any number of kills and restarts. On a retryable
// error or the end of the stream it reconnects from the cursor with back-off.
//
//	MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… credit_consumer \
//	  -cursor-file state/charges.cursor -output-file state/charges.processed
//
// The same pattern serves any other sequenced stream (e.g. credit events): one cursor file each.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatewayv1 "mspgateway/gen/msp/gateway/v1"
)

type consumer struct {
	cursorFile string
	out        *os.File
	cursor     int64
	delay      time.Duration
	exposure   map[string]*big.Rat // customer and currency -> exact sum of charges seen
}

func main() {
	address := flag.String("address", envOr("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"), "gateway host:port")
	cursorFile := flag.String("cursor-file", "", "where the last processed sequence is kept (required)")
	outputFile := flag.String("output-file", "", "where processed charges are appended (required)")
	delayMillis := flag.Int("process-delay-ms", 0, "simulated work per charge, in milliseconds")
	flag.Parse()
	if *cursorFile == "" || *outputFile == "" {
		fatalf("-cursor-file and -output-file are required")
	}

	c, err := openConsumer(*cursorFile, *outputFile, time.Duration(*delayMillis)*time.Millisecond)
	if err != nil {
		fatalf("%v", err)
	}
	conn, err := grpc.Dial(*address, grpc.WithInsecure(),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}))
	if err != nil {
		fatalf("dial: %v", err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer "+os.Getenv("MSP_GATEWAY_API_KEY"))
	os.Exit(c.run(ctx, gatewayv1.NewChargeServiceClient(conn)))
}

func openConsumer(cursorFile, outputFile string, delay time.Duration) (*consumer, error) {
	cursor, err := readCursor(cursorFile)
	if err != nil {
		return nil, err
	}
	recovered, err := lastProcessed(outputFile)
	if err != nil {
		return nil, err
	}
	if recovered > cursor {
		// Processed but the cursor was not saved: do not process it again.
		fmt.Fprintf(os.Stderr, "recovering cursor %d -> %d from the output file\n", cursor, recovered)
		cursor = recovered
		if err := writeCursor(cursorFile, cursor); err != nil {
			return nil, err
		}
	}
	out, err := os.OpenFile(outputFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &consumer{cursorFile: cursorFile, out: out, cursor: cursor, delay: delay,
		exposure: map[string]*big.Rat{}}, nil
}

func (c *consumer) run(ctx context.Context, client gatewayv1.ChargeServiceClient) int {
	backoff := 500 * time.Millisecond
	for {
		fmt.Fprintf(os.Stderr, "streaming charges after sequence %d\n", c.cursor)
		// No deadline: the stream is meant to stay open; keepalives detect a dead connection.
		stream, err := client.StreamCharges(ctx, &gatewayv1.StreamChargesRequest{AfterSequence: c.cursor})
		for err == nil {
			var response *gatewayv1.StreamChargesResponse
			if response, err = stream.Recv(); err != nil {
				break
			}
			backoff = 500 * time.Millisecond
			switch event := response.GetEvent().(type) {
			case *gatewayv1.StreamChargesResponse_Charge:
				if perr := c.process(event.Charge); perr != nil {
					fmt.Fprintf(os.Stderr, "processing sequence %d: %v\n", event.Charge.GetSequence(), perr)
					return 1
				}
			case *gatewayv1.StreamChargesResponse_Heartbeat:
				hwm := event.Heartbeat.GetHighWaterMark()
				state := "behind"
				if hwm <= c.cursor {
					state = "up to date"
				}
				fmt.Fprintf(os.Stderr, "heartbeat: high_water_mark=%d cursor=%d (%s)\n", hwm, c.cursor, state)
			}
		}
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "stream ended by the server; reconnecting")
		} else {
			switch code := status.Code(err); code {
			case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
				codes.Internal, codes.Unknown:
				fmt.Fprintf(os.Stderr, "stream broke (%v); reconnecting in %v\n", code, backoff)
			default:
				fmt.Fprintf(os.Stderr, "StreamCharges failed: %v: %s\n", code, status.Convert(err).Message())
				return 2
			}
		}
		time.Sleep(backoff)
		if backoff *= 2; backoff > 10*time.Second {
			backoff = 10 * time.Second
		}
	}
}

func (c *consumer) process(charge *gatewayv1.Charge) error {
	if charge.GetSequence() <= c.cursor {
		return nil // already processed (at-least-once delivery after a reconnect)
	}
	amount, ok := new(big.Rat).SetString(charge.GetAmount()) // exact; never float64
	if !ok {
		return fmt.Errorf("amount %q is not a decimal", charge.GetAmount())
	}
	key := charge.GetCustomerId() + " " + charge.GetCurrency()
	if c.exposure[key] == nil {
		c.exposure[key] = new(big.Rat)
	}
	c.exposure[key].Add(c.exposure[key], amount)
	time.Sleep(c.delay) // stands in for real work
	line := fmt.Sprintf("%d\t%s\t%s\t%s\t%s\n", charge.GetSequence(), charge.GetCustomerId(),
		charge.GetKind(), charge.GetAmount(), charge.GetCurrency())
	if _, err := c.out.Write([]byte(line)); err != nil { // one write: the line is whole or absent
		return err
	}
	if err := c.out.Sync(); err != nil {
		return err
	}
	c.cursor = charge.GetSequence()
	return writeCursor(c.cursorFile, c.cursor)
}

func readCursor(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		return 0, nil
	}
	return strconv.ParseInt(text, 10, 64)
}

// writeCursor replaces the cursor file atomically: a reader sees the old cursor or the new one.
func writeCursor(path string, sequence int64) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(f, "%d\n", sequence); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}

// lastProcessed returns the last sequence in the output file, dropping a torn last line left by a
// kill in the middle of a write.
func lastProcessed(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	if end != len(data) {
		if err := os.Truncate(path, int64(end)); err != nil {
			return 0, err
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(data[:end]), "\n"), "\n")
	last := lines[len(lines)-1]
	if last == "" {
		return 0, nil
	}
	field, _, _ := strings.Cut(last, "\t")
	return strconv.ParseInt(field, 10, 64)
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
