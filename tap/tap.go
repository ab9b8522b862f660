//go:build linux

package tap

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tunPath is the clone device through which Linux hands out TUN/TAP devices.
const tunPath = "/dev/net/tun"

// DefaultMTU is the IP MTU of a device or pipe unless an option says
// otherwise. It matches the kernel's default for a new TAP device.
const DefaultMTU = 1500

// maxFrame is the size of the read buffer. A TAP read returns one whole frame
// and silently truncates it if the buffer is short, so the buffer is sized
// for the largest frame the kernel could hand us (an IP packet of 64 KiB plus
// an Ethernet header with a VLAN tag), not for our own MTU, which the kernel
// side does not know about.
const maxFrame = 1<<16 + header.EthernetMinimumSize + 4

// Option configures [Open].
type Option func(*config)

type config struct {
	mtu      uint32
	mac      net.HardwareAddr
	offloads bool
	gro      bool
	coalesce bool
	txQueue  int
	rxQueue  int
	queues   int
}

// WithMTU sets the IP MTU of the endpoint (the Ethernet payload size; the
// frame MTU is 14 bytes more). It should equal the MTU of the kernel side of
// the device (ip link set NAME mtu N); Open does not change the kernel's.
func WithMTU(mtu uint32) Option {
	return func(c *config) { c.mtu = mtu }
}

// WithMAC sets the endpoint's MAC address. It must be a 6-byte unicast
// address, and should differ from the kernel side's MAC, or the kernel will
// not accept frames addressed to us as coming from a neighbour.
func WithMAC(mac net.HardwareAddr) Option {
	return func(c *config) { c.mac = append(net.HardwareAddr(nil), mac...) }
}

// Device is an open Linux TAP device. Its [Device.LinkEndpoint] is given to a
// gVisor stack (stack.CreateNIC); frames the kernel sends to the device are
// delivered to that stack and frames the stack writes go to the kernel.
//
// The device's file descriptor stays bound to the device in the network
// namespace in which Open ran, whichever thread later reads or writes it.
type Device struct {
	name string
	ep   *ethernet.Endpoint
	link *fdLink
}

// DeviceStats counts frames through a [Device]. With offloads, a
// super-frame counts as the frames it stands for in RxFrames (as many as
// reached the stack) and TxFrames (as many as the stack wrote), and once
// in the super-frame counters.
type DeviceStats struct {
	RxFrames, RxBytes uint64 // frames delivered to the stack
	TxFrames, TxBytes uint64 // frames of the stack written to the kernel
	RxDropped         uint64 // frames read but not delivered: runts, a bad virtio-net header, or no stack attached
	TxDropped         uint64 // frames dropped on the way out: the outbound queue or the kernel's (EAGAIN/ENOBUFS) was full
	TxErrors          uint64 // other write errors

	RxSuperFrames  uint64 // TCP super-frames the kernel handed over (TSO)
	RxSegments     uint64 // the wire segments they stood for
	RxBadOffload   uint64 // frames dropped because their virtio-net header did not fit them
	RxBadChecksum  uint64 // frames the kernel did not vouch for whose checksum failed the device's check, a fragment's that of its datagram (fragcheck.go)
	RxFragLimit    uint64 // fragments dropped because the device kept the sums of as many datagrams, or fragments of one, as it may (fragcheck.go)
	RxQueueFull    uint64 // times the read loop waited for room in the queue to the stack (WithRxQueue)
	RxChunksReused uint64 // reads into a 64 KiB chunk an earlier frame used and the stack let go of, not one gVisor's pool cleared first (rx.go)
	RxJoins        uint64 // super-frames the device joined from wire segments it read, without offloads (GRO: gro.go)
	RxJoined       uint64 // the wire segments inside them
	TxSuperFrames  uint64 // super-frames written: runs of the stack's segments coalesced into one write
	TxCoalesced    uint64 // the stack's segments written inside them
	TxGSOFrames    uint64 // super-frames the stack itself built (its GSO), written as they are
	TxGSOSegments  uint64 // the wire segments they stood for
	TxBadChecksum  uint64 // segments kept out of a super-frame because their TCP checksum failed (a middleware above corrupted them): written alone, for the kernel to drop alone
}

