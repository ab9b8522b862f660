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
