package middleware

import (
	"strings"
	"testing"
)

func TestValidRoomID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"", false},
		{"a", true},
		{"lobby", true},
		{"Team_1.dev:chat-2", true},
		{"user:alice", true}, // valid id; reservation is a separate check
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"has space", false},
		{" lead", false},
		{"tab\t", false},
		{"new\nline", false},
		{"slash/room", false},
		{"star*", false},
		{"café", false},
		{"日本", false},
		{"nul\x00", false},
		{strings.Repeat("é", 64), false}, // 128 bytes, but not ASCII
	}
	for _, tt := range tests {
		if got := ValidRoomID(tt.id); got != tt.want {
			t.Errorf("ValidRoomID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestReservedRoom(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"user:alice", true},
		{"user:", true},
		{"user", false},
		{"users:alice", false},
		{"User:alice", false}, // room names are case-sensitive
		{"team:user:alice", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := ReservedRoom(tt.id); got != tt.want {
			t.Errorf("ReservedRoom(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestRoomAllowed(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		room     string
		want     bool
	}{
		{"nil patterns allow all", nil, "anything", true},
		{"empty list allows nothing", []string{}, "lobby", false},
		{"exact match", []string{"lobby"}, "lobby", true},
		{"exact mismatch", []string{"lobby"}, "lobby2", false},
		{"exact is case-sensitive", []string{"lobby"}, "Lobby", false},
		{"prefix star", []string{"team-*"}, "team-red", true},
		{"prefix star matches empty", []string{"team-*"}, "team-", true},
		{"prefix star needs prefix", []string{"team-*"}, "team", false},
		{"prefix star wrong prefix", []string{"team-*"}, "xteam-red", false},
		{"lone star", []string{"*"}, "anything:at.all", true},
		{"lone star and empty room", []string{"*"}, "", true},
		{"a*b*c", []string{"a*b*c"}, "abc", true},
		{"a*b*c with fill", []string{"a*b*c"}, "axxbyyc", true},
		{"a*b*c needs backtracking", []string{"a*b*c"}, "abbbcbc", true},
		{"a*b*c missing c", []string{"a*b*c"}, "axxbyy", false},
		{"a*b*c trailing after c", []string{"a*b*c"}, "abcd", false},
		{"a*b*c missing b", []string{"a*b*c"}, "ac", false},
		{"suffix star", []string{"*-chat"}, "dev-chat", true},
		{"suffix star mismatch", []string{"*-chat"}, "dev-chats", false},
		{"double star", []string{"a**b"}, "ab", true},
		{"second pattern matches", []string{"team-*", "lobby"}, "lobby", true},
		{"no pattern matches", []string{"team-*", "lobby"}, "dm:bob", false},
		{"empty pattern matches only empty", []string{""}, "lobby", false},
		{"pathological", []string{"*a*a*a*a*a*b"}, strings.Repeat("a", 128), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RoomAllowed(tt.patterns, tt.room); got != tt.want {
				t.Errorf("RoomAllowed(%q, %q) = %v, want %v", tt.patterns, tt.room, got, tt.want)
			}
		})
	}
}

func BenchmarkRoomAllowed(b *testing.B) {
	patterns := []string{"team-*", "org:*:chat", "lobby"}
	for b.Loop() {
		RoomAllowed(patterns, "org:acme:chat")
	}
}