// Open attaches to the Linux TAP device name, creating it if it does not
// exist. An existing device, for example one made by "ip tuntap add name
// NAME mode tap", keeps its persistence: it outlives the Device. A device
// created by Open disappears when the Device is closed.
//
// Open needs CAP_NET_ADMIN to create a device, or to attach to one it does
// not own. The returned errors say which requirement failed and wrap the
// underlying error, so errors.Is(err, os.ErrPermission) and
// errors.Is(err, fs.ErrNotExist) keep working.
//
// Open does not bring the kernel side up or give it addresses; that is the
// business of the host ("ip link set NAME up").
func Open(name string, opts ...Option) (*Device, error) {
	c := config{mtu: DefaultMTU, offloads: true, gro: true, coalesce: true, txQueue: DefaultTxQueue, rxQueue: DefaultRxQueue, queues: 1}
	for _, o := range opts {
		o(&c)
	}
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("tap: open %q: %w", name, err)
	}
	if c.mtu < header.IPv4MinimumMTU || c.mtu > maxFrame-header.EthernetMinimumSize-4 {
		return nil, fmt.Errorf("tap: open %q: MTU %d out of range [%d, %d]", name, c.mtu, header.IPv4MinimumMTU, maxFrame-header.EthernetMinimumSize-4)
	}
	if c.mac == nil {
		c.mac = RandomMAC()
	} else if err := validMAC(c.mac); err != nil {
		return nil, fmt.Errorf("tap: open %q: %w", name, err)
	}

	if c.txQueue < 1 {
		c.txQueue = 1
	}
	if c.queues < 1 || c.queues > maxQueues {
		return nil, fmt.Errorf("tap: open %q: %d queues out of range [1, %d]", name, c.queues, maxQueues)
	}

	multi := c.queues > 1
	f, actual, offloads, err := openTAP(name, c.offloads, multi)
	if err != nil {
		return nil, err
	}
	files := []*os.File{f}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
	}
	for len(files) < c.queues {
		// The device exists now, under its actual name: each further
		// TUNSETIFF attaches one more queue to it.
		f, _, got, err := openTAP(actual, c.offloads, true)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("tap: open %q: queue %d: %w", name, len(files), err)
		}
		files = append(files, f)
		if got != offloads {
			closeAll()
			return nil, fmt.Errorf("tap: open %q: queue %d got offloads %+v, queue 0 %+v", name, len(files)-1, got, offloads)
		}
	}
	rcs := make([]syscall.RawConn, len(files))
	for i, f := range files {
		if rcs[i], err = f.SyscallConn(); err != nil {
			closeAll()
			return nil, fmt.Errorf("tap: open %q: %w", name, err)
		}
	}
	if offloads.VnetHdr {
		offloads.Coalesce = c.coalesce
		offloads.GRO = c.gro && (offloads.TSO4 || offloads.TSO6)
	}
	l := newFDLink(c, offloads, files, rcs)
	return &Device{name: actual, ep: ethernet.New(l), link: l}, nil
}

// newFDLink is the link over descriptors files, one per queue, with the
// offloads the kernel granted: for each queue its write path and outbound
// queue, whose writer goroutine it starts, and its read path. The read
// loops start at Attach.
func newFDLink(c config, offloads Offloads, files []*os.File, rcs []syscall.RawConn) *fdLink {
	l := &fdLink{
		mac:        tcpip.LinkAddress(c.mac),
		offloads:   offloads,
		rxQueueLen: max(c.rxQueue, 0),
		softGRO:    c.gro && !offloads.VnetHdr,
	}
	for i, f := range files {
		q := &devQueue{f: f, rc: rcs[i]}
		q.tx = newTxPath(l, q, offloads.VnetHdr, offloads.Coalesce)
		q.rx = newRxReader(l, q.rc)
		q.txq = newTxQueue(q.tx, c.txQueue)
		l.qs = append(l.qs, q)
	}
	// The inner endpoint deals in whole frames, so its MTU includes the
	// Ethernet header; ethernet.Endpoint subtracts it again.
	l.mtu.Store(c.mtu + header.EthernetMinimumSize)
	return l
}

