// Command credit_consumer is a credit-control consumer of charges and credit events that survives
// being killed.
//
// It follows two streams at once, each in its own goroutine with its own cursor:
//   - ChargeService.StreamCharges: the charge ledger (the exposure moving);
//   - CreditControlService.StreamCreditEvents: threshold crossings, with what the policy asks for
//     (SUSPENSION_REQUIRED, RESUMPTION_ALLOWED).
//
// Each stream's state lives in two files in -state-dir (charges.*, credit-events.*):
//   - *.processed: what was processed, one line per item, appended and fsynced before the cursor
//     moves (it stands in for whatever your processing writes: a ledger table, a queue, ...);
//   - *.cursor: the last sequence processed, replaced atomically (write a temp file, fsync,
//     rename, fsync the directory).
//
// On start it reads each cursor, and if the output shows an item processed after it (the process
// died between the two writes) it advances the cursor to that item first. It then streams from
// after_sequence=cursor; delivery is at-least-once, so an item at or below the cursor is skipped.
// Each sequence of each stream is processed exactly once across any number of kills and restarts.
// On a retryable error or the end of a stream it reconnects from that stream's cursor with
// back-off; the two streams are independent (their sequences are separate counters).
//
//	MSP_GATEWAY_ADDRESS=127.0.0.1:50051 MSP_GATEWAY_API_KEY=mspgw.… credit_consumer -state-dir state/
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

	gatewayv1 "github.com/mspgateway/msp-gateway/clients/go/gen/msp/gateway/v1"
)

// journal is one stream's durable progress: the processed-items file and the cursor file.
// Each journal is used by one goroutine only.
type journal struct {
	name       string
	cursorFile string
	out        *os.File
	cursor     int64
}

type consumer struct {
	delay        time.Duration
	charges      *journal
	creditEvents *journal
	exposure     map[string]*big.Rat // seen in this run only: the gateway keeps the real exposure
}

func main() {
	address := flag.String("address", envOr("MSP_GATEWAY_ADDRESS", "127.0.0.1:50051"), "gateway host:port")
	stateDir := flag.String("state-dir", "", "where the cursors and outputs are kept (required)")
	delayMillis := flag.Int("process-delay-ms", 0, "simulated work per item, in milliseconds")
	flag.Parse()
	if *stateDir == "" {
		fatalf("-state-dir is required")
	}
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		fatalf("%v", err)
	}
	c := &consumer{delay: time.Duration(*delayMillis) * time.Millisecond, exposure: map[string]*big.Rat{}}
	var err error
	if c.charges, err = openJournal("charges", *stateDir); err != nil {
		fatalf("%v", err)
	}
	if c.creditEvents, err = openJournal("credit-events", *stateDir); err != nil {
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
	charges := gatewayv1.NewChargeServiceClient(conn)
	credit := gatewayv1.NewCreditControlServiceClient(conn)

	// Each stream in its own goroutine; the first to fail for good ends the process.
	done := make(chan int, 2)
	go func() {
		done <- follow(ctx, c.charges, "StreamCharges",
			func(ctx context.Context, cursor int64) (receiver[*gatewayv1.StreamChargesResponse], error) {
				return charges.StreamCharges(ctx, &gatewayv1.StreamChargesRequest{AfterSequence: cursor})
			}, c.handleCharge)
	}()
	go func() {
		done <- follow(ctx, c.creditEvents, "StreamCreditEvents",
			func(ctx context.Context, cursor int64) (receiver[*gatewayv1.StreamCreditEventsResponse], error) {
				return credit.StreamCreditEvents(ctx, &gatewayv1.StreamCreditEventsRequest{AfterSequence: cursor})
			}, c.handleCreditEvent)
	}()
	os.Exit(<-done)
}

// receiver is what both generated stream clients have in common.
type receiver[T any] interface {
	Recv() (T, error)
}

// follow streams from the journal's cursor, reconnecting with back-off; it returns only on a
// fatal error. handle processes one response and returns a heartbeat's high-water mark (or -1).
func follow[T any](ctx context.Context, j *journal, rpc string,
	open func(context.Context, int64) (receiver[T], error), handle func(T) (int64, error)) int {
	backoff := 500 * time.Millisecond
	for {
		fmt.Fprintf(os.Stderr, "%s: streaming after sequence %d\n", j.name, j.cursor)
		// No deadline: the stream is meant to stay open; keepalives detect a dead connection.
		stream, err := open(ctx, j.cursor)
		for err == nil {
			var response T
			if response, err = stream.Recv(); err != nil {
				break
			}
			backoff = 500 * time.Millisecond
			hwm, perr := handle(response)
			if perr != nil {
				fmt.Fprintf(os.Stderr, "%s: processing after sequence %d: %v\n", j.name, j.cursor, perr)
				return 1
			}
			if hwm >= 0 {
				state := "behind"
				if hwm <= j.cursor {
					state = "up to date"
				}
				fmt.Fprintf(os.Stderr, "%s: heartbeat: high_water_mark=%d cursor=%d (%s)\n", j.name, hwm, j.cursor, state)
			}
		}
		if errors.Is(err, io.EOF) {
			fmt.Fprintf(os.Stderr, "%s: stream ended by the server; reconnecting\n", j.name)
		} else {
			switch code := status.Code(err); code {
			case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted,
				codes.Internal, codes.Unknown:
				fmt.Fprintf(os.Stderr, "%s: stream broke (%v); reconnecting in %v\n", j.name, code, backoff)
			default:
				fmt.Fprintf(os.Stderr, "%s failed: %v: %s\n", rpc, code, status.Convert(err).Message())
				return 2
			}
		}
		time.Sleep(backoff)
		if backoff *= 2; backoff > 10*time.Second {
			backoff = 10 * time.Second
		}
	}
}

