package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
)

// TestPrintStatsLinkRefused: the demo's summary tells segments the link
// refused apart from drops on the wire, and says nothing of them when
// there were none.
func TestPrintStatsLinkRefused(t *testing.T) {
	var st tcp.Stats
	var b bytes.Buffer
	printStats(&b, "client", &st)
	if strings.Contains(b.String(), "refused") {
		t.Errorf("no refusal, but the summary says %q", b.String())
	}
	st.LinkRefused.Add(3)
	b.Reset()
	printStats(&b, "client", &st)
	if want := "client: 3 segments refused by the link, its queue full: never sent, data sent again\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary %q, want a line %q", b.String(), want)
	}
}

// TestPrintStatsECN: the summary tells of ECN only where a connection
// agreed to it, with the marks and the reductions they caused.
func TestPrintStatsECN(t *testing.T) {
	var st tcp.Stats
	var b bytes.Buffer
	printStats(&b, "server", &st)
	if strings.Contains(b.String(), "ECN") {
		t.Errorf("no ECN connection, but the summary says %q", b.String())
	}
	st.ECNConnections.Add(1)
	st.CEReceived.Add(4)
	st.ECNReductions.Add(2)
	b.Reset()
	printStats(&b, "server", &st)
	if want := "server: ECN on 1 connections; 4 CE marks received, 2 windows reduced for the peer's echo (CWR)\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary %q, want a line %q", b.String(), want)
	}
}
