package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/barfinex/notifier"
)

// schemas holds the compiled JSON Schema of each event type's data, as the
// catalog publishes it.
type schemas map[notifier.EventType]*jsonschema.Schema

func compileSchemas() (schemas, error) {
	c := jsonschema.NewCompiler()
	out := schemas{}
	for _, info := range notifier.EventTypes() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(info.Schema))
		if err != nil {
			return nil, fmt.Errorf("schema of %s: %w", info.Type, err)
		}
		// The location only names the schema; nothing is fetched from it.
		loc := "urn:barfinex:event:" + string(info.Type)
		if err := c.AddResource(loc, doc); err != nil {
			return nil, fmt.Errorf("schema of %s: %w", info.Type, err)
		}
		if out[info.Type], err = c.Compile(loc); err != nil {
			return nil, fmt.Errorf("schema of %s: %w", info.Type, err)
		}
	}
	return out, nil
}

// validate checks an event's data against its type's schema. The error
// names the first field at fault.
func (s schemas) validate(typ notifier.EventType, data json.RawMessage) error {
	sch, ok := s[typ]
	if !ok {
		return nil
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return notifier.Invalid("data", "is not valid JSON")
	}
	err = sch.Validate(v)
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return err
	}
	unit := firstLeaf(*verr.BasicOutput())
	field := "data" + strings.ReplaceAll(unit.InstanceLocation, "/", ".")
	if req, ok := unit.Error.Kind.(*kind.Required); ok && len(req.Missing) > 0 {
		// Name the missing field itself, not the object that lacks it.
		return notifier.Invalid(field+"."+req.Missing[0],
			"is required (see the %s schema in GET /v1/event-types)", typ)
	}
	return notifier.Invalid(field, "%s (see the %s schema in GET /v1/event-types)", unit.Error, typ)
}

func firstLeaf(u jsonschema.OutputUnit) jsonschema.OutputUnit {
	for _, e := range u.Errors {
		if e.Error != nil {
			return e
		}
	}
	return u
}
