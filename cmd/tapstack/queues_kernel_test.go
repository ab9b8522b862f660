//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tapstack/tapstack/tap/taptest"
)

// TestDialQueues: dial on a device made multi_queue, with --queues 2,
// sends 1 MiB that the kernel counts; without --queues, the device cannot
// be opened, and the error says what the device is.
func TestDialQueues(t *testing.T) {
	const dev, size = "tsqueue1", 1 << 20
	ns := taptest.NewNamespace(t)
	addKernelTAP(t, ns, dev, "multi_queue")
	countServer(t, ns, "192.0.2.1:5008")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var out, errOut bytes.Buffer
	args := []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "--queues", "2", "192.0.2.1:5008"}
	if code := runInNamespace(t, ctx, ns, env{stdin: bytes.NewReader(bytes.Repeat([]byte{'q'}, size)), stdout: &out, stderr: &errOut}, args...)(); code != 0 || out.String() != fmt.Sprintf("got %d\n", size) {
		t.Fatalf("dial --queues 2: exit %d, %q\n%s", code, out.String(), errOut.String())
	}

	out.Reset()
	errOut.Reset()
	args = []string{"dial", "--tap", dev, "--addr", "192.0.2.2/24", "192.0.2.1:5008"}
	if code := runInNamespace(t, ctx, ns, env{stdin: bytes.NewReader(nil), stdout: &out, stderr: &errOut}, args...)(); code != 1 || !strings.Contains(errOut.String(), "multi_queue, which takes two or more queues") {
		t.Errorf("dial without --queues on a multi_queue device: exit %d, %q; want 1 and an error saying what the device is", code, errOut.String())
	}
}
