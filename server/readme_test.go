package server_test

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/server"
)

var update = flag.Bool("update", false, "rewrite README.md's configuration table")

// The README's configuration table is generated from the settings: this
// keeps it true when a setting is added or a default changes.
func TestReadmeConfigurationTableIsCurrent(t *testing.T) {
	const begin, end = "-->\n", "<!-- /config-table -->"
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "<!-- config-table")
	j := strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("README.md lacks the config-table markers")
	}
	k := i + strings.Index(s[i:], begin) + len(begin)
	want := server.DocTable()
	if s[k:j] == want {
		return
	}
	if *update {
		if err := os.WriteFile("../README.md", []byte(s[:k]+want+s[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md configuration table is stale: run go test ./server -run Readme -update")
}
