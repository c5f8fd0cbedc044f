//go:build race

package eio

const raceEnabled = true
