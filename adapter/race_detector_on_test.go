//go:build race

package adapter

// raceDetector: the race detector slows the code it instruments several
// times; timing bounds allow for it.
const raceDetector = true
