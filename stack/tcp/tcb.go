package tcp

import "gvisor.dev/gvisor/pkg/tcpip/seqnum"

// TCB holds the sequence variables of RFC 9293 section 3.3.1, named as the
// RFC names them. Windows are kept unscaled, in bytes.
type TCB struct {
	// Send sequence variables.
	SndUna seqnum.Value // SND.UNA: oldest unacknowledged sequence number
	SndNxt seqnum.Value // SND.NXT: next sequence number to be sent
	SndWnd uint32       // SND.WND: send window, as the peer last advertised it
	SndWL1 seqnum.Value // SND.WL1: segment sequence number used for the last window update
	SndWL2 seqnum.Value // SND.WL2: segment acknowledgment number used for the last window update
	ISS    seqnum.Value // ISS: initial send sequence number

	// Receive sequence variables.
	RcvNxt seqnum.Value // RCV.NXT: next sequence number expected on an incoming segment
	RcvWnd uint32       // RCV.WND: receive window we last advertised
	IRS    seqnum.Value // IRS: initial receive sequence number
}
