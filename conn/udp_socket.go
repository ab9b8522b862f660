package conn

import (
	"bytes"
	"net"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport"
	"gvisor.dev/gvisor/pkg/waiter"
)

// socket is what UDPConn and the ICMP echo PacketConn share: one of
// gVisor's datagram endpoints (transport/udp or transport/icmp), its
// waiter queue, and deadlines on the stack's clock as Conn has.
type socket struct {
	ep     tcpip.Endpoint
	wq     *waiter.Queue
	clock  tcpip.Clock
	net    string // "udp", "udp4", "ip4:icmp"...: the Net of errors
	rd, wd *deadline

	readMu  turn // one reader at a time: a datagram goes to one caller
	writeMu turn

	closeOnce sync.Once
	closed    chan struct{}

	// laddr and raddr are fixed once the socket is made (bound, and
	// connected for DialUDP), read without a lock.
	laddr, raddr net.Addr
}

func newSocket(ep tcpip.Endpoint, wq *waiter.Queue, clock tcpip.Clock, network string) *socket {
	return &socket{
		ep: ep, wq: wq, clock: clock, net: network,
		rd: newDeadline(clock), wd: newDeadline(clock),
		readMu: make(turn, 1), writeMu: make(turn, 1),
		closed: make(chan struct{}),
	}
}

func (s *socket) isClosed() bool { return closedChan(s.closed) }

// failure translates err from the endpoint. An endpoint closed under a
// socket the user did not close is one its stack closed (Stack.Close
// aborts every endpoint): ECONNABORTED, as TCP connections report then.
func (s *socket) failure(err tcpip.Error) error {
	switch {
	case s.isClosed():
		return net.ErrClosed
	case s.ep.State() == uint32(transport.DatagramEndpointStateClosed):
		return syscall.ECONNABORTED
	}
	return errno(err)
}

// opError wraps err as package net does. addr is the peer the call was
// about (nil: the connected peer, if any). An errno is put in an
// os.SyscallError for recvfrom or sendto, the calls of ReadFrom and
// WriteTo; see opErrorIn.
func (s *socket) opError(op string, addr net.Addr, err error) error {
	call := op
	switch op {
	case "read":
		call = "recvfrom"
	case "write":
		call = "sendto"
	}
	return s.opErrorIn(op, call, addr, err)
}

// opErrorIn is opError with an errno put in an os.SyscallError for call,
// the system call package net makes for the method on Linux
// (fd_posix.go): "read" and "write" for Read and Write, "recvmsg" and
// "sendmsg" for ReadMsgUDP and WriteMsgUDP.
func (s *socket) opErrorIn(op, call string, addr net.Addr, err error) error {
	if err == nil {
		return nil
	}
	if addr == nil {
		addr = s.raddr
	}
	return &net.OpError{Op: op, Net: s.net, Source: s.laddr, Addr: addr, Err: wrapErrno(call, err)}
}

// truncWriter takes what fits of a datagram and discards the rest, as
// recvfrom(2) does with a short buffer.
type truncWriter struct{ b []byte }

func (w *truncWriter) Write(p []byte) (int, error) {
	n := copy(w.b, p)
	w.b = w.b[n:]
	return len(p), nil
}

// read takes the next datagram into b. It returns the bytes copied, the
// datagram's length (larger than n when b was too short: the rest is
// lost, as with recvfrom without MSG_PEEK) and the sender.
func (s *socket) read(b []byte) (n, total int, from tcpip.FullAddress, err error) {
	res, err := s.readMsg(b, nil)
	return res.Count, res.Total, res.RemoteAddr, err
}

