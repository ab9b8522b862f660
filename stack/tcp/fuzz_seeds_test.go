package tcp_test

import (
	"sort"
	"strings"
	"testing"

	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/stack/tcp/tcptest"
)

// TestFuzzSeedFiles: the seed corpora committed under testdata/fuzz are
// the seeds the fuzz targets' code documents. After changing a seed, run
// this test with TAPSTACK_UPDATE_FUZZ_SEEDS=1 to rewrite the files.
func TestFuzzSeedFiles(t *testing.T) {
	tcptest.CheckFuzzSeeds(t, "FuzzConnection", fzConnSeeds())
	tcptest.CheckFuzzSeeds(t, "FuzzListener", fzListenSeeds())
	var opts []tcptest.FuzzSeed
	for name, s := range tcp.FuzzOptionSeedFiles {
		opts = append(opts, tcptest.FuzzSeed{Name: name, Args: []any{s.Opts, s.Flags}})
	}
	sort.Slice(opts, func(i, j int) bool { return opts[i].Name < opts[j].Name })
	tcptest.CheckFuzzSeeds(t, "FuzzOptions", opts)
}

// TestFuzzConnectionGSOSeeds: the seeds that turn the link's offload on
// reach output's packets of several segments, so that the fuzzer starts
// from programs that exercise them.
func TestFuzzConnectionGSOSeeds(t *testing.T) {
	n := 0
	for _, s := range fzConnSeeds() {
		if !strings.HasPrefix(s.Name, "gso-") {
			continue
		}
		n++
		t.Run(s.Name, func(t *testing.T) {
			c := fzRunConn(t, s.Args[0].([]byte))
			if c.p.GSOPackets < 3 {
				t.Errorf("%d packets of several segments, want 3 or more", c.p.GSOPackets)
			}
		})
	}
	if n == 0 {
		t.Fatal("no seed turns the offload on")
	}
}
