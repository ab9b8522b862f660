package tcp

import "gvisor.dev/gvisor/pkg/tcpip/seqnum"

// tcb holds the sequence variables of RFC 9293 section 3.3.1, named as the
// RFC names them (sndUna is SND.UNA). Windows are kept unscaled, in
// bytes. It is the engine's own: users see a copy, Info's TCB.
type tcb struct {
	// Send sequence variables.
	sndUna seqnum.Value // SND.UNA: oldest unacknowledged sequence number
	sndNxt seqnum.Value // SND.NXT: next sequence number to be sent
	sndWnd uint32       // SND.WND: send window, as the peer last advertised it
	sndWL1 seqnum.Value // SND.WL1: segment sequence number used for the last window update
	sndWL2 seqnum.Value // SND.WL2: segment acknowledgment number used for the last window update
	iss    seqnum.Value // ISS: initial send sequence number

	// Receive sequence variables.
	rcvNxt seqnum.Value // RCV.NXT: next sequence number expected on an incoming segment
	rcvWnd uint32       // RCV.WND: receive window we last advertised
	irs    seqnum.Value // IRS: initial receive sequence number
}

// TCB is a copy of a connection's sequence variables (RFC 9293 3.3.1),
// as Info reports them: absolute sequence numbers, windows unscaled in
// bytes. Changing it changes nothing in the connection.
type TCB struct {
	// Send sequence variables.
	SndUna uint32 // SND.UNA: oldest unacknowledged sequence number
	SndNxt uint32 // SND.NXT: next sequence number to be sent
	SndWnd uint32 // SND.WND: send window, as the peer last advertised it
	SndWL1 uint32 // SND.WL1: segment sequence number used for the last window update
	SndWL2 uint32 // SND.WL2: segment acknowledgment number used for the last window update
	ISS    uint32 // ISS: initial send sequence number

	// Receive sequence variables.
	RcvNxt uint32 // RCV.NXT: next sequence number expected on an incoming segment
	RcvWnd uint32 // RCV.WND: receive window we last advertised
	IRS    uint32 // IRS: initial receive sequence number
}

// snapshot is the copy Info returns.
func (t *tcb) snapshot() TCB {
	return TCB{
		SndUna: uint32(t.sndUna), SndNxt: uint32(t.sndNxt), SndWnd: t.sndWnd,
		SndWL1: uint32(t.sndWL1), SndWL2: uint32(t.sndWL2), ISS: uint32(t.iss),
		RcvNxt: uint32(t.rcvNxt), RcvWnd: t.rcvWnd, IRS: uint32(t.irs),
	}
}