// openTAP opens the clone device and binds the descriptor to the TAP device
// name (TUNSETIFF).
//
// We do this with x/sys/unix rather than github.com/songgao/water because
// water, as of v0.0.0-20200317203138, (1) always issues TUNSETPERSIST 0, which
// turns a persistent device made by "ip tuntap add" into one that vanishes
// when we close it, (2) opens without O_CLOEXEC, so every command a test runs
// (ip, ping) inherits the descriptor and keeps the device alive, and (3) leaks
// the descriptor when TUNSETIFF fails. The part of water that matters, a
// non-blocking descriptor wrapped by os.NewFile, is kept: the runtime poller
// then owns the descriptor, so Close unblocks a pending Read and
// SetReadDeadline works.
//
// With offloads, the descriptor is opened with IFF_VNET_HDR if the driver
// offers it, and asks for checksum and TCP segmentation offloads; what it
// got is returned.
//
// multi opens it with IFF_MULTI_QUEUE, as one queue of a multiqueue
// device.
func openTAP(name string, offloads, multi bool) (*os.File, string, Offloads, error) {
	var got Offloads
	fd, err := unix.Open(tunPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		perr := &os.PathError{Op: "open", Path: tunPath, Err: err}
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, "", got, fmt.Errorf("tap: open %q: the device %s is missing; load the tun module (modprobe tun) or, in a container, pass the device in: %w", name, tunPath, perr)
		case errors.Is(err, unix.ENODEV), errors.Is(err, unix.ENXIO):
			return nil, "", got, fmt.Errorf("tap: open %q: the tun driver behind %s is not loaded (modprobe tun): %w", name, tunPath, perr)
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, "", got, fmt.Errorf("tap: open %q: no access to %s; run with CAP_NET_ADMIN (e.g. as root or after setcap cap_net_admin+ep): %w", name, tunPath, perr)
		}
		return nil, "", got, fmt.Errorf("tap: open %q: %w", name, perr)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, "", got, fmt.Errorf("tap: open %q: bad interface name: %w", name, err)
	}
	// IFF_NO_PI: frames come without the 4-byte packet-information prefix.
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	if offloads && vnetSupported(fd) {
		// IFF_VNET_HDR: every frame comes and goes with a virtio-net
		// header. It is a property of this attachment, not of the
		// device, so a device made by "ip tuntap add" without
		// vnet_hdr takes it too.
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		serr := os.NewSyscallError("ioctl TUNSETIFF", err)
		switch {
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, "", got, fmt.Errorf("tap: open %q: creating or attaching to a TAP device needs CAP_NET_ADMIN (or ownership of a persistent device): %w", name, serr)
		case errors.Is(err, unix.EBUSY):
			return nil, "", got, fmt.Errorf("tap: open %q: the device is already attached to another file descriptor: %w", name, serr)
		case errors.Is(err, unix.EINVAL) && multi:
			return nil, "", got, fmt.Errorf("tap: open %q: an interface with this name exists but is not a multi-queue TAP device without packet information (is it a TUN, or made without multi_queue?): %w", name, serr)
		case errors.Is(err, unix.EINVAL):
			return nil, "", got, fmt.Errorf("tap: open %q: an interface with this name exists but is not a single-queue TAP device without packet information (is it a TUN, or multi_queue, which takes two or more queues?): %w", name, serr)
		}
		return nil, "", got, fmt.Errorf("tap: open %q: %w", name, serr)
	}
	if flags&unix.IFF_VNET_HDR != 0 {
		got.VnetHdr = true
		// Without TUNSETOFFLOAD the kernel hands over only whole,
		// checksummed frames; the header stays, empty.
		if setOffloads(fd) == nil {
			got.Checksum, got.TSO4, got.TSO6 = true, true, true
		}
	} else if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
		// A persistent device keeps the offloads an earlier opener
		// set (TUNSETOFFLOAD sets the device's features, not the
		// descriptor's): the kernel would go on handing over frames
		// with partial checksums, and super-frames, to a reader with
		// no virtio-net header to say so, and its stack would drop
		// them as corrupt (a handshake that never completes). Cleared,
		// the kernel checksums and segments every frame itself. A
		// kernel without the ioctl has no offloads to clear.
		unix.Close(fd)
		return nil, "", got, fmt.Errorf("tap: open %q: clearing the offloads an earlier user of the device set: %w", name, os.NewSyscallError("ioctl TUNSETOFFLOAD", err))
	}
	actual := ifr.Name()
	f := os.NewFile(uintptr(fd), tunPath+":"+actual)
	if f == nil {
		unix.Close(fd)
		return nil, "", got, fmt.Errorf("tap: open %q: bad descriptor", name)
	}
	return f, actual, got, nil
}