func (c *consumer) handleCharge(response *gatewayv1.StreamChargesResponse) (int64, error) {
	switch event := response.GetEvent().(type) {
	case *gatewayv1.StreamChargesResponse_Charge:
		return -1, c.processCharge(event.Charge)
	case *gatewayv1.StreamChargesResponse_Heartbeat:
		return event.Heartbeat.GetHighWaterMark(), nil
	}
	return -1, nil
}

func (c *consumer) handleCreditEvent(response *gatewayv1.StreamCreditEventsResponse) (int64, error) {
	switch event := response.GetEvent().(type) {
	case *gatewayv1.StreamCreditEventsResponse_CreditEvent:
		return -1, c.processCreditEvent(event.CreditEvent)
	case *gatewayv1.StreamCreditEventsResponse_Heartbeat:
		return event.Heartbeat.GetHighWaterMark(), nil
	}
	return -1, nil
}

func (c *consumer) processCharge(charge *gatewayv1.Charge) error {
	if c.charges.seen(charge.GetSequence()) {
		return nil
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
	return c.charges.record(charge.GetSequence(), fmt.Sprintf("%d\t%s\t%s\t%s\t%s", charge.GetSequence(),
		charge.GetCustomerId(), charge.GetKind(), charge.GetAmount(), charge.GetCurrency()))
}

func (c *consumer) processCreditEvent(event *gatewayv1.CreditEvent) error {
	if c.creditEvents.seen(event.GetSequence()) {
		return nil
	}
	for _, amount := range []string{event.GetExposure(), event.GetCreditLimit()} {
		if _, ok := new(big.Rat).SetString(amount); !ok { // exact; never float64
			return fmt.Errorf("%q is not a decimal", amount)
		}
	}
	// Act on what the policy asks for (here: say it; in a BSS: open a ticket, call provisioning).
	switch event.GetAction() {
	case gatewayv1.CreditAction_SUSPENSION_REQUIRED:
		fmt.Fprintf(os.Stderr, "credit-events: SUSPEND %s: exposure %s reached the limit %s %s\n",
			event.GetCustomerId(), event.GetExposure(), event.GetCreditLimit(), event.GetCurrency())
	case gatewayv1.CreditAction_RESUMPTION_ALLOWED:
		fmt.Fprintf(os.Stderr, "credit-events: RESUME %s: exposure %s is below the limit %s %s\n",
			event.GetCustomerId(), event.GetExposure(), event.GetCreditLimit(), event.GetCurrency())
	}
	time.Sleep(c.delay) // stands in for real work
	return c.creditEvents.record(event.GetSequence(), fmt.Sprintf("%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d",
		event.GetSequence(), event.GetCustomerId(), event.GetThresholdPercent(), event.GetDirection(),
		event.GetExposure(), event.GetCreditLimit(), event.GetCurrency(), event.GetPolicy(),
		event.GetAction(), event.GetLedgerSequence()))
}

func openJournal(name, stateDir string) (*journal, error) {
	cursorFile := filepath.Join(stateDir, name+".cursor")
	outputFile := filepath.Join(stateDir, name+".processed")
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
		fmt.Fprintf(os.Stderr, "%s: recovering cursor %d -> %d from the output file\n", name, cursor, recovered)
		cursor = recovered
		if err := writeCursor(cursorFile, cursor); err != nil {
			return nil, err
		}
	}
	out, err := os.OpenFile(outputFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &journal{name: name, cursorFile: cursorFile, out: out, cursor: cursor}, nil
}

// seen reports whether this sequence was processed already (at-least-once delivery).
func (j *journal) seen(sequence int64) bool {
	return sequence <= j.cursor
}

// record appends the item's line, makes it durable, then moves the cursor.
func (j *journal) record(sequence int64, line string) error {
	if _, err := j.out.Write([]byte(line + "\n")); err != nil { // one write: the line is whole or absent
		return err
	}
	if err := j.out.Sync(); err != nil {
		return err
	}
	j.cursor = sequence
	return writeCursor(j.cursorFile, sequence)
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
