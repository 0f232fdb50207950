// Package notifier holds the domain of Barfinex Notifier: events, webhooks,
// deliveries and their attempts, and the errors the service speaks in.
//
// It imports only the standard library. The store, the Temporal workflows and
// activities, and the HTTP API depend on it; it depends on none of them.
package notifier

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in the API.
const (
	ECONFLICT     = "conflict"
	EINTERNAL     = "internal"
	EINVALID      = "invalid_argument"
	ENOTFOUND     = "not_found"
	ETOOLARGE     = "payload_too_large"
	EUNAUTHORIZED = "unauthorized"
	EUNAVAILABLE  = "unavailable"
)

// Error is an error a caller can act on. Its message is safe to show to the
// caller; Field names the input at fault, when there is one.
type Error struct {
	Code    string
	Field   string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("notifier %s: %s: %s", e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("notifier %s: %s", e.Code, e.Message)
}

// Errorf returns an Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns an EINVALID error about one input field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is or wraps an *Error, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// Version is the service's version, set at build time with
// -ldflags "-X github.com/barfinex/notifier.Version=…".
var Version = "0.1.0-dev"
