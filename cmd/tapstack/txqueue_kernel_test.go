//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/pcap"
	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialTxQueue: --tx-queue 2 gives the TAP device an outbound queue of
// two frames, a full local queue made on purpose. 4 MiB sent to the
// kernel overflow it (in one of up to five transfers); the capture marks
// each refused frame "not sent" and carries the engine's response on the
// first frame of each refusal (taken back, CWR, or deemed lost); every
// byte arrives. --tx-queue 0 is a usage error.
func TestDialTxQueue(t *testing.T) {
	const dev = "tstxq0"
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev)
	countServer(t, ns, "192.0.2.1:5003")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out, errOut bytes.Buffer
	args := []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--tx-queue", "0", "192.0.2.1:5003"}
	if code := runInNamespace(t, ctx, ns, env{stdin: strings.NewReader("x"), stdout: &out, stderr: &errOut}, args...)(); code == 0 ||
		!strings.Contains(errOut.String(), "--tx-queue 0: want at least 1 frame") {
		t.Errorf("--tx-queue 0: exit %d, stderr %q; want a usage error", code, errOut.String())
	}

	// Whether a queue of two frames overflows is up to the scheduler:
	// the engine's small queues hold new data back while the queue is
	// busy, and a writer that keeps up drains it first. A refusal is
	// near certain in one transfer (33-760 refused frames of ~3,100 in
	// eight runs here) but not certain: one CI run of 2,988 frames had
	// none. So up to five transfers, each checked in full, and the test
	// fails only if none overflows or one loses a byte.
	const size = 4 << 20
	for attempt := 1; ; attempt++ {
		capPath := filepath.Join(t.TempDir(), "dial.pcapng")
		out.Reset()
		errOut.Reset()
		args = []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--tx-queue", "2", "--pcap", capPath, "192.0.2.1:5003"}
		wait := runInNamespace(t, ctx, ns, env{stdin: bytes.NewReader(bytes.Repeat([]byte{'x'}, size)), stdout: &out, stderr: &errOut}, args...)
		if code := wait(); code != 0 {
			t.Fatalf("dial: exit %d\n%s", code, errOut.String())
		}
		if out.String() != fmt.Sprintf("got %d\n", size) {
			t.Fatalf("the kernel's answer %q", out.String())
		}
		pkts, err := pcap.ReadFile(capPath)
		if err != nil {
			t.Fatal(err)
		}
		notSent, told := 0, 0
		for _, p := range pkts {
			c := p.Comment()
			if strings.Contains(c, "not sent: the link's queue was full") {
				notSent++
				if strings.Contains(c, "the link refused") {
					told++
				}
			}
		}
		t.Logf("transfer %d: %d frames of %d refused, %d with the engine's response", attempt, notSent, len(pkts), told)
		if notSent > 0 && told > 0 {
			return
		}
		if notSent > 0 {
			t.Fatalf("%d frames marked not sent, none with the engine's response", notSent)
		}
		if attempt == 5 {
			t.Fatalf("no frame refused in %d transfers; want a queue of two frames to overflow", attempt)
		}
	}
}
