package pktscript

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"
)

// The script's socket calls, mapped to the engine's API in the manner of
// Linux's socket layer: a script's file descriptors are the numbers its
// calls return, sockets block unless O_NONBLOCK, and options set on a
// listener reach the connections it accepts.

type sockKind uint8

const (
	sockNew sockKind = iota
	sockListener
	sockConn
)

type sock struct {
	fd       int
	kind     sockKind
	nonblock bool
	ln       *listener
	c        *connState
	port     uint16 // bound port; 0: none

	// Options, kept to be applied when the connection exists and to be
	// reported by getsockopt.
	nodelay               bool
	sndbuf, rcvbuf        int // as Linux reports them: twice what was set
	userTimeout           time.Duration
	keepalive             bool
	keepIdle, keepIntvl   time.Duration
	keepCount             int
	lingerOn              bool
	lingerSecs            int64
	maxSeg                int // TCP_MAXSEG: the MSS clamp (Linux's user_mss); 0: none
	cork, corkSet         bool
	sndbufSet, rcvbufSet  bool
	nodelaySet, utSet     bool
	keepSet, keepParamSet bool
}

// pendingCall is a call that blocks, running on while later events run,
// as packetdrill's system call thread does.
type pendingCall struct {
	line       int
	name       string
	sc         *Syscall
	start, end time.Duration
	wake       time.Duration // a time the call completes by itself (poll's timeout); 0: none
	try        func() (bool, int64, error)
	check      func(int64, error)
}

// Linux's values of the constants scripts use (x86-64).
func constant(name string) (int64, bool) {
	switch name {
	case "O_RDONLY", "SHUT_RD", "AF_UNSPEC", "IPPROTO_IP":
		return 0, true
	case "O_WRONLY", "SHUT_WR", "SOCK_STREAM", "SOL_SOCKET_FAKE":
		return 1, true
	case "O_RDWR", "SHUT_RDWR", "AF_INET", "SOCK_DGRAM":
		return 2, true
	case "AF_INET6":
		return 10, true
	case "O_NONBLOCK":
		return 0x800, true
	case "IPPROTO_TCP", "SOL_TCP":
		return 6, true
	case "SOL_SOCKET":
		return 1, true
	case "MSG_PEEK":
		return 2, true
	case "MSG_DONTWAIT":
		return 0x40, true
	case "MSG_WAITALL":
		return 0x100, true
	case "MSG_NOSIGNAL":
		return 0x4000, true
	case "MSG_MORE":
		return 0x8000, true
	case "MSG_EOR":
		return 0x80, true
	case "MSG_ZEROCOPY":
		return 0x4000000, true
	case "POLLIN":
		return 0x1, true
	case "POLLPRI":
		return 0x2, true
	case "POLLOUT":
		return 0x4, true
	case "POLLERR":
		return 0x8, true
	case "POLLHUP":
		return 0x10, true
	case "POLLNVAL":
		return 0x20, true
	case "POLLRDNORM":
		return 0x40, true
	case "POLLWRNORM":
		return 0x100, true
	case "POLLRDHUP":
		return 0x2000, true
	}
	return 0, false
}

// errnoName names an errno as scripts write it.
func errnoName(err error) string {
	var en syscall.Errno
	if !errors.As(err, &en) {
		return err.Error()
	}
	switch en {
	case syscall.EAGAIN:
		return "EAGAIN"
	case syscall.EINPROGRESS:
		return "EINPROGRESS"
	case syscall.EALREADY:
		return "EALREADY"
	case syscall.EPIPE:
		return "EPIPE"
	case syscall.ECONNRESET:
		return "ECONNRESET"
	case syscall.ECONNREFUSED:
		return "ECONNREFUSED"
	case syscall.ECONNABORTED:
		return "ECONNABORTED"
	case syscall.ETIMEDOUT:
		return "ETIMEDOUT"
	case syscall.ENOTCONN:
		return "ENOTCONN"
	case syscall.EISCONN:
		return "EISCONN"
	case syscall.EINVAL:
		return "EINVAL"
	case syscall.EBADF:
		return "EBADF"
	case syscall.EADDRINUSE:
		return "EADDRINUSE"
	case syscall.EADDRNOTAVAIL:
		return "EADDRNOTAVAIL"
	case syscall.ENETUNREACH:
		return "ENETUNREACH"
	case syscall.EHOSTUNREACH:
		return "EHOSTUNREACH"
	case syscall.ENETDOWN:
		return "ENETDOWN"
	case syscall.EMFILE:
		return "EMFILE"
	case syscall.ENOPROTOOPT:
		return "ENOPROTOOPT"
	case syscall.EOPNOTSUPP:
		return "EOPNOTSUPP"
	case syscall.ESHUTDOWN:
		return "ESHUTDOWN"
	case syscall.EMSGSIZE:
		return "EMSGSIZE"
	case syscall.ENOBUFS:
		return "ENOBUFS"
	}
	return en.Error()
}

