//go:build linux

package interop

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelDeliveryRate: tapstack and the Linux kernel each send 4 MiB
// over a TAP whose fault middleware serializes frames at 40 Mbit/s both
// ways, a bottleneck of 5,000,000 bytes a second, and each estimates the
// rate its data was delivered at (tapstack's Info.DeliveryRate, rate.go;
// the kernel's tcpi_delivery_rate, tcp_rate.c). Both estimates land
// near the bottleneck: no more than 10% above it (the ACK phase bounds a
// sample from below), and not below half of it, however loaded the
// machine, and neither is app-limited: the writers kept their buffers
// full.
func TestKernelDeliveryRate(t *testing.T) {
	const bottleneck, size = 5e6, 4 * MiB // bytes a second: 40 Mbit/s
	// tapstack's send buffer holds the whole transfer: the bottleneck's
	// queue (1,024 frames of up to 64 KiB) lets the window grow to
	// about the 2 MiB the buffer would otherwise reach, and a sender
	// whose every byte is in flight when it writes is app-limited, in
	// Linux too (TestDeliveryRateSendBufferFull).
	k := newLossyKernelWith(t, "tsrate0", tap.FaultConfig{Rate: 8 * bottleneck}, tcp.Options{SendBufferSize: 2 * size})
	tc, kc := k.connect(t)
	defer tc.Close()
	defer kc.Close()
	move(t, tc, kc, size, false, 1)
	i := tc.(*conn.Conn).Info()
	move(t, tc, kc, size, true, 2)
	raw, err := kc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ki *unix.TCPInfo
	raw.Control(func(fd uintptr) { ki, err = unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO) })
	if err != nil {
		t.Fatal(err)
	}
	// tcpi_delivery_rate_app_limited is the low bit of the byte after
	// the window scales' (struct tcp_info's bitfields, which
	// unix.TCPInfo leaves as padding).
	kernelAppLimited := (*[8]byte)(unsafe.Pointer(ki))[7]&1 != 0
	t.Logf("bottleneck %d bytes/s; tapstack sending: delivery rate %d (app-limited %v, %d segments delivered); kernel sending: %d (app-limited %v, %d delivered)",
		uint64(bottleneck), i.DeliveryRate, i.DeliveryRateAppLimited, i.Delivered, ki.Delivery_rate, kernelAppLimited, ki.Delivered)
	for _, est := range []struct {
		who        string
		rate       uint64
		appLimited bool
	}{
		{"tapstack", i.DeliveryRate, i.DeliveryRateAppLimited},
		{"the kernel", ki.Delivery_rate, kernelAppLimited},
	} {
		if est.rate < bottleneck/2 || est.rate > bottleneck*1.1 || est.appLimited {
			t.Errorf("%s's delivery rate %d bytes/s, app-limited %v; want %d to %d, not app-limited",
				est.who, est.rate, est.appLimited, uint64(bottleneck/2), uint64(bottleneck*1.1))
		}
	}
}