// readMsg is read returning gVisor's whole result, control messages
// included; it also gives up, with a timeout, when done is closed.
func (s *socket) readMsg(b []byte, done <-chan struct{}) (res tcpip.ReadResult, err error) {
	var terr tcpip.Error
	if !s.readMu.take(s.closed) {
		return res, net.ErrClosed
	}
	defer s.readMu.give()
	if s.isClosed() {
		return res, net.ErrClosed
	}
	if closedChan(s.rd.wait()) {
		return res, timeoutError{}
	}
	// Register before trying, so that a datagram arriving between the
	// try and the wait is not missed.
	entry, notify := waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventErr | waiter.EventHUp)
	s.wq.EventRegister(&entry)
	defer s.wq.EventUnregister(&entry)
	for {
		w := truncWriter{b: b}
		res, terr = s.ep.Read(&w, tcpip.ReadOptions{NeedRemoteAddr: true})
		if terr == nil {
			// truncWriter took the whole datagram; what b holds is less.
			res.Count = min(res.Count, len(b))
			return res, nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return res, s.failure(terr)
		}
		select {
		case <-notify:
		case <-s.rd.wait():
			return res, timeoutError{}
		case <-done:
			return res, timeoutError{ctx: true}
		case <-s.closed:
			return res, net.ErrClosed
		}
	}
}

// write sends b as one datagram, to to if it is set (else to the
// connected peer). A datagram is sent whole or not at all.
func (s *socket) write(b []byte, to *tcpip.FullAddress) (int, error) {
	if !s.writeMu.take(s.closed) {
		return 0, net.ErrClosed
	}
	defer s.writeMu.give()
	if s.isClosed() {
		return 0, net.ErrClosed
	}
	if closedChan(s.wd.wait()) {
		return 0, timeoutError{}
	}
	var entry waiter.Entry
	var notify chan struct{}
	for {
		var r bytes.Reader
		r.Reset(b)
		n, terr := s.ep.Write(&r, tcpip.WriteOptions{To: to})
		if terr == nil {
			return int(n), nil
		}
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return 0, s.failure(terr)
		}
		// The send buffer is full (datagrams still queued at the link):
		// wait for room, as a blocking sendto does.
		if notify == nil {
			entry, notify = waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventErr | waiter.EventHUp)
			s.wq.EventRegister(&entry)
			defer s.wq.EventUnregister(&entry)
			continue // room may have appeared before we registered
		}
		select {
		case <-notify:
		case <-s.wd.wait():
			return 0, timeoutError{}
		case <-s.closed:
			return 0, net.ErrClosed
		}
	}
}

func (s *socket) close() error {
	err := s.opError("close", nil, net.ErrClosed)
	s.closeOnce.Do(func() {
		err = nil
		close(s.closed)
		s.rd.release()
		s.wd.release()
		s.ep.Close()
	})
	return err
}

func (s *socket) setDeadline(t time.Time, read, write bool) error {
	if s.isClosed() {
		return s.opError("set", nil, net.ErrClosed)
	}
	if read {
		s.rd.set(t)
	}
	if write {
		s.wd.set(t)
	}
	return nil
}

// setBuffer sets SO_RCVBUF or SO_SNDBUF within the stack's limits. A
// size below the minimum (gVisor's MinBufferSize, 4 KiB), zero or
// negative included, is raised to it without an error, as Linux raises
// one to SOCK_MIN_RCVBUF or SOCK_MIN_SNDBUF (a negative one Linux reads as
// a huge unsigned size, clamped to rmem_max); one above the maximum
// (DefaultMaxBufferSize, 4 MiB, unless the netstack's
// ReceiveBufferSizeOption or SendBufferSizeOption says otherwise) is
// lowered to it, as sk_setsockopt caps SO_RCVBUF at rmem_max and
// SO_SNDBUF at wmem_max. gVisor's UDP keeps any size it is given, so
// without the cap a socket asked for 1 GiB would queue 1 GiB of a flood
// it does not read.
func (s *socket) setBuffer(read bool, bytes int) error {
	if s.isClosed() {
		return s.opError("set", nil, net.ErrClosed)
	}
	ops := s.ep.SocketOptions()
	if read {
		lo, hi := ops.ReceiveBufferLimits()
		ops.SetReceiveBufferSize(min(max(int64(bytes), lo), hi), true)
	} else {
		lo, hi := ops.SendBufferLimits()
		ops.SetSendBufferSize(min(max(int64(bytes), lo), hi), true)
	}
	return nil
}
