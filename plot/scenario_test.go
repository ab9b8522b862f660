package plot_test

import (
	"context"
	"testing"
	"time"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/pcap/pcaptest"
)

// The plot draws the scripted scenarios of pcap's oracle
// (pcaptest.Scenarios): tapstack (captured, 192.0.2.1) and gVisor's TCP
// (192.0.2.2) over tap.Pipe, a clean close each way, 5% loss with SACK,
// zero windows, a full accept queue.

// captureScenario runs sc and returns the path of its capture in dir,
// frames cut to snapLen bytes if it is positive.
func captureScenario(t testing.TB, sc pcaptest.Scenario, dir string, snapLen int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	w, err := sc.Capture(ctx, t, dir, pcap.Options{Description: "plot scenario " + sc.Name, SnapLen: snapLen})
	if err != nil {
		t.Fatalf("scenario %s: %v", sc.Name, err)
	}
	return w.Path
}