// CheckName reports why name cannot be a Linux interface name, following
// the kernel's dev_valid_name, so that the user gets a clear message
// instead of EINVAL from an ioctl. The error says why without repeating
// the name; Open adds it. A program may call it to refuse a bad name
// before anything else is done (tapstack's --tap).
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("empty device name")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("device name is %d bytes; Linux allows at most %d (IFNAMSIZ-1)", len(name), unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return errors.New("device name . or .. is not allowed")
	case strings.ContainsAny(name, "/: \t\n\r\v\f\x00"):
		return errors.New("device name contains '/', ':', NUL or white space")
	}
	return nil
}

// Name returns the name of the device.
func (d *Device) Name() string { return d.name }

// MAC returns the MAC address of the stack's side of the device.
func (d *Device) MAC() net.HardwareAddr {
	return net.HardwareAddr(d.link.LinkAddress())
}

// LinkEndpoint returns the Ethernet link endpoint of the device, to be given
// to exactly one gVisor NIC. When the stack removes the NIC (RemoveNIC,
// Destroy) it closes the endpoint, and with it the device. On a gVisor
// stack of your own, remove the NIC before Stack.Destroy: Destroy waits
// for the device's goroutines while it holds the stack's lock, which a
// frame being delivered at that moment needs, and would wait forever
// (tapstack's stack.Stack removes its NICs first).
func (d *Device) LinkEndpoint() stack.LinkEndpoint { return d.ep }

// Stats returns the device's counters.
func (d *Device) Stats() DeviceStats { return d.link.stats() }

func (l *fdLink) stats() DeviceStats {
	return DeviceStats{
		RxFrames:  l.rxFrames.Load(),
		RxBytes:   l.rxBytes.Load(),
		TxFrames:  l.txFrames.Load(),
		TxBytes:   l.txBytes.Load(),
		RxDropped: l.rxDropped.Load(),
		TxDropped: l.txDropped.Load(),
		TxErrors:  l.txErrors.Load(),

		RxSuperFrames:  l.rxSuper.Load(),
		RxSegments:     l.rxSegments.Load(),
		RxBadOffload:   l.rxBadOffload.Load(),
		RxBadChecksum:  l.rxBadChecksum.Load(),
		RxFragLimit:    l.rxFragLimit.Load(),
		RxQueueFull:    l.rxQueueFull.Load(),
		RxChunksReused: l.rxChunksReused.Load(),
		RxJoins:        l.rxJoins.Load(),
		RxJoined:       l.rxJoined.Load(),
		TxSuperFrames:  l.txSuper.Load(),
		TxCoalesced:    l.txCoalesced.Load(),
		TxGSOFrames:    l.txGSO.Load(),
		TxGSOSegments:  l.txGSOSegs.Load(),
		TxBadChecksum:  l.txBadChecksum.Load(),
	}
}

