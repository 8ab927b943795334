// Package config loads a program's YAML configuration file strictly: an unknown key or a
// value of the wrong type is an error that names the line. Defaults come from the caller
// (the struct passed in is filled over them), and flags are applied by the caller afterwards.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// LoadFile reads path into dst (a pointer to a struct already holding the defaults).
func LoadFile(path string, dst any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := Decode(b, dst); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode parses YAML into dst strictly. An empty document leaves dst as it is.
func Decode(b []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
