package tap_test

import (
	"testing"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/tapstack/tapstack/tap"
)

// TestPipeGSOOffer: a pipe offers host GSO only with WithPipeGSO, and a
// fault middleware that corrupts outbound frames hides it, so that a
// stack above sends full checksums for the receiver to check.
func TestPipeGSOOffer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gso   bool
		fault *tap.FaultConfig
		want  gstack.SupportedGSO
	}{
		{"default", false, nil, gstack.GSONotSupported},
		{"gso", true, nil, gstack.HostGSOSupported},
		{"gso, loss", true, &tap.FaultConfig{Seed: 1, Loss: 0.1}, gstack.HostGSOSupported},
		{"gso, corrupt", true, &tap.FaultConfig{Seed: 1, Corrupt: 0.1}, gstack.GSONotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := tap.Pipe(tap.WithPipeGSO(tc.gso))
			var l gstack.LinkEndpoint = a
			if tc.fault != nil {
				l = tap.NewFault(a, *tc.fault)
			}
			g, ok := l.(gstack.GSOEndpoint)
			if !ok {
				t.Fatalf("%T is no stack.GSOEndpoint", l)
			}
			if got := g.SupportedGSO(); got != tc.want {
				t.Errorf("SupportedGSO %v, want %v", got, tc.want)
			}
			if tc.want == gstack.HostGSOSupported && g.GSOMaxSize() < 1<<15 {
				t.Errorf("GSOMaxSize %d", g.GSOMaxSize())
			}
		})
	}
}
