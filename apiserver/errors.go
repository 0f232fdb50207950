package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/barfinex/notifier"
)

// statusOf maps each error code to its HTTP status.
var statusOf = map[string]int{
	notifier.ECONFLICT:     http.StatusConflict,
	notifier.EINTERNAL:     http.StatusInternalServerError,
	notifier.EINVALID:      http.StatusBadRequest,
	notifier.ENOTFOUND:     http.StatusNotFound,
	notifier.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	notifier.EUNAUTHORIZED: http.StatusUnauthorized,
	notifier.EUNAVAILABLE:  http.StatusServiceUnavailable,
}

func errorBody(code, message, field string) gin.H {
	e := gin.H{"code": code, "message": message}
	if field != "" {
		e["field"] = field
	}
	return gin.H{"error": e}
}

// writeError answers with err. An error that is not a *notifier.Error is an
// internal one: it is logged and the caller sees nothing of it.
func writeError(c *gin.Context, err error) {
	var e *notifier.Error
	if !errors.As(err, &e) {
		_ = c.Error(err)
		e = &notifier.Error{Code: notifier.EINTERNAL, Message: "internal error"}
	}
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	message := e.Message
	if e.Field != "" {
		message = e.Field + ": " + e.Message
	}
	c.AbortWithStatusJSON(status, errorBody(e.Code, message, e.Field))
}

// fail answers with err, logging the cause of an internal error.
func (s *Server) fail(c *gin.Context, op string, err error) {
	if notifier.ErrorCode(err) == notifier.EINTERNAL {
		s.log.Error(op, "err", err)
	}
	writeError(c, err)
}

// decode reads the request's JSON body into v, strictly: one object, no
// unknown fields, no trailing data, at most limit bytes.
func decode(c *gin.Context, v any, limit int64) error {
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		return decodeError(err, limit)
	}
	// The JSON decoder would quietly replace bad bytes; a secret so changed
	// would sign with something other than what its owner holds.
	if !utf8.Valid(raw) {
		return notifier.Invalid("body", "must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return notifier.Invalid("body", "must hold a single JSON object")
	}
	return checkStrict(raw, v)
}

func decodeError(err error, limit int64) error {
	var (
		syntax   *json.SyntaxError
		typeErr  *json.UnmarshalTypeError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return notifier.Errorf(notifier.ETOOLARGE, "request body exceeds %d bytes", limit)
	case errors.Is(err, io.EOF):
		return notifier.Invalid("body", "a JSON object is required")
	case errors.As(err, &syntax):
		return notifier.Invalid("body", "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return notifier.Invalid("body", "must be a JSON object")
		}
		kind := jsonKind(typeErr.Type.Kind().String())
		if strings.HasPrefix(typeErr.Value, "number") && kind == "a number" {
			// A number, but too large for the field: 1e309, 2^64.
			return notifier.Invalid(typeErr.Field, "is out of range")
		}
		return notifier.Invalid(typeErr.Field, "has a %s where %s belongs", typeErr.Value, kind)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return notifier.Invalid(field, "is not a known field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return notifier.Invalid("body", "malformed JSON: unexpected end")
	default:
		return notifier.Invalid("body", "malformed JSON: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "int", "int64", "float64":
		return "a number"
	default:
		return fmt.Sprintf("of type %s", goKind)
	}
}
