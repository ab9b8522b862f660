package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
)

// The floor of a bulk transfer over tap.Pipe: what any stack built on
// gVisor's buffers must do to move the bench's bytes from one Write to one
// Read and have them checked, with no protocol at all: no headers, no
// segments, no acknowledgments, no network layer. The writer copies each
// block into 64 KiB views (the send buffer's chunks), hands them to the
// reader over a channel that holds 4 MiB (a send buffer's worth in
// flight), and the reader copies what has arrived into its 256 KiB
// buffer, as Read does, and hashes it, as the bench's receiver does. The
// reader gives each view it has read back to the writer, who copies into
// it again: gVisor's pool would clear a new view's chunk first, and a
// stack need not pay that (stack/tcp's chunk reuse).
//
// The floor is measured in every round beside the two stacks, so that it
// saw the same machine. floor ÷ gVisor is the most tapstack ÷ gVisor
// could be on this machine with these buffers: the reader's copy and
// hash are one goroutine's work whatever the stack, and the floor spends
// the other core on nothing but the writer's copy. How far a stack is
// below its floor is what its protocol, its network layer and its
// scheduling cost; the profile (-cpuprofile, stack=floor) shows the
// floor's own CPU.

const (
	floorView   = 64 << 10 // the engine's send buffer chunk (stack/tcp maxChunk)
	floorWindow = 4 << 20  // the engine's send buffer at its largest (SendBufferMax)
	floorRead   = 256 << 10
)

// floorBulk moves size bytes the floor's way and returns the figures bulk
// returns for a stack: throughput after the first eighth, process CPU and
// allocations. It checks the bytes' count and CRC-32C as bulk does.
func floorBulk(ctx context.Context, size int64) (bulkResult, error) {
	block := benchBlock()
	chk := newBulkCheck(block, size)
	ch := make(chan *buffer.View, floorWindow/floorView)
	free := make(chan *buffer.View, floorWindow/floorView)
	defer func() {
		for {
			select {
			case v := <-free:
				v.Release()
			default:
				return
			}
		}
	}()
	runtime.GC()
	u0 := readUsage()
	go func() {
		defer close(ch)
		for n := int64(0); n < size; {
			b := block[:min(int64(len(block)), size-n)]
			for off := 0; off < len(b); off += floorView {
				p := b[off:min(len(b), off+floorView)]
				var v *buffer.View
				select {
				case v = <-free:
					v.Reset()
					_, _ = v.Write(p) // v's chunk is 64 KiB, and the writer's alone
				default:
					v = buffer.NewViewWithData(p)
				}
				select {
				case ch <- v:
				case <-ctx.Done():
					v.Release()
					return
				}
			}
			n += int64(len(b))
		}
	}()
	var q []*buffer.View // arrived, oldest first; q[head] is read next
	head, queued := 0, 0
	defer func() {
		for _, v := range q[head:] {
			v.Release()
		}
	}()
	buf := make([]byte, floorRead)
	closed := false
	take := func(v *buffer.View, ok bool) {
		if !ok {
			closed = true
			return
		}
		q = append(q, v)
		queued += v.Size()
	}
	for {
		if queued == 0 {
			if closed {
				break
			}
			v, ok := <-ch // block, as Read does, until something arrives
			take(v, ok)
			continue
		}
		// Read returns what has arrived, up to its buffer.
	more:
		for !closed && queued < floorRead {
			select {
			case v, ok := <-ch:
				take(v, ok)
			default:
				break more
			}
		}
		n := 0
		for n < len(buf) && head < len(q) {
			v := q[head]
			m := copy(buf[n:], v.AsSlice())
			v.TrimFront(m)
			n += m
			if v.Size() == 0 {
				select {
				case free <- v:
				default:
					v.Release()
				}
				q[head] = nil
				head++
			}
		}
		if head == len(q) {
			q, head = q[:0], 0
		}
		queued -= n
		chk.add(buf[:n])
	}
	tEnd := time.Now()
	u1 := readUsage()
	if err := ctx.Err(); err != nil {
		return bulkResult{}, err
	}
	r, err := chk.result(tEnd, u0, u1)
	if err != nil {
		return bulkResult{}, fmt.Errorf("floor: %w", err)
	}
	return r, nil
}

