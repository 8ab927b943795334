package control

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSchemaMatchesParser keeps docs/mqtt-command.schema.json and
// ParseCommand in step: the same fields, actions and limits, and the
// schema's examples parse.
func TestSchemaMatchesParser(t *testing.T) {
	b, err := os.ReadFile("../docs/mqtt-command.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]struct {
			Enum      []string `json:"enum"`
			MaxLength int      `json:"maxLength"`
			Maximum   float64  `json:"maximum"`
			Minimum   float64  `json:"minimum"`
		} `json:"properties"`
		Required []string          `json:"required"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatalf("schema: %v", err)
	}
	var fields []string
	ct := reflect.TypeFor[Command]()
	for i := range ct.NumField() {
		fields = append(fields, strings.Split(ct.Field(i).Tag.Get("json"), ",")[0])
	}
	var props []string
	for k := range schema.Properties {
		props = append(props, k)
	}
	slices.Sort(fields)
	slices.Sort(props)
	if !slices.Equal(fields, props) {
		t.Errorf("schema properties %v, Command fields %v", props, fields)
	}
	p := schema.Properties
	if a := p["action"].Enum; !slices.Equal(a, []string{ActionJoin, ActionLeave, ActionStatus, ActionSnapshot, ActionPrivacy}) {
		t.Errorf("schema actions %v", a)
	}
	if p["id"].MaxLength != MaxIDLen || p["channel"].MaxLength != MaxChannelLen || p["uid"].Maximum != 4294967295 ||
		p["maxWidth"].Minimum != MinSnapshotWidth || p["maxWidth"].Maximum != MaxSnapshotWidth {
		t.Errorf("schema limits differ from the parser's")
	}
	if !slices.Equal(schema.Required, []string{"action"}) {
		t.Errorf("required %v", schema.Required)
	}
	for _, ex := range schema.Examples {
		if _, err := ParseCommand(ex); err != nil {
			t.Errorf("example %s: %v", ex, err)
		}
	}
}