func sameErrno(want, got string) bool {
	alias := func(s string) string {
		if s == "EWOULDBLOCK" {
			return "EAGAIN"
		}
		return s
	}
	return alias(want) == alias(got)
}

// intValue evaluates an integer argument: a number, a constant, a|b, or
// [n] (packetdrill's pointer to an int).
func (r *runner) intValue(x *Expr) int64 {
	switch x.Kind {
	case ExprInt:
		return x.Int
	case ExprWord:
		if v, ok := constant(x.Text); ok {
			return v
		}
		panic(needs("constant %s", x.Text))
	case ExprOr:
		var v int64
		for _, e := range x.Elems {
			v |= r.intValue(e)
		}
		return v
	case ExprList:
		if len(x.Elems) == 1 {
			return r.intValue(x.Elems[0])
		}
	}
	r.fail("expected an integer, found %s", x)
	return 0
}

func (r *runner) arg(sc *Syscall, i int) *Expr {
	if i >= len(sc.Args) {
		r.fail("%s: expected at least %d arguments, found %d", sc.Name, i+1, len(sc.Args))
	}
	return sc.Args[i]
}

func (r *runner) nargs(sc *Syscall, n int) {
	if len(sc.Args) != n {
		r.fail("%s: expected %d arguments, found %d", sc.Name, n, len(sc.Args))
	}
}

func (r *runner) sockArg(sc *Syscall) *sock {
	fd := int(r.intValue(r.arg(sc, 0)))
	s, ok := r.socks[fd]
	if !ok {
		r.fail("%s: no socket with file descriptor %d", sc.Name, fd)
	}
	return s
}

// checkResult compares a call's outcome with the script's "= result
// [ERRNO]". A call that returns a file descriptor (fd) matches any
// descriptor the script expects.
func (r *runner) checkResult(sc *Syscall, ret int64, err error, fd bool) {
	want := sc.Result
	got := fmt.Sprint(ret)
	if err != nil {
		got = "-1 " + errnoName(err)
	}
	if want.Kind == ExprEllipsis {
		return
	}
	w := r.intValue(want)
	wantS := fmt.Sprint(w)
	if sc.Errno != "" {
		wantS += " " + sc.Errno
	}
	switch {
	case err != nil:
		if w != -1 || !sameErrno(sc.Errno, errnoName(err)) {
			r.fail("%s returned %s, expected %s", sc.Name, got, wantS)
		}
	case w == -1 && sc.Errno != "":
		r.fail("%s returned %s, expected %s", sc.Name, got, wantS)
	case fd && w >= 0 && ret >= 0:
	case ret != w:
		r.fail("%s returned %s, expected %s", sc.Name, got, wantS)
	}
}

// blockable runs a call that may block. op reports whether the call
// completed, and with what. A call the script marks "...end" may run on
// while later events run; one it does not mark must return at once, and
// if it blocks, the script stops (packetdrill's main thread would) until
// it returns or blockLimit passes.
func (r *runner) blockable(sc *Syscall, start, end, wake time.Duration, op func() (bool, int64, error), check func(int64, error)) {
	if r.pending != nil && sc.Blocking {
		r.fail("blocking system call while another blocking system call is already in progress (line %d)", r.pending.line)
	}
	done, ret, err := op()
	if done {
		r.logf("%s   line %d: %s returned %s", secs(r.eng.now()), r.line, sc.Name, retString(ret, err))
		check(ret, err)
		if sc.Blocking {
			r.checkEnd(sc, start, end)
		}
		r.drain()
		return
	}
	if sc.Blocking {
		r.logf("%s   line %d: %s blocks", secs(r.eng.now()), r.line, sc.Name)
		r.pending = &pendingCall{line: r.line, name: sc.Name, sc: sc, start: start, end: end, wake: wake, try: op, check: check}
		r.drain()
		return
	}
	limit := r.eng.now() + blockLimit
	if wake > 0 && wake < limit {
		limit = wake
	}
	for !done {
		stepped := r.step(limit)
		done, ret, err = op()
		if !done && !stepped {
			r.fail("%s blocked for %s sec; the script expects it to return at once (no ...end time)", sc.Name, secs(blockLimit))
		}
	}
	r.logf("%s   line %d: %s returned %s after blocking", secs(r.eng.now()), r.line, sc.Name, retString(ret, err))
	check(ret, err)
	if now := r.eng.now(); now > start+r.tolerance {
		r.fail("timing error: %s blocked until %s sec; the script expects it to return at once at %s sec (no ...end time)",
			sc.Name, secs(now), secs(start))
	}
	r.drain()
}

