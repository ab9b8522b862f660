package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestPrintStats: the demo's summary says nothing of a counter that is
// zero, and gives its line once it is not: segments the link refused,
// apart from drops on the wire; ECN, where a connection agreed to it,
// with the marks and the reductions they caused.
func TestPrintStats(t *testing.T) {
	for _, tc := range []struct {
		name, word string
		count      func(*tcp.Stats)
		want       string
	}{
		{"link refused", "refused", func(st *tcp.Stats) { st.LinkRefused.Add(3) },
			"client: 3 segments refused by the link, its queue full: never sent, data sent again\n"},
		{"link refused, tries", "refused", func(st *tcp.Stats) { st.LinkRefused.Add(9); st.ResourceProbes.Add(2) },
			"client: 9 segments refused by the link, its queue full: never sent, data sent again (2 tries with nothing in flight, 500 ms apart)\n"},
		{"ECN", "ECN", func(st *tcp.Stats) {
			st.ECNConnections.Add(1)
			st.CEReceived.Add(4)
			st.ECNReductions.Add(2)
		}, "client: ECN on 1 connections; 4 CE marks received, 2 windows reduced for the peer's echo (CWR)\n"},
		{"MTU probing", "MTU", func(st *tcp.Stats) {
			st.MTUBlackHoles.Add(1)
			st.MTUProbes.Add(6)
			st.MTUProbeSuccesses.Add(3)
			st.MTUProbeFailures.Add(3)
		}, "client: path MTU black hole suspected 1 times; 6 MTU probes, 3 acknowledged, 3 lost (RFC 4821)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st tcp.Stats
			var b bytes.Buffer
			printStats(&b, "client", &st)
			if strings.Contains(b.String(), tc.word) {
				t.Errorf("all zero, but the summary says %q", b.String())
			}
			tc.count(&st)
			b.Reset()
			printStats(&b, "client", &st)
			if !strings.Contains(b.String(), tc.want) {
				t.Errorf("summary %q, want a line %q", b.String(), tc.want)
			}
		})
	}
}
