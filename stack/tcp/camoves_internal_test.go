package tcp

import "testing"

// TestRecoveryMoves: setCAState takes exactly the moves of caMoves, as
// Linux's loss recovery makes them, and refuses and counts the others,
// leaving the state as it was: fast recovery never turns into CWR (an
// ECN echo in fast recovery changes nothing: the window is coming down
// already), RTO recovery never into fast recovery or CWR, and CWR never
// starts again inside itself.
func TestRecoveryMoves(t *testing.T) {
	refused := map[[2]caState]bool{
		{caCWR, caCWR}:           true,
		{caRecovery, caCWR}:      true,
		{caRecovery, caRecovery}: true,
		{caLoss, caCWR}:          true,
		{caLoss, caRecovery}:     true,
	}
	for from := caOpen; from <= caLoss; from++ {
		for to := caOpen; to <= caLoss; to++ {
			e := &Endpoint{proto: &Protocol{}, caState: from}
			e.setCAState(to)
			n := e.proto.stats.RecoveryMovesRefused.Load()
			switch {
			case refused[[2]caState{from, to}] && (n != 1 || e.caState != from):
				t.Errorf("%v to %v: state %v, %d refused; want it refused, the state kept", from, to, e.caState, n)
			case !refused[[2]caState{from, to}] && (n != 0 || e.caState != to):
				t.Errorf("%v to %v: state %v, %d refused; want the move", from, to, e.caState, n)
			}
		}
	}
}