func retString(ret int64, err error) string {
	if err != nil {
		return "-1 " + errnoName(err)
	}
	return fmt.Sprint(ret)
}

// checkEnd verifies a blocking call's return time against its "...end",
// with the tolerance of the call's own span, as packetdrill's system
// call thread does.
func (r *runner) checkEnd(sc *Syscall, start, end time.Duration) {
	now := r.eng.now()
	tol := r.toleranceFor(end, start)
	if now < end-tol || now > end+tol {
		r.fail("timing error: expected system call return at %s sec but happened at %s sec; tolerance %s sec",
			secs(end), secs(now), secs(tol))
	}
}

// retryPending retries a blocked call; it reports whether the call
// completed.
func (r *runner) retryPending() bool {
	p := r.pending
	if p == nil {
		return false
	}
	done, ret, err := p.try()
	if !done {
		return false
	}
	r.pending = nil
	line := r.line
	r.line = p.line
	r.logf("%s   line %d: %s returned %s", secs(r.eng.now()), p.line, p.name, retString(ret, err))
	p.check(ret, err)
	r.checkEnd(p.sc, p.start, p.end)
	r.line = line
	return true
}

// syscall runs a system call line.
func (r *runner) syscall(ev *Event, t time.Duration) {
	sc := ev.Syscall
	end := sc.End
	if ev.TimeKind == TimeRelative {
		end += t - ev.Time
	}
	r.logf("%s   line %d: %s(%s)", secs(r.eng.now()), r.line, sc.Name, exprList(sc.Args))
	switch sc.Name {
	case "socket":
		r.socket(sc)
	case "bind":
		r.bind(sc)
	case "listen":
		r.listenCall(sc)
	case "accept", "accept4":
		r.accept(sc, t, end)
	case "connect":
		r.connectCall(sc, t, end)
	case "write", "send", "sendto", "sendmsg", "writev":
		r.write(sc, t, end)
	case "read", "recv", "recvfrom", "readv", "recvmsg":
		r.read(sc, t, end)
	case "close":
		r.closeCall(sc)
	case "shutdown":
		r.shutdown(sc)
	case "setsockopt":
		r.setsockopt(sc)
	case "getsockopt":
		r.getsockopt(sc)
	case "fcntl":
		r.fcntl(sc)
	case "ioctl":
		r.ioctl(sc)
	case "poll":
		r.poll(sc, t, end)
	default:
		panic(needs("the %s system call", sc.Name))
	}
}

func exprList(xs []*Expr) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}

func (r *runner) socket(sc *Syscall) {
	r.nargs(sc, 3)
	if t := r.arg(sc, 1); t.Kind != ExprWord || t.Text != "SOCK_STREAM" {
		panic(needs("%s sockets", t))
	}
	if p := r.arg(sc, 2); p.Kind == ExprWord && p.Text != "IPPROTO_TCP" {
		panic(needs("%s sockets", p))
	}
	fd := int(r.intValue(sc.Result))
	if fd < 0 {
		r.fail("socket() expected to fail: nothing makes it fail here")
	}
	if _, dup := r.socks[fd]; dup {
		r.fail("file descriptor %d is in use", fd)
	}
	if len(r.socks) >= maxSockets {
		r.fail("more than %d sockets", maxSockets)
	}
	r.socks[fd] = &sock{fd: fd}
	// packetdrill: a new socket becomes the socket under test.
	r.sut, r.sutLn = nil, nil
}

func (r *runner) bind(sc *Syscall) {
	s := r.sockArg(sc)
	s.port = r.bindPort
	if len(sc.Args) > 1 {
		if p, ok := sockaddrPort(sc.Args[1]); ok {
			s.port = p
		}
	}
	r.checkResult(sc, 0, nil, false)
}

// sockaddrPort reads the port of {sa_family=..., sin_port=htons(N), ...}.
func sockaddrPort(x *Expr) (uint16, bool) {
	if x.Kind != ExprStruct {
		return 0, false
	}
	for _, e := range x.Elems {
		if e.Kind == ExprAssign && e.Text == "sin_port" && len(e.Elems) == 2 {
			v := e.Elems[1]
			if v.Kind == ExprCall && v.Text == "htons" && len(v.Elems) == 1 && v.Elems[0].Kind == ExprInt {
				return uint16(v.Elems[0].Int), true
			}
		}
	}
	return 0, false
}

