package main

import (
	"hash/crc32"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The floor of a bulk transfer over a TAP, with the kernel's TCP as the
// peer. Part of what each round costs belongs to no user-space stack:
// the kernel's work in the process's system calls (its TCP, the TAP's
// I/O, the copy between its socket and the bench), read from getrusage
// as system time in tapstack's own round; and in user space, the one
// copy between the application's buffer and the stack's and the bench's
// check (CRC-32C), measured alone, on one thread, in every round. A
// stack whose own work (protocol, network layer, buffers, scheduling)
// cost nothing would spend that much CPU per GiB; with the cores busy as
// in tapstack's round, it would move tapstack's throughput × tapstack's
// CPU ÷ that. floor ÷ gVisor is then the most tapstack ÷ gVisor could be
// on this machine over this device.

const kernelFloorWhat = "what no user-space stack can save: the kernel's system CPU in tapstack's round (its TCP, the TAP's I/O), one copy between the application and the stack's buffers and the bench's CRC-32C check (measured alone); its throughput is tapstack's at the same cores busy were that all it spent"

// copyCheckCPU returns the CPU, in s/GiB, that copying the bench's block
// into a 256 KiB buffer and hashing it takes on one thread: the user-space
// work a bulk transfer over the TAP cannot avoid, whatever the stack.
func copyCheckCPU() float64 {
	const size = 256 << 20
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	block := benchBlock()
	buf := make([]byte, floorRead)
	table := crc32.MakeTable(crc32.Castagnoli)
	var sum uint32
	t0 := threadCPU()
	for n := 0; n < size; {
		for off := 0; off < len(block) && n < size; off += len(buf) {
			m := copy(buf, block[off:])
			sum = crc32.Update(sum, table, buf[:m])
			n += m
		}
	}
	d := threadCPU() - t0
	_ = sum
	return d.Seconds() / (float64(size) / (1 << 30))
}

// threadCPU is the calling thread's CPU time, user and system.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// kernelFloorOf makes the floor table of a TAP link from its rows (the
// bulk, CPU and system CPU figures of each direction) and the per-round
// cost of the copy and the check.
func kernelFloorOf(rows []benchRow, copyCheck []float64) *benchFloor {
	byName := map[string]benchRow{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	f := &benchFloor{What: kernelFloorWhat}
	for _, r := range rows {
		dir, ok := strings.CutPrefix(r.Name, "bulk, ")
		if !ok {
			continue
		}
		cpu, okc := byName["CPU per GiB, "+dir]
		sys, oks := byName["system CPU per GiB, "+dir]
		if !okc || !oks || len(copyCheck) != len(r.Tapstack) {
			continue
		}
		var gbps, irr []float64
		for i := range r.Tapstack {
			least := sys.Tapstack[i] + copyCheck[i]
			irr = append(irr, least)
			gbps = append(gbps, r.Tapstack[i]*cpu.Tapstack[i]/least)
		}
		f.Rows = append(f.Rows, newFloorRow(r, gbps), newFloorRow(cpu, irr))
	}
	if len(f.Rows) == 0 {
		return nil
	}
	return f
}
