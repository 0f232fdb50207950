package apiserver

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"

	"github.com/barfinex/notifier"
)

// maxDepth bounds how deeply a request's JSON may nest.
const maxDepth = 64

// checkStrict holds raw, a JSON document that decoded into v, to what
// encoding/json lets pass: top-level names must match v's fields exactly
// (the decoder matches them in any case), no object may repeat a name (the
// decoder keeps the last), and nesting is bounded.
func checkStrict(raw []byte, v any) error {
	w := &strictWalker{dec: json.NewDecoder(bytes.NewReader(raw)), known: fieldNames(v)}
	tok, err := w.dec.Token()
	if err != nil {
		return nil // decoding already judged the document
	}
	return w.value("", tok)
}

type strictWalker struct {
	dec   *json.Decoder
	known map[string]bool
	depth int
}

func (w *strictWalker) value(path string, tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if w.depth++; w.depth > maxDepth {
		return notifier.Invalid("body", "nests deeper than %d levels", maxDepth)
	}
	defer func() { w.depth-- }()
	if d == '[' {
		for {
			t, err := w.dec.Token()
			if err != nil || t == json.Delim(']') {
				return nil
			}
			if err := w.value(path, t); err != nil {
				return err
			}
		}
	}
	seen := map[string]bool{}
	for {
		t, err := w.dec.Token()
		if err != nil || t == json.Delim('}') {
			return nil
		}
		name, _ := t.(string)
		field := strings.TrimPrefix(path+"."+name, ".")
		switch {
		case seen[name]:
			return notifier.Invalid(field, "appears twice")
		case path == "" && w.known != nil && !w.known[name]:
			return notifier.Invalid(name, "is not a known field (names are case-sensitive)")
		}
		seen[name] = true
		vt, err := w.dec.Token()
		if err != nil {
			return nil
		}
		if err := w.value(field, vt); err != nil {
			return err
		}
	}
}

// fieldNames returns the JSON names of the struct v points to.
func fieldNames(v any) map[string]bool {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	names := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
}
