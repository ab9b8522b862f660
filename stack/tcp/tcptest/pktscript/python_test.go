package pktscript

import (
	"reflect"
	"strings"
	"testing"
)

// TestPython: the Python the upstream scripts' %{ }% blocks use.
func TestPython(t *testing.T) {
	info := map[string]int64{"tcpi_snd_cwnd": 10, "tcpi_rtt": 100000, "tcpi_ca_state": 3}
	for _, tc := range []struct {
		code string
		err  string // "" for success
	}{
		{"assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd", ""},
		{"assert tcpi_snd_cwnd == 11, tcpi_snd_cwnd", "AssertionError: 10"},
		{"assert tcpi_snd_cwnd == 11", "AssertionError"},
		{"assert 98000 <= tcpi_rtt <= 110000, tcpi_rtt", ""},
		{"assert 98000 <= tcpi_rtt <= 99000, tcpi_rtt", "AssertionError: 100000"},
		{"assert 1 < 2 > 3", "AssertionError"}, // chained: 1 < 2 and 2 > 3
		{"assert tcpi_ca_state == TCP_CA_Recovery, tcpi_ca_state", ""},
		{"assert tcpi_snd_cwnd == 9, 'cwnd=%d' % tcpi_snd_cwnd", "AssertionError: cwnd=10"},
		{"assert 0, 'a: %d b: %d' % (1, 2)", "AssertionError: a: 1 b: 2"},
		{"assert 0, 'x %s %%' % 'y'", "AssertionError: x y %"},
		{"x = 0x7fffffff; assert x == 2147483647", ""},
		{"cwnd = 58\ncwnd += 1\nassert cwnd == 59, cwnd", ""},
		{"assert 7 // 2 == 3 and -7 // 2 == -4 and -7 % 3 == 2 and 2 * 3 + 1 == 7", ""},
		{"assert not (1 == 2) or undefined_name", ""},
		{"assert tcpi_snd_cwnd == 10, undefined_name", ""}, // a message is evaluated only on failure
		{"assert undefined_name == 1", "NameError"},
		{"assert tcpi_snd_cwnd == 10, tcpi_snd_cwnd;\\\n   assert 1 == 1", ""},
		{"# a comment\nprint(tcpi_snd_cwnd); assert True", ""},
		{"assert 1 / 0", "ZeroDivisionError"},
		{"assert 'a' < 1", "TypeError"},
		{"import os", "unsupported statement"},
		{"assert (1", "missing )"},
		{"f(1)", "not supported"},
		{"assert " + strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), "nested deeper than 64"},
	} {
		env := newPyEnv()
		err := env.run(tc.code, info)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.code, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.code, err, tc.err)
		}
	}
}

// TestPythonState: variables and print output live across blocks.
func TestPythonState(t *testing.T) {
	env := newPyEnv()
	if err := env.run("cwnd = tcpi_snd_cwnd; print(cwnd, 'segments')", map[string]int64{"tcpi_snd_cwnd": 20}); err != nil {
		t.Fatal(err)
	}
	if err := env.run("cwnd += 10; assert tcpi_snd_cwnd == cwnd, tcpi_snd_cwnd", map[string]int64{"tcpi_snd_cwnd": 30}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"20 segments"}; !reflect.DeepEqual(env.out, want) {
		t.Errorf("print output %q, want %q", env.out, want)
	}
}

// TestTcpiNames: the fields a block reads decide whether it can run.
func TestTcpiNames(t *testing.T) {
	got := tcpiNames("assert 98000 <= tcpi_rwnd_limited <= 110000, tcpi_rwnd_limited; assert tcpi_busy_time > 'tcpi_not_a_name'")
	if want := []string{"tcpi_rwnd_limited", "tcpi_busy_time"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tcpiNames = %q, want %q", got, want)
	}
}