func (r *runner) listenCall(sc *Syscall) {
	r.nargs(sc, 2)
	s := r.sockArg(sc)
	backlog := int(r.intValue(sc.Args[1]))
	if s.kind != sockNew {
		r.fail("listen on a socket that is not new")
	}
	ln, err := r.eng.listen(r.stackAddr(), s.port, backlog, s.maxSeg)
	if err == nil {
		s.kind, s.ln = sockListener, ln
		r.sut, r.sutLn = nil, s
	}
	r.checkResult(sc, 0, err, false)
}

func (r *runner) accept(sc *Syscall, start, end time.Duration) {
	s := r.sockArg(sc)
	if s.kind != sockListener {
		r.blockable(sc, start, end, 0, func() (bool, int64, error) { return true, -1, syscall.EINVAL },
			func(ret int64, err error) { r.checkResult(sc, ret, err, true) })
		return
	}
	fd := int(r.intValue(sc.Result))
	op := func() (bool, int64, error) {
		c, err := s.ln.accept()
		if errors.Is(err, errAgain) && !s.nonblock {
			return false, 0, nil
		}
		if err != nil {
			return true, -1, err
		}
		cs := r.connByPeer(c.remotePort())
		if cs == nil || cs.localPort != c.localPort() {
			cs = r.addConn(&connState{localPort: c.localPort(), peerPort: c.remotePort(), passive: true})
		}
		cs.ec = c
		if fd < 0 {
			return true, int64(fd), nil // checkResult reports it
		}
		if _, dup := r.socks[fd]; dup {
			r.fail("accept: file descriptor %d is in use", fd)
		}
		ns := &sock{fd: fd, kind: sockConn, c: cs}
		r.inherit(ns, s)
		r.socks[fd] = ns
		r.sut, r.sutLn = cs, nil
		return true, int64(fd), nil
	}
	r.blockable(sc, start, end, 0, op, func(ret int64, err error) { r.checkResult(sc, ret, err, true) })
}

// inherit gives an accepted socket the options set on its listener, as
// Linux's children inherit them, and applies them.
func (r *runner) inherit(ns, ls *sock) {
	ns.nodelay, ns.nodelaySet = ls.nodelay, ls.nodelaySet
	ns.sndbuf, ns.sndbufSet = ls.sndbuf, ls.sndbufSet
	ns.rcvbuf, ns.rcvbufSet = ls.rcvbuf, ls.rcvbufSet
	ns.userTimeout, ns.utSet = ls.userTimeout, ls.utSet
	ns.keepalive, ns.keepSet, ns.keepParamSet = ls.keepalive, ls.keepSet, ls.keepParamSet
	ns.keepIdle, ns.keepIntvl, ns.keepCount = ls.keepIdle, ls.keepIntvl, ls.keepCount
	ns.lingerOn, ns.lingerSecs = ls.lingerOn, ls.lingerSecs
	ns.maxSeg = ls.maxSeg
	ns.cork, ns.corkSet = ls.cork, ls.corkSet
	r.applyOptions(ns, "")
}

// applyOptions gives the engine's connection the socket's options.
func (r *runner) applyOptions(s *sock, name string) {
	c := r.sockConn(s)
	if c == nil {
		return
	}
	// Setting TCP_CORK or TCP_NODELAY on a connection is an act as well
	// as a setting (uncorking, or TCP_NODELAY, pushes what waits): done
	// when that option is set, not again with every other.
	if s.corkSet && (name == "" || name == "TCP_CORK") {
		c.setCork(s.cork)
	}
	if s.nodelaySet && (name == "" || name == "TCP_NODELAY") {
		c.setNoDelay(s.nodelay)
	}
	if s.sndbufSet || s.rcvbufSet {
		c.setBuffers(s.sndbuf, s.rcvbuf)
	}
	if s.utSet {
		c.setUserTimeout(s.userTimeout)
	}
	if s.keepSet || s.keepParamSet {
		c.setKeepAlive(s.keepalive, r.keepValue(s.keepIdle, r.set.keepIdle), r.keepValue(s.keepIntvl, r.set.keepIntvl), max(s.keepCount, r.set.keepCount))
	}
}

func (r *runner) keepValue(sock, sysctl time.Duration) time.Duration {
	if sock > 0 {
		return sock
	}
	return sysctl
}

func (r *runner) sockConn(s *sock) *conn {
	if s.kind != sockConn || s.c == nil {
		return nil
	}
	return r.engineConn(s.c)
}

