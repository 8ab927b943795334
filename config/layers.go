package config

import "fmt"

// Getenv looks a variable up in environ (KEY=value entries); the last entry wins, as in
// os.Getenv.
func Getenv(environ []string, name string) string {
	v := ""
	for _, kv := range environ {
		if len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name {
			v = kv[len(name)+1:]
		}
	}
	return v
}

// FileAndEnv lays the configuration file and the environment over dst (which holds the
// defaults): the file is path, or $<prefix>CONFIG when path is empty, or none; then every
// <prefix><KEY> variable. It returns the names of <prefix>… variables that match no key,
// for the caller to warn about.
func FileAndEnv(prefix string, dst any, path string, environ []string) (unknown []string, err error) {
	if path == "" {
		path = Getenv(environ, prefix+"CONFIG")
	}
	if path != "" {
		if err := LoadFile(path, dst); err != nil {
			return nil, err
		}
	}
	unknown, err = ApplyEnv(prefix, dst, environ, prefix+"CONFIG")
	if err != nil {
		return nil, fmt.Errorf("environment:\n%w", err)
	}
	return unknown, nil
}
