package server_test

import (
	"os"
	"strings"
	"testing"

	"github.com/switchboard/switchboard/server"
)

// The README's configuration table is generated from the settings: this
// keeps it true when a setting is added or a default changes.
func TestReadmeConfigurationTableIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), server.DocTable()) {
		t.Fatalf("README.md configuration table is stale; replace it with:\n%s", server.DocTable())
	}
}