func (r *runner) connectCall(sc *Syscall, start, end time.Duration) {
	s := r.sockArg(sc)
	if s.kind != sockNew {
		panic(needs("connect on a socket that is not new (%d)", s.fd))
	}
	ec, err := r.eng.connect(r.peerAddr(), r.connect, s.maxSeg)
	if err != nil {
		r.checkResult(sc, -1, err, false)
		return
	}
	cs := r.addConn(&connState{localPort: ec.localPort(), peerPort: r.connect, ec: ec})
	s.kind, s.c = sockConn, cs
	r.sut, r.sutLn = cs, nil
	r.applyOptions(s, "")
	if s.nonblock {
		r.drain()
		r.checkResult(sc, -1, syscall.EINPROGRESS, false)
		return
	}
	r.blockable(sc, start, end, 0, func() (bool, int64, error) {
		ok, err := ec.established()
		switch {
		case err != nil:
			return true, -1, err
		case ok:
			return true, 0, nil
		}
		return false, 0, nil
	}, func(ret int64, err error) { r.checkResult(sc, ret, err, false) })
}

// maxIO bounds the bytes of one read or write call.
const maxIO = 64 << 20

func (r *runner) write(sc *Syscall, start, end time.Duration) {
	s := r.sockArg(sc)
	var n int64
	var flags int64
	switch sc.Name {
	case "write":
		r.nargs(sc, 3)
		n = r.intValue(sc.Args[2])
	case "send":
		r.nargs(sc, 4)
		n = r.intValue(sc.Args[2])
		flags = r.intValue(sc.Args[3])
	case "sendto":
		n = r.intValue(r.arg(sc, 2))
		flags = r.intValue(r.arg(sc, 3))
	case "sendmsg":
		r.nargs(sc, 3)
		n = r.iovLen(sc.Args[1])
		flags = r.intValue(sc.Args[2])
	case "writev":
		r.nargs(sc, 3)
		n = r.iovLen(&Expr{Kind: ExprStruct, Elems: []*Expr{{Kind: ExprAssign, Text: "msg_iov", Elems: []*Expr{{Kind: ExprWord}, sc.Args[1]}}}})
	}
	if n < 0 || n > maxIO {
		r.fail("%s of %d bytes", sc.Name, n)
	}
	nonblock := s.nonblock
	if flags&0x40 != 0 { // MSG_DONTWAIT
		nonblock = true
		flags &^= 0x40
	}
	more := flags&0x8000 != 0 // MSG_MORE: Endpoint.WriteMore
	flags &^= 0x8000
	if flags&^0x4000 != 0 { // MSG_NOSIGNAL is what tapstack does anyway
		panic(needs("send flags %#x", flags))
	}
	c := r.sockConn(s)
	if c == nil {
		r.blockable(sc, start, end, 0, func() (bool, int64, error) { return true, -1, syscall.ENOTCONN },
			func(ret int64, err error) { r.checkResult(sc, ret, err, false) })
		return
	}
	var written int64
	zeros := make([]byte, min(n, 64<<10))
	op := func() (bool, int64, error) {
		for range maxIO/len(zeros) + 2 {
			if written == n {
				return true, written, nil
			}
			k, err := c.write(zeros[:min(int64(len(zeros)), n-written)], more)
			written += int64(k)
			switch {
			case errors.Is(err, errAgain):
				if nonblock {
					if written > 0 {
						return true, written, nil
					}
					return true, -1, err
				}
				return false, 0, nil
			case err != nil:
				if written > 0 {
					return true, written, nil
				}
				return true, -1, err
			case k == 0:
				return false, 0, nil
			}
		}
		return true, written, nil
	}
	if n == 0 {
		op = func() (bool, int64, error) { return true, 0, nil }
	}
	r.blockable(sc, start, end, 0, op, func(ret int64, err error) { r.checkResult(sc, ret, err, false) })
}

// iovLen sums the lengths of a msghdr's or writev's iovecs:
// msg_iov(1)=[{..., 40}].
func (r *runner) iovLen(x *Expr) int64 {
	if x.Kind != ExprStruct {
		r.fail("expected a msghdr, found %s", x)
	}
	for _, e := range x.Elems {
		if e.Kind == ExprAssign && e.Text == "msg_control" {
			if v := e.Elems[1]; v.Kind == ExprList && len(v.Elems) > 0 {
				panic(needs("control messages"))
			}
		}
		if e.Kind != ExprAssign || e.Text != "msg_iov" {
			continue
		}
		list := e.Elems[1]
		if list.Kind != ExprList {
			r.fail("msg_iov is not a list: %s", list)
		}
		var n int64
		for _, iov := range list.Elems {
			if iov.Kind != ExprStruct || len(iov.Elems) != 2 {
				r.fail("bad iovec %s", iov)
			}
			n += r.intValue(iov.Elems[1])
		}
		return n
	}
	r.fail("msghdr without msg_iov: %s", x)
	return 0
}

