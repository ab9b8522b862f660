//go:build linux

package interop

import (
	"testing"
	"unsafe"

	"github.com/tapstack/tapstack/conn"
	"github.com/tapstack/tapstack/stack/tcp"
	"github.com/tapstack/tapstack/tap"
)

// TestKernelDeliveryRate: tapstack and the Linux kernel each send 4 MiB
// over a TAP whose fault middleware serializes frames at 40 Mbit/s both
// ways, a bottleneck of 5,000,000 bytes a second, and each estimates the
// rate its data was delivered at (tapstack's Info.DeliveryRate, rate.go;
// the kernel's tcpi_delivery_rate, tcp_rate.c). Neither estimate is
// more than 10% above the bottleneck (the ACK phase bounds a sample's
// interval from below) or app-limited (the writers kept their buffers
// full); tapstack's is not below half of it, however loaded the machine.
// The kernel's is the reference: its last sample was as low as 2.8 MB/s
// in one run of many, 4.3-5.0 in the others.
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
	ki := kernelTCPInfo(t, kc)
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
		least      uint64
	}{
		{"tapstack", i.DeliveryRate, i.DeliveryRateAppLimited, bottleneck / 2},
		{"the kernel", ki.Delivery_rate, kernelAppLimited, 1},
	} {
		if est.rate < est.least || est.rate > bottleneck*1.1 || est.appLimited {
			t.Errorf("%s's delivery rate %d bytes/s, app-limited %v; want %d to %d, not app-limited",
				est.who, est.rate, est.appLimited, est.least, uint64(bottleneck*1.1))
		}
	}
}