// Offloads returns the offloads the device uses.
func (d *Device) Offloads() Offloads {
	o := d.link.offloads
	if d.link.gsoRefused.Load() {
		o.Coalesce = false
	}
	return o
}

// Err returns the error that stopped the read loop, or nil if it is running
// or was stopped by Close or by detaching the endpoint.
func (d *Device) Err() error {
	d.link.mu.Lock()
	defer d.link.mu.Unlock()
	return d.link.readErr
}

// Queues returns the number of the device's queues (WithQueues).
func (d *Device) Queues() int { return len(d.link.qs) }

// Close closes the device and waits for its read goroutines (and their
// delivery goroutine) to finish. It is safe to call more
// than once and after the stack closed the endpoint. Close must not be
// called from within a packet handler, which runs on one of them.
func (d *Device) Close() error {
	err := d.link.close()
	d.link.Wait()
	return err
}

// fdLink is the inner, header-less link endpoint over the TAP descriptor.
// gVisor's ethernet.Endpoint wraps it to add and parse Ethernet headers.
type fdLink struct {
	qs []*devQueue // the device's queues (queues.go), fixed at Open

	mtu atomic.Uint32 // frame MTU: IP MTU + Ethernet header

	offloads   Offloads        // fixed at Open
	gsoRefused atomic.Bool     // the kernel refused a super-frame: coalescing is off
	rxQueueLen int             // the inbound hand-over's limit; 0: none, frames are delivered on the read loops
	softGRO    bool            // no offloads, GRO asked for: the read loops join segments (gro.go)
	splits     splitDeliveries // the split super-frames' segments being delivered (rejoin.go)

	rxFrames, rxBytes, txFrames, txBytes atomic.Uint64
	rxDropped, txDropped, txErrors       atomic.Uint64
	rxSuper, rxSegments, rxBadOffload    atomic.Uint64
	rxBadChecksum, rxQueueFull           atomic.Uint64
	rxChunksReused, rxFragLimit          atomic.Uint64
	frags                                fragChecker // fragments not vouched for: their datagrams' sums
	fullCsum                             atomic.Bool // deliver complete checksums and let the stack verify them
	wireFrames                           atomic.Bool // join no segments: a middleware above needs wire frames
	rxJoins, rxJoined                    atomic.Uint64
	txSuper, txCoalesced                 atomic.Uint64
	txGSO, txGSOSegs, txBadChecksum      atomic.Uint64
	checkJoins                           atomic.Bool // check each segment's checksum before it joins a super-frame
	batchEnd                             hook        // OnBatchEnd
	roomOpened                           hook        // OnOutboundRoom

	wg sync.WaitGroup // the read loops

	mu         sync.Mutex
	mac        tcpip.LinkAddress
	dispatcher stack.NetworkDispatcher
	rxq        *rxQueue // the read loops' hand-over to the stack, while one runs
	stopping   bool     // the read loops should exit at their next deadline
	closed     bool
	closeErr   error
	readErr    error
	onClose    func()
	onFailure  func(error)
	failErr    error // the failure reported to onFailure, once
}

var _ stack.LinkEndpoint = (*fdLink)(nil)

