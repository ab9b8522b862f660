package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the tapstack command when TAPSTACK_CLI_ARGS
// is set, so a test can send it a real signal.
func TestMain(m *testing.M) {
	if args := os.Getenv("TAPSTACK_CLI_ARGS"); args != "" {
		os.Args = append([]string{"tapstack"}, strings.Fields(args)...)
		main()
		return
	}
	os.Exit(m.Run())
}

// TestSIGINT: a real SIGINT in the middle of a transfer ends the command
// with status 0 and nothing on stderr, as Ctrl-C should.
func TestSIGINT(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TAPSTACK_CLI_ARGS=bench --size 4294967296")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the transfer runs: bench prints its header first.
	started := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		started <- line
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-started:
		if !strings.Contains(line, "bulk transfer") {
			cmd.Process.Kill()
			t.Fatalf("bench printed %q", line)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("bench did not start")
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }() // reads stderr to its end first
	select {
	case err := <-done:
		if err != nil || cmd.ProcessState.ExitCode() != 0 || stderr.Len() != 0 {
			t.Errorf("after SIGINT: %v, exit %d, stderr %q; want 0 and nothing", err, cmd.ProcessState.ExitCode(), stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("bench did not stop after SIGINT")
	}
}