func (r *runner) read(sc *Syscall, start, end time.Duration) {
	s := r.sockArg(sc)
	var n, flags int64
	switch sc.Name {
	case "read":
		r.nargs(sc, 3)
		n = r.intValue(sc.Args[2])
	case "recv", "recvfrom":
		n = r.intValue(r.arg(sc, 2))
		flags = r.intValue(r.arg(sc, 3))
	case "recvmsg":
		r.nargs(sc, 3)
		n = r.iovLen(sc.Args[1])
		flags = r.intValue(sc.Args[2])
	case "readv":
		r.nargs(sc, 3)
		n = r.iovLen(&Expr{Kind: ExprStruct, Elems: []*Expr{{Kind: ExprAssign, Text: "msg_iov", Elems: []*Expr{{Kind: ExprWord}, sc.Args[1]}}}})
	}
	if n < 0 || n > maxIO {
		r.fail("%s of %d bytes", sc.Name, n)
	}
	nonblock := s.nonblock
	if flags&0x40 != 0 {
		nonblock = true
		flags &^= 0x40
	}
	if flags != 0 {
		panic(needs("receive flags %#x (MSG_PEEK, MSG_WAITALL)", flags))
	}
	c := r.sockConn(s)
	if c == nil {
		r.blockable(sc, start, end, 0, func() (bool, int64, error) { return true, -1, syscall.ENOTCONN },
			func(ret int64, err error) { r.checkResult(sc, ret, err, false) })
		return
	}
	buf := make([]byte, n)
	op := func() (bool, int64, error) {
		k, err := c.read(buf)
		switch {
		case k > 0:
			return true, int64(k), nil
		case errors.Is(err, io.EOF):
			return true, 0, nil
		case errors.Is(err, errAgain):
			if nonblock {
				return true, -1, err
			}
			return false, 0, nil
		case err != nil:
			return true, -1, err
		}
		return true, 0, nil
	}
	r.blockable(sc, start, end, 0, op, func(ret int64, err error) { r.checkResult(sc, ret, err, false) })
}

func (r *runner) closeCall(sc *Syscall) {
	r.nargs(sc, 1)
	s := r.sockArg(sc)
	var err error
	switch s.kind {
	case sockListener:
		s.ln.close()
	case sockConn:
		if c := r.sockConn(s); c != nil {
			if s.lingerOn && s.lingerSecs == 0 {
				c.reset() // SO_LINGER with a zero timeout: abort
			} else {
				err = c.close()
			}
		}
	}
	delete(r.socks, s.fd)
	r.checkResult(sc, 0, err, false)
	r.drain()
}

func (r *runner) shutdown(sc *Syscall) {
	r.nargs(sc, 2)
	s := r.sockArg(sc)
	how := r.intValue(sc.Args[1])
	c := r.sockConn(s)
	var err error
	switch {
	case c == nil:
		err = syscall.ENOTCONN
	case how == 0:
		err = c.closeRead()
	case how == 1:
		err = c.closeWrite()
	case how == 2:
		if err = c.closeRead(); err == nil {
			err = c.closeWrite()
		}
	default:
		err = syscall.EINVAL
	}
	r.checkResult(sc, 0, err, false)
	r.drain()
}

// optName returns a setsockopt or getsockopt's level and option names.
func (r *runner) optName(sc *Syscall) (level, name string) {
	l, n := r.arg(sc, 1), r.arg(sc, 2)
	if l.Kind != ExprWord || n.Kind != ExprWord {
		panic(needs("%s with numeric level or option (%s, %s)", sc.Name, l, n))
	}
	level = l.Text
	if level == "IPPROTO_TCP" {
		level = "SOL_TCP"
	}
	return level, n.Text
}

