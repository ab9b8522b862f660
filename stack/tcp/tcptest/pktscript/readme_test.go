package pktscript

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readme returns the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeScript: the first script README shows is testdata/hello.pkt,
// which TestTapstackScripts runs.
func TestReadmeScript(t *testing.T) {
	const marker = "<!-- hello.pkt: kept equal to testdata/hello.pkt by TestReadmeScript -->\n```\n"
	s := readme(t)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatal("README lacks the hello.pkt block")
	}
	block := s[i+len(marker):]
	block = block[:strings.Index(block, "```\n")]
	want, err := os.ReadFile(filepath.Join("testdata", "hello.pkt"))
	if err != nil {
		t.Fatal(err)
	}
	if block != string(want) {
		t.Errorf("README's hello.pkt differs from testdata/hello.pkt:\n%s", block)
	}
}
