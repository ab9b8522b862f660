package stack

import "gvisor.dev/gvisor/pkg/tcpip"

// UDPStats counts the stack's UDP datagrams (gVisor's transport/udp
// carries them; the counters are its, named as Linux's /proc/net/snmp
// Udp: line names them where it can). With an observer
// (Options.TCP.Observer) each datagram counted is also an event:
// event.KindUDPDeliver, KindUDPNoPort, KindUDPDrop or KindUDPSend
// (udp_observe.go); a UDPConn has its own counters (conn.UDPConnStats).
type UDPStats struct {
	// Received counts datagrams that reached UDP from IP, whatever became
	// of them (Linux's InDatagrams counts only Delivered).
	Received uint64
	// Delivered counts datagrams queued to a socket: Received less those
	// for no port, malformed ones and those a full buffer refused.
	Delivered uint64
	// NoPort counts datagrams for a port no socket holds; each is
	// answered with ICMP port unreachable, rate limited (NoPorts).
	NoPort uint64
	// ReceiveBufferFull counts datagrams dropped because the socket's
	// receive buffer was full (RcvbufErrors).
	ReceiveBufferFull uint64
	// Malformed counts datagrams with a bad length or checksum
	// (InErrors less RcvbufErrors; CsumErrors is within it).
	Malformed uint64
	// Checksum counts those among Malformed whose checksum was wrong.
	Checksum uint64
	// Sent and SendErrors count datagrams handed to IP and those IP
	// refused (OutDatagrams, SndbufErrors and unroutable ones).
	Sent, SendErrors uint64
}

// UDPStats returns the UDP counters.
func (s *Stack) UDPStats() UDPStats {
	u := s.s.Stats().UDP
	v := func(c *tcpip.StatCounter) uint64 { return c.Value() }
	st := UDPStats{
		NoPort:            v(u.UnknownPortErrors),
		ReceiveBufferFull: v(u.ReceiveBufferErrors),
		Malformed:         v(u.MalformedPacketsReceived) + v(u.ChecksumErrors),
		Checksum:          v(u.ChecksumErrors),
		Sent:              v(u.PacketsSent),
		SendErrors:        v(u.PacketSendErrors),
	}
	// gVisor counts PacketsReceived at the socket, before its buffer
	// check; the demuxer counts the unknown ports and the protocol the
	// malformed ones before either.
	atSocket := v(u.PacketsReceived)
	st.Delivered = atSocket - min(atSocket, st.ReceiveBufferFull)
	st.Received = atSocket + st.NoPort + st.Malformed
	return st
}