// Attach implements stack.LinkEndpoint. A non-nil dispatcher starts the read
// loop; nil (the NIC is being removed) asks it to stop.
//
// gVisor's Stack.Wait detaches the NIC, then calls Wait, and only then Close.
// So detaching must be enough to stop the loop: it sets a read deadline in
// the past, which wakes the blocked Read through the runtime poller without
// closing the descriptor.
func (l *fdLink) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dispatcher = d
	if l.closed {
		return
	}
	if d == nil {
		if l.runningLocked() {
			l.stopping = true
			for _, q := range l.qs {
				_ = q.f.SetReadDeadline(time.Unix(1, 0))
			}
		}
		return
	}
	// Re-attached before a stopping loop noticed: let it carry on.
	l.stopping = false
	if !l.runningLocked() {
		l.readErr = nil
	}
	for _, q := range l.qs {
		_ = q.f.SetReadDeadline(time.Time{})
		if q.running {
			continue
		}
		if l.rxq == nil && l.rxQueueLen > 0 {
			l.rxq = newRxQueue(l, l.rxQueueLen)
		}
		q.running = true
		q.rx.rxq = l.rxq
		l.wg.Add(1)
		go l.readLoop(q)
	}
}

// runningLocked reports whether a read loop runs. The caller holds l.mu.
func (l *fdLink) runningLocked() bool {
	for _, q := range l.qs {
		if q.running {
			return true
		}
	}
	return false
}

// readLoop reads frames and delivers them to the stack until the
// endpoint is detached or closed, or a read fails for another reason (the
// device was deleted): every exit path is a terminal condition of the
// descriptor or an explicit request, so the loop is bounded.
//
// Frames go to the stack in bursts of up to maxReadBurst, whatever the
// offloads: through l.rxq (rxqueue.go), whose delivery goroutine marks a
// burst's end when it has delivered all that was read; with
// WithRxQueue(0) on the read loop, which then reads without waiting while
// in a burst, to tell the stack of the burst's end before it sleeps. A
// burst's end is when the receiver's ACKs go (stack/tcp batch.go): the
// kernel sending to tapstack without offloads, two ACKs per burst instead
// of one per second segment.
//
// Each queue has a read loop. They share the inbound queue and its
// delivery goroutine (Attach starts it with the first loop; the last loop
// to exit closes it), or each delivers on its own goroutine.
func (l *fdLink) readLoop(q *devQueue) {
	defer l.wg.Done()
	r := q.rx
	inline := r.rxq == nil
	vnet := l.offloads.VnetHdr
	burst := 0
	for {
		// Reading without waiting, the loop learns that the kernel's
		// queue is empty: a burst ends there (inline), and a run of
		// joined segments goes to the stack (gro.go).
		r.noWait = inline && burst > 0 || r.gro.held()
		var err error
		if vnet {
			var f rxFrame
			if f, err = r.read(); err == nil {
				r.deliverVnet(f)
				r.done(f)
			}
		} else {
			var frame []byte
			if frame, err = r.readPlain(); err == nil {
				r.deliver(frame)
			}
		}
		if err == nil {
			q.reads.Add(1)
		}
		if err == errNoFrame {
			r.groFlush()
			if inline {
				l.batchEnd.call()
			}
			burst = 0
			continue
		}
		if err != nil {
			r.groFlush()
			stop, rxq, failure := l.stopOn(q, err)
			if failure != nil {
				l.fail(failure)
			}
			if stop {
				if rxq != nil {
					rxq.close()
				}
				r.releaseSpent()
				r.gro.release()
				return
			}
			continue
		}
		if burst++; inline && burst >= maxReadBurst {
			r.groFlush()
			l.batchEnd.call()
			burst = 0
		}
	}
}

// OnBatchEnd implements stack's BatchingLink: fn is called on the
// goroutine that delivers frames whenever it has delivered all that were
// read, the delivery goroutine finding its queue empty (rxqueue.go) or the
// read loop finding no frame ready (WithRxQueue(0)), and after every
// maxReadBurst frames.
func (l *fdLink) OnBatchEnd(fn func()) { l.batchEnd.set(fn) }

// maxReadBurst bounds a burst of frames delivered, inline on the read
// loop or by the delivery goroutine: the stack hears of a burst's end, and
// ACKs what it took, at least this often, as Linux's NAPI polls a device
// for at most 64 packets at a time.
const maxReadBurst = 64

