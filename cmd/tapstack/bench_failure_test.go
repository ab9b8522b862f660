package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/tap"
)

// failingLink is tap.Pipe on which one stack's dials are refused, as a
// stack that stalls under faults fails its runs.
type failingLink struct {
	pipeLink
	fail stackKind
}

var errRefusedOnPurpose = errors.New("refused on purpose")

func (l failingLink) env(kind stackKind) (*benchEnv, error) {
	e, err := l.pipeLink.env(kind)
	if err == nil && kind == l.fail {
		e.dial = func(context.Context, netip.AddrPort) (net.Conn, error) { return nil, errRefusedOnPurpose }
	}
	return e, err
}

// TestBenchFailedRun: a stack whose runs fail leaves "failed" in its
// cells and in the ratios, the failures listed under the table, and the
// other stack's figures standing; -json writes null for the failed
// values. tapstack failing makes the command fail; gVisor failing, the
// baseline, does not.
func TestBenchFailedRun(t *testing.T) {
	for _, kind := range []stackKind{kindGVisor, kindTapstack} {
		t.Run(kind.String(), func(t *testing.T) {
			b := &bencher{rounds: 2, conns: 10, echo: 10, size: 1 << 20, mtu: tap.DefaultMTU}
			res, err := b.measure(context.Background(), failingLink{pipeLink{mtu: tap.DefaultMTU}, kind}, b.tasks(true)[:1])
			if err != nil {
				t.Fatalf("measure: %v, want the failures in the result", err)
			}
			res.Link = "tap.Pipe"
			if len(res.Failures) != 3 { // the warm-up and two rounds
				t.Fatalf("%d failures, want 3: %+v", len(res.Failures), res.Failures)
			}
			for i, f := range res.Failures {
				if f.Round != i || f.Stack != kind.String() || f.Figure != "bulk, dialer → listener" || !strings.Contains(f.Error, errRefusedOnPurpose.Error()) {
					t.Errorf("failure %d: %+v", i, f)
				}
			}
			for _, row := range res.Rows {
				ours, theirs := row.Tapstack, row.GVisor
				if kind == kindGVisor {
					ours, theirs = theirs, ours
				}
				for i := range ours {
					if !math.IsNaN(ours[i]) || math.IsNaN(theirs[i]) || !math.IsNaN(row.Ratio[i]) {
						t.Errorf("%s round %d: failed stack %v, the other %v, ratio %v", row.Name, i+1, ours[i], theirs[i], row.Ratio[i])
					}
				}
			}
			var out bytes.Buffer
			res.print(&out)
			for _, want := range []string{" failed [failed–failed] ", "failed runs over tap.Pipe", "round 2: " + kind.String() + " over tap.Pipe, bulk, dialer → listener: refused on purpose"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the table lacks %q:\n%s", want, out.String())
				}
			}
			report := benchReport{Links: []benchLinkResult{res}}
			j, err := json.Marshal(report)
			if err != nil {
				t.Fatalf("-json: %v", err)
			}
			if !bytes.Contains(j, []byte(`[null,null]`)) {
				t.Errorf("-json has no null for the failed values: %s", j)
			}
			if err := report.ourFailures(); (err != nil) != (kind == kindTapstack) {
				t.Errorf("the command's error: %v", err)
			}
		})
	}
}