// benchFloor is a link's floor table: the floor's values per round and,
// for each bulk figure of the link's table, each stack's per-round ratio
// to it.
type benchFloor struct {
	What string     `json:"what"`
	Rows []floorRow `json:"figures"`
	gbps []float64  // per round
	cpu  []float64  // s/GiB, per round
}

// floorRow compares one bulk figure of both stacks with the floor.
type floorRow struct {
	Figure        string     `json:"figure"`
	Unit          string     `json:"unit"`
	Higher        bool       `json:"higher_is_better"`
	Floor         []float64  `json:"floor"`
	Tapstack      []float64  `json:"tapstack_to_floor"` // tapstack ÷ floor, per round
	GVisor        []float64  `json:"gvisor_to_floor"`   // gVisor ÷ floor, per round
	Bound         []float64  `json:"floor_to_gvisor"`   // floor ÷ gVisor: the bound on tapstack ÷ gVisor
	FloorMed      float64    `json:"floor_median"`
	FloorRange    [2]float64 `json:"floor_range"`
	TapstackMed   float64    `json:"tapstack_to_floor_median"`
	TapstackRange [2]float64 `json:"tapstack_to_floor_range"`
	GVisorMed     float64    `json:"gvisor_to_floor_median"`
	GVisorRange   [2]float64 `json:"gvisor_to_floor_range"`
	BoundMed      float64    `json:"floor_to_gvisor_median"`
	BoundRange    [2]float64 `json:"floor_to_gvisor_range"`
	format        string
}

// MarshalJSON writes a failed run's NaN as null, as benchRow does.
func (r floorRow) MarshalJSON() ([]byte, error) { return marshalNullNaN(r) }

const floorWhat = "no protocol: only what a Write, a Read and the bench's check must do on gVisor's buffers (copy into 64 KiB views, reused; copy out into the reader's 256 KiB; CRC-32C), between two goroutines with 4 MiB in flight"

// add records one round's floor.
func (f *benchFloor) add(r bulkResult, size int64) {
	f.gbps = append(f.gbps, r.gbps)
	f.cpu = append(f.cpu, r.cpu.Seconds()/(float64(size)/(1<<30)))
}

// compare fills the floor's rows from the link's bulk and CPU per GiB
// rows; other figures have no floor.
func (f *benchFloor) compare(rows []benchRow) {
	f.What = floorWhat
	for _, row := range rows {
		var floor []float64
		switch {
		case row.Unit == "Gbit/s":
			floor = f.gbps
		case strings.HasPrefix(row.Name, "CPU per GiB"):
			floor = f.cpu
		default:
			continue
		}
		fr := newFloorRow(row, floor)
		f.Rows = append(f.Rows, fr)
	}
}

// newFloorRow compares row's per-round values with floor's.
func newFloorRow(row benchRow, floor []float64) floorRow {
	fr := floorRow{Figure: row.Name, Unit: row.Unit, Higher: row.Higher, Floor: floor, format: row.format}
	for i, v := range floor {
		fr.Tapstack = append(fr.Tapstack, row.Tapstack[i]/v)
		fr.GVisor = append(fr.GVisor, row.GVisor[i]/v)
		fr.Bound = append(fr.Bound, v/row.GVisor[i])
	}
	fr.FloorMed, fr.FloorRange = medianRange(fr.Floor)
	fr.TapstackMed, fr.TapstackRange = medianRange(fr.Tapstack)
	fr.GVisorMed, fr.GVisorRange = medianRange(fr.GVisor)
	fr.BoundMed, fr.BoundRange = medianRange(fr.Bound)
	return fr
}

// print writes the floor's table under the link's.
func (f *benchFloor) print(w io.Writer, link string) {
	fmt.Fprintf(w, "\nfloor over %s (%s)\n", link, f.What)
	cells := [][]string{{"figure", "unit", "floor median [min–max]", "tapstack ÷ floor", "gVisor ÷ floor", "floor ÷ gVisor: the bound on tapstack ÷ gVisor"}}
	for _, r := range f.Rows {
		fv := func(v float64) string { return num(r.format, v) }
		cells = append(cells, []string{
			r.Figure, r.Unit,
			fmt.Sprintf("%s [%s–%s]", fv(r.FloorMed), fv(r.FloorRange[0]), fv(r.FloorRange[1])),
			ratioCell(r.TapstackMed, r.TapstackRange),
			ratioCell(r.GVisorMed, r.GVisorRange),
			ratioCell(r.BoundMed, r.BoundRange),
		})
	}
	printCells(w, cells)
}