// stopOn decides whether a read error ends queue q's loop, and records
// why; the error is also returned when it is a failure of the device.
// The last loop to stop is given the inbound queue, to close.
func (l *fdLink) stopOn(q *devQueue, err error) (stop bool, rxq *rxQueue, failure error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !l.stopping && !l.closed {
			// A detach and re-attach raced past us; the deadline is
			// cleared again, so the next Read blocks.
			return false, nil, nil
		}
	case errors.Is(err, os.ErrClosed):
	default:
		if !l.closed {
			l.readErr = fmt.Errorf("tap: read: %w", err)
			failure = l.readErr
		}
	}
	q.running = false
	q.rx.rxq = nil
	if !l.runningLocked() {
		l.stopping = false
		rxq, l.rxq = l.rxq, nil
	}
	return true, rxq, failure
}

// OnFailure registers fn to be called, once, when the device fails under
// the stack: a read error that ends the read loop (the device was deleted:
// EBADFD) or a write error that says the device is gone or down (EIO,
// EBADFD, ENODEV, ENXIO). A close by Close or by the stack is no failure.
// fn runs on the goroutine that saw the error and must not block;
// stack.Stack's AddNIC registers one that takes the NIC down.
func (l *fdLink) OnFailure(fn func(error)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onFailure = fn
}

// fail reports err to onFailure, once, unless the link was closed. It
// must be called without l.mu.
func (l *fdLink) fail(err error) {
	l.mu.Lock()
	if l.failErr != nil || l.closed {
		l.mu.Unlock()
		return
	}
	l.failErr = err
	fn := l.onFailure
	l.mu.Unlock()
	if fn != nil {
		fn(err)
	}
}

// deviceGone reports whether a write error means that the device cannot
// carry frames any more: deleted (EBADFD: the descriptor lost its device),
// down (EIO), or gone from under the driver (ENODEV, ENXIO). Linux's tun
// driver returns these; a full queue (EAGAIN, ENOBUFS) or a bad frame
// (EINVAL) is not a failure of the device.
func deviceGone(err error) bool {
	return errors.Is(err, unix.EBADFD) || errors.Is(err, unix.EIO) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO)
}

// deliver hands a frame read without a virtio-net header to the stack.
func (r *rxReader) deliver(frame []byte) {
	l := r.l
	d := l.dispatcherNow()
	if d == nil || len(frame) < header.EthernetMinimumSize {
		l.rxDropped.Add(1)
		return
	}
	if !l.groOn() {
		r.groFlush()
	} else if r.groTake(d, frame) {
		return
	}
	// The frame is copied into pooled storage, so buf can be reused for
	// the next read.
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: frameBuffer(frame)})
	l.rxFrames.Add(1)
	l.rxBytes.Add(uint64(len(frame)))
	r.handOver(d, pkt, wireSegment{})
}

// WritePackets implements stack.LinkWriter: frames go to the outbound
// queue (WithTxQueue) and the writer goroutine writes them, each as one
// packet, or with coalescing runs of one flow's segments as one
// super-frame. A frame the queue or the kernel cannot take is dropped and
// counted, like a full NIC queue; blocking here would stall the stack's
// sender. With several queues, each run of frames bound for one queue
// (txQueueOf) goes to it in turn; once a queue refuses a frame, the
// frames after it are refused too, so that the count says which left.
func (l *fdLink) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	all := pkts.AsSlice()
	n := len(l.qs)
	if n == 1 || len(all) == 0 {
		return l.qs[0].txq.enqueue(all)
	}
	sent, qi := 0, txQueueOf(all[0], n)
	for sent < len(all) {
		end, next := sent+1, qi
		for ; end < len(all); end++ {
			if next = txQueueOf(all[end], n); next != qi {
				break
			}
		}
		took, err := l.qs[qi].txq.enqueue(all[sent:end])
		sent += took
		if err != nil {
			return sent, err
		}
		qi = next
	}
	return sent, nil
}

