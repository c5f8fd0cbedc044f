package server

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger builds the zerolog logger cfg asks for: JSON lines by default,
// a human console format with LOG_FORMAT=console.
func NewLogger(cfg Config, w io.Writer) zerolog.Logger {
	if w == nil {
		w = os.Stderr
	}
	if cfg.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	level, err := zerolog.ParseLevel(cfg.LogLevel)
	if err != nil || cfg.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
