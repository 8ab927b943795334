package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// EnvName is the environment variable that overrides a YAML key: the prefix, then the key in
// upper snake case (mqttPasswordFile → CAMAGENT_MQTT_PASSWORD_FILE with prefix "CAMAGENT_";
// runs of capitals stay one word: tokenAPIKeys → TOKEN_API_KEYS).
func EnvName(prefix, key string) string {
	var b strings.Builder
	b.WriteString(prefix)
	rs := []rune(key)
	for i, r := range rs {
		if r == '.' { // a nested key: network.tlsCert → NETWORK_TLS_CERT
			b.WriteByte('_')
			continue
		}
		if i > 0 && unicode.IsUpper(r) && rs[i-1] != '.' {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// EnvKeys maps each environment variable that dst (a pointer to a struct with yaml tags)
// accepts to its YAML key (nested keys joined with dots: network.tlsCert). Keys whose values
// are lists of structs (the hub's apps) have no variable.
func EnvKeys(prefix string, dst any) map[string]string {
	out := map[string]string{}
	for _, f := range fields(dst) {
		out[EnvName(prefix, f.key)] = f.key
	}
	return out
}

type field struct {
	key string
	v   reflect.Value
}

func fields(dst any) []field {
	return structFields(reflect.ValueOf(dst).Elem(), "")
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

func structFields(v reflect.Value, prefix string) []field {
	t := v.Type()
	var out []field
	for i := 0; i < t.NumField(); i++ {
		key, opts, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		fv := v.Field(i)
		if key == "" && opts == "inline" && fv.Kind() == reflect.Struct {
			out = append(out, structFields(fv, prefix)...) // an embedded struct's keys sit at this level
			continue
		}
		if key == "" || key == "-" || !t.Field(i).IsExported() {
			continue
		}
		switch {
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			continue
		case fv.Kind() == reflect.Struct && !reflect.PointerTo(fv.Type()).Implements(unmarshaler):
			out = append(out, structFields(fv, prefix+key+".")...)
			continue
		}
		out = append(out, field{prefix + key, fv})
	}
	return out
}

// ApplyEnv overrides fields of dst from environ ("NAME=value" entries, as os.Environ gives)
// whose names start with prefix. A value is read as its field's type: strings as they are,
// numbers, booleans and durations (30s) as in YAML, lists as comma-separated values and maps
// as comma-separated key=value pairs. A value that does not parse is an error naming the
// variable. Variables with the prefix that name no key (other than those in ignore) are
// returned, for the caller to warn about: a typo must not pass unnoticed, but other tools
// (test scripts) may share the prefix.
func ApplyEnv(prefix string, dst any, environ []string, ignore ...string) (unknown []string, err error) {
	byName := map[string]field{}
	for _, f := range fields(dst) {
		byName[EnvName(prefix, f.key)] = f
	}
	var errs []error
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, prefix) || contains(ignore, name) {
			continue
		}
		f, ok := byName[name]
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if err := setValue(f.v, val); err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", name, f.key, err))
		}
	}
	return unknown, errors.Join(errs...)
}

// UnknownEnvWarning says which variables name no setting, and which would.
func UnknownEnvWarning(prefix string, dst any, unknown []string) string {
	known := make([]string, 0)
	for name := range EnvKeys(prefix, dst) {
		known = append(known, name)
	}
	sort.Strings(known)
	return fmt.Sprintf("warning: %s: no such setting, ignored (settings: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

func setValue(v reflect.Value, s string) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
		return nil
	case reflect.Slice:
		out := reflect.MakeSlice(v.Type(), 0, 0)
		for _, part := range splitList(s) {
			e := reflect.New(v.Type().Elem()).Elem()
			if err := setValue(e, part); err != nil {
				return err
			}
			out = reflect.Append(out, e)
		}
		v.Set(out)
		return nil
	case reflect.Map:
		out := reflect.MakeMap(v.Type())
		for _, part := range splitList(s) {
			k, val, ok := strings.Cut(part, "=")
			if !ok {
				return fmt.Errorf("%q is not key=value", part)
			}
			kv := reflect.New(v.Type().Key()).Elem()
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := setValue(kv, strings.TrimSpace(k)); err != nil {
				return err
			}
			if err := setValue(ev, strings.TrimSpace(val)); err != nil {
				return err
			}
			out.SetMapIndex(kv, ev)
		}
		v.Set(out)
		return nil
	}
	// Scalars (numbers, booleans, durations) parse as YAML does in the file, strictly.
	var node yaml.Node
	if err := yaml.Unmarshal([]byte(s), &node); err != nil || len(node.Content) != 1 || node.Content[0].Kind != yaml.ScalarNode {
		return fmt.Errorf("%q is not a %s", s, v.Type())
	}
	p := reflect.New(v.Type())
	if err := node.Content[0].Decode(p.Interface()); err != nil {
		return fmt.Errorf("%q is not a %s", s, v.Type())
	}
	v.Set(p.Elem())
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
