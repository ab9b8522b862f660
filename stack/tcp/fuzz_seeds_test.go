package tcp_test

import (
	"sort"
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