// OutboundRoom implements stack.QueueingLink: how many more frames the
// outbound queue takes before it holds so many (busyFrames) that the
// stack's TCP should send no new data until the writer has taken some
// (OnOutboundRoom); with several queues, the fullest's, as the stack does
// not say which flow asks.
func (l *fdLink) OutboundRoom() int {
	room := l.qs[0].txq.room()
	for _, q := range l.qs[1:] {
		room = min(room, q.txq.room())
	}
	return room
}

// OnOutboundRoom implements stack.QueueingLink: fn is called on a writer
// goroutine each time it has written, or dropped, a batch of frames it
// took from its queue, as a NIC's transmit completion frees a socket's
// skbs: the stack's TCP, holding new data back while the queue was busy,
// sends it then rather than at its next ACK, while the writer writes the
// rest of its queue (maxWriteBatch).
func (l *fdLink) OnOutboundRoom(fn func()) { l.roomOpened.set(fn) }

// FlushOutbound implements stack.FlushingLink: it waits until the frames
// queued for the writer goroutines so far have been written (or
// dropped), or timeout has passed, and reports whether they were.
func (l *fdLink) FlushOutbound(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for _, q := range l.qs {
		if !q.txq.flush(time.Until(deadline)) {
			return false
		}
	}
	return true
}

// close closes the descriptor, which ends a blocked Read with os.ErrClosed.
func (l *fdLink) close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.closeErr
	}
	l.closed = true
	l.stopping = true
	action := l.onClose
	l.onClose = nil
	l.mu.Unlock()
	if action != nil {
		action()
	}
	var err error
	for _, q := range l.qs {
		q.txq.close()
		if cerr := q.f.Close(); err == nil {
			err = cerr
		}
	}
	l.mu.Lock()
	l.closeErr = err
	l.mu.Unlock()
	return err
}

// Close implements stack.LinkEndpoint. The stack calls it when the NIC is
// removed; it does not wait for the read loop (Wait does).
func (l *fdLink) Close() { _ = l.close() }

// Wait implements stack.LinkEndpoint: it waits for the read loop to exit.
func (l *fdLink) Wait() { l.wg.Wait() }

// SetOnCloseAction implements stack.LinkEndpoint.
func (l *fdLink) SetOnCloseAction(action func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onClose = action
}

// IsAttached implements stack.LinkEndpoint.
func (l *fdLink) IsAttached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dispatcher != nil
}

// MTU implements stack.LinkEndpoint; it is the frame MTU, header included.
func (l *fdLink) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.LinkEndpoint.
func (l *fdLink) SetMTU(mtu uint32) { l.mtu.Store(mtu) }

// MaxHeaderLength implements stack.LinkEndpoint; the Ethernet header is
// accounted for by ethernet.Endpoint.
func (*fdLink) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint.
func (l *fdLink) LinkAddress() tcpip.LinkAddress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mac
}

// SetLinkAddress implements stack.LinkEndpoint.
func (l *fdLink) SetLinkAddress(addr tcpip.LinkAddress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mac = addr
}

// Capabilities implements stack.LinkEndpoint. With offloads, the device
// vouches for every inbound checksum (CapabilityRXChecksumOffload: see
// checksum.go), unless a middleware above asked for full checksums. No
// transmit checksum offload is offered: the stack's frames carry complete
// checksums, from which the coalescer derives a super-frame's. GSO is
// offered separately (SupportedGSO).
func (l *fdLink) Capabilities() stack.LinkEndpointCapabilities {
	if l.offloads.VnetHdr && !l.fullCsum.Load() {
		return stack.CapabilityRXChecksumOffload
	}
	return 0
}

// ARPHardwareType implements stack.LinkEndpoint; ethernet.Endpoint turns
// ARPHardwareNone into ARPHardwareEther.
func (*fdLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint; ethernet.Endpoint adds the header.
func (*fdLink) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint; ethernet.Endpoint parses it.
func (*fdLink) ParseHeader(*stack.PacketBuffer) bool { return true }
