package sio

import (
	"errors"
	"fmt"
)

// Error is an error with a stable machine-readable code. Returned from an
// event handler it becomes the ack {ok:false, error:{code, message}}; returned
// from a connect middleware it becomes connect_error with err.data.code.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Codes used by the seam itself; namespaces define their own on top.
const (
	CodeBadRequest  = "bad_request"
	CodeInternal    = "internal"
	CodeRateLimited = "rate_limited"
	CodeUnavailable = "unavailable"
)

// ErrUnavailable is what a broadcast returns (possibly wrapped with the
// cause) when the cluster could not take it: Redis unreachable, or too slow
// for the publish's deadline. The broadcast was delivered nowhere, this node
// included, so a retry cannot duplicate it. Returned from an event handler it
// becomes the ack {ok:false, error:{code:"unavailable"}}.
var ErrUnavailable = &Error{Code: CodeUnavailable, Message: "the cluster is unreachable: not delivered, retry later"}

// AsError returns err as an *Error, mapping anything else to internal.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error"}
}