func (r *runner) setsockopt(sc *Syscall) {
	r.nargs(sc, 5)
	s := r.sockArg(sc)
	level, name := r.optName(sc)
	val := sc.Args[3]
	iv := func() int64 { return r.intValue(val) }
	switch level + "." + name {
	case "SOL_SOCKET.SO_REUSEADDR", "SOL_SOCKET.SO_REUSEPORT":
		// Ports are never held back by TIME-WAIT against a listener.
	case "SOL_SOCKET.SO_SNDBUF":
		// Linux doubles the value for its bookkeeping overhead
		// (sock_setsockopt) and reports the double.
		s.sndbuf, s.sndbufSet = int(2*max(iv(), 0)), true
	case "SOL_SOCKET.SO_RCVBUF":
		s.rcvbuf, s.rcvbufSet = int(2*max(iv(), 0)), true
	case "SOL_SOCKET.SO_KEEPALIVE":
		s.keepalive, s.keepSet = iv() != 0, true
	case "SOL_SOCKET.SO_LINGER":
		on, secs, ok := lingerValue(val)
		if !ok {
			r.fail("SO_LINGER wants {onoff=N, linger=N}, found %s", val)
		}
		s.lingerOn, s.lingerSecs = on, secs
		if on && secs > 0 {
			panic(needs("SO_LINGER with a timeout (close waiting for the send queue)"))
		}
	case "SOL_TCP.TCP_NODELAY":
		s.nodelay, s.nodelaySet = iv() != 0, true
	case "SOL_TCP.TCP_USER_TIMEOUT":
		s.userTimeout, s.utSet = time.Duration(max(iv(), 0))*time.Millisecond, true
	case "SOL_TCP.TCP_KEEPIDLE":
		s.keepIdle, s.keepParamSet = time.Duration(iv())*time.Second, true
	case "SOL_TCP.TCP_KEEPINTVL":
		s.keepIntvl, s.keepParamSet = time.Duration(iv())*time.Second, true
	case "SOL_TCP.TCP_KEEPCNT":
		s.keepCount, s.keepParamSet = int(iv()), true
	case "SOL_TCP.TCP_QUICKACK":
		// Not a setting but an act on the connection, as in Linux.
		c := r.sockConn(s)
		if c == nil {
			panic(needs("TCP_QUICKACK on a socket without a connection"))
		}
		c.setQuickAck(iv() != 0)
	case "SOL_TCP.TCP_MAXSEG":
		// Linux takes 0 or 88 to 32767 (TCP_MIN_MSS, MAX_TCP_WINDOW).
		// It takes effect at connect or listen; later, Linux only
		// records it, and so does the runner.
		n := iv()
		if n != 0 && (n < 88 || n > 32767) {
			r.checkResult(sc, -1, syscall.EINVAL, false)
			return
		}
		s.maxSeg = int(n)
		if s.kind == sockListener {
			s.ln.setMaxSegment(s.maxSeg)
		}
	case "SOL_TCP.TCP_CORK":
		s.cork, s.corkSet = iv() != 0, true
	default:
		panic(needs("setsockopt %s", name))
	}
	r.applyOptions(s, name)
	r.checkResult(sc, 0, nil, false)
	r.drain()
}

func lingerValue(x *Expr) (bool, int64, bool) {
	if x.Kind != ExprStruct || len(x.Elems) != 2 {
		return false, 0, false
	}
	var on, secs int64
	for _, e := range x.Elems {
		if e.Kind != ExprAssign || e.Elems[1].Kind != ExprInt {
			return false, 0, false
		}
		switch e.Text {
		case "onoff":
			on = e.Elems[1].Int
		case "linger":
			secs = e.Elems[1].Int
		default:
			return false, 0, false
		}
	}
	return on != 0, secs, true
}

func (r *runner) getsockopt(sc *Syscall) {
	r.nargs(sc, 5)
	s := r.sockArg(sc)
	level, name := r.optName(sc)
	c := r.sockConn(s)
	var v int64
	switch level + "." + name {
	case "SOL_SOCKET.SO_ERROR":
		if c != nil {
			if err := c.pendingError(); err != nil {
				var en syscall.Errno
				if errors.As(err, &en) {
					v = int64(en)
				}
			}
		}
	case "SOL_SOCKET.SO_SNDBUF":
		if !s.sndbufSet {
			panic(needs("SO_SNDBUF before setsockopt (Linux's autotuned size)"))
		}
		v = int64(s.sndbuf)
	case "SOL_SOCKET.SO_RCVBUF":
		if !s.rcvbufSet {
			panic(needs("SO_RCVBUF before setsockopt (Linux's autotuned size)"))
		}
		v = int64(s.rcvbuf)
	case "SOL_SOCKET.SO_KEEPALIVE":
		v = int64(b2i(s.keepalive))
	case "SOL_TCP.TCP_NODELAY":
		v = int64(b2i(s.nodelay))
	case "SOL_TCP.TCP_USER_TIMEOUT":
		v = s.userTimeout.Milliseconds()
	case "SOL_TCP.TCP_MAXSEG":
		// Linux: the current send MSS once connected
		// (tp->mss_cache); before, the clamp TCP_MAXSEG set, or
		// TCP_MSS_DEFAULT.
		v = 536
		switch {
		case c != nil && c.synchronized():
			v = int64(c.sndMSS())
		case s.maxSeg > 0:
			v = int64(s.maxSeg)
		}
	default:
		panic(needs("getsockopt %s", name))
	}
	if want := sc.Args[3]; want.Kind != ExprEllipsis {
		if w := r.intValue(want); w != v {
			r.fail("getsockopt %s: expected [%d], got [%d]", name, w, v)
		}
	}
	r.checkResult(sc, 0, nil, false)
}

func (r *runner) fcntl(sc *Syscall) {
	s := r.sockArg(sc)
	cmd := r.arg(sc, 1)
	if cmd.Kind != ExprWord {
		panic(needs("fcntl %s", cmd))
	}
	switch cmd.Text {
	case "F_GETFL":
		v := int64(2) // O_RDWR
		if s.nonblock {
			v |= 0x800
		}
		r.checkResult(sc, v, nil, false)
	case "F_SETFL":
		s.nonblock = r.intValue(r.arg(sc, 2))&0x800 != 0
		r.checkResult(sc, 0, nil, false)
	default:
		panic(needs("fcntl %s", cmd.Text))
	}
}

func (r *runner) ioctl(sc *Syscall) {
	r.nargs(sc, 3)
	s := r.sockArg(sc)
	req := r.arg(sc, 1)
	c := r.sockConn(s)
	if c == nil {
		r.fail("ioctl on a socket without a connection")
	}
	var v int64
	switch req.Text {
	case "SIOCINQ", "FIONREAD":
		v = int64(c.recvQueued())
	case "SIOCOUTQ", "TIOCOUTQ":
		v = int64(c.sendQueued())
	default:
		panic(needs("ioctl %s", req))
	}
	if want := sc.Args[2]; want.Kind != ExprEllipsis {
		if w := r.intValue(want); w != v {
			r.fail("ioctl %s: expected [%d], got [%d]", req.Text, w, v)
		}
	}
	r.checkResult(sc, 0, nil, false)
}

// poll([{fd=3, events=POLLIN, revents=POLLIN}], 1, timeout_ms).
func (r *runner) poll(sc *Syscall, start, end time.Duration) {
	r.nargs(sc, 3)
	list := sc.Args[0]
	if list.Kind != ExprList {
		r.fail("poll wants a list of pollfd, found %s", list)
	}
	type pfd struct {
		s               *sock
		events, revents int64
		check           bool
	}
	var fds []pfd
	for _, e := range list.Elems {
		var p pfd
		if e.Kind != ExprStruct {
			r.fail("bad pollfd %s", e)
		}
		for _, f := range e.Elems {
			if f.Kind != ExprAssign {
				r.fail("bad pollfd %s", e)
			}
			switch f.Text {
			case "fd":
				fd := int(r.intValue(f.Elems[1]))
				s, ok := r.socks[fd]
				if !ok {
					r.fail("poll: no socket with file descriptor %d", fd)
				}
				p.s = s
			case "events":
				p.events = r.intValue(f.Elems[1])
			case "revents":
				p.revents, p.check = r.intValue(f.Elems[1]), true
			}
		}
		if p.s == nil {
			r.fail("pollfd without fd: %s", e)
		}
		if p.s.kind == sockListener {
			panic(needs("poll on a listening socket"))
		}
		fds = append(fds, p)
	}
	timeout := r.intValue(sc.Args[2])
	ready := func() (int64, []int64) {
		var n int64
		got := make([]int64, len(fds))
		for i, p := range fds {
			c := r.sockConn(p.s)
			if c == nil {
				continue
			}
			var rev int64
			if c.readable() {
				rev |= 0x1 | 0x40
			}
			if c.synchronized() && c.writable() {
				rev |= 0x4 | 0x100
			}
			if err := c.pendingError(); err != nil {
				rev |= 0x8
			}
			got[i] = rev & (p.events | 0x8 | 0x10)
			if got[i] != 0 {
				n++
			}
		}
		return n, got
	}
	deadline := start + time.Duration(timeout)*time.Millisecond
	var got []int64
	op := func() (bool, int64, error) {
		n, g := ready()
		got = g
		if n > 0 || timeout == 0 || (timeout > 0 && r.eng.now() >= deadline) {
			return true, n, nil
		}
		return false, 0, nil
	}
	check := func(ret int64, err error) {
		r.checkResult(sc, ret, err, false)
		for i, p := range fds {
			if p.check && p.revents != got[i] {
				r.fail("poll: fd %d revents %#x, expected %#x", p.s.fd, got[i], p.revents)
			}
		}
	}
	var wake time.Duration
	if timeout > 0 {
		wake = deadline
	}
	r.blockable(sc, start, end, wake, op, check)
}
