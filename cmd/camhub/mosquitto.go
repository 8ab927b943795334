package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/mosquitto"
)

const mosquittoUsage = `camhub mosquitto — files for an external Mosquitto broker (docs/mosquitto.md)

  camhub mosquitto acl [--ha-prefix homeassistant] [--hub-user camhub] [--out FILE]
        the ACL file: each device confined to its own topics (patterns on its user name),
        the hub's account, and one entry per MQTT key; write it again after adding or
        deleting an MQTT key, then reload mosquitto
  camhub mosquitto passwd FILE USER [--password-file F]
        set USER's entry in a Mosquitto password file (the password from F, or stdin),
        e.g. the hub's own account; devices and keys get theirs with --mosquitto-passwd
        on "camhub device add" and "camhub key add"

Both take --config FILE and --state-dir DIR like the identity subcommands (the topic
prefix is the configuration's mqttPrefix).
`

func runMosquitto(args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, mosquittoUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("camhub mosquitto "+verb, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, mosquittoUsage) }
	cfgPath := fs.String("config", "", "configuration file (YAML) naming the state directory and topic prefix")
	stateDir := fs.String("state-dir", "", "the hub's state directory")
	haPrefix := fs.String("ha-prefix", "homeassistant", "Home Assistant's discovery prefix (empty: no discovery lines)")
	hubUser := fs.String("hub-user", "camhub", "the MQTT user name the hub logs in with (its mqttUsername)")
	out := fs.String("out", "", "write the ACL to this file (mode 0640) instead of stdout")
	pwFile := fs.String("password-file", "", "read the password from this file")
	fs.SetOutput(stderr)
	if err := fs.Parse(reorder(fs, args[1:])); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "camhub mosquitto %s: %v\n", verb, err)
		return 1
	}
	cfg := hub.Defaults()
	if _, err := config.FileAndEnv(envPrefix, &cfg, *cfgPath, environ); err != nil {
		return fail(err)
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	cfg.Derive()
	switch verb {
	case "acl":
		if fs.NArg() != 0 {
			fmt.Fprint(stderr, mosquittoUsage)
			return 2
		}
		st, err := auth.Open(cfg.StateDir)
		if err != nil {
			return fail(err)
		}
		var full []string
		if cfg.MQTTUsername != "" && cfg.MQTTUsername != *hubUser {
			full = append(full, cfg.MQTTUsername)
		}
		acl, err := mosquitto.ACL(mosquitto.ACLOptions{Prefix: cfg.MQTTPrefix, HAPrefix: *haPrefix, HubUser: *hubUser,
			FullUsers: full, Keys: st.Keys()})
		if err != nil {
			return fail(err)
		}
		if *out == "" {
			fmt.Fprint(stdout, acl)
			return 0
		}
		if err := os.WriteFile(*out, []byte(acl), 0o640); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "wrote %s; reload mosquitto (systemctl reload mosquitto) to apply it\n", *out)
	case "passwd":
		if fs.NArg() != 2 {
			fmt.Fprint(stderr, mosquittoUsage)
			return 2
		}
		pw, err := readPassword(*pwFile, stdin, stderr)
		if err != nil {
			return fail(err)
		}
		if err := mosquitto.SetPassword(fs.Arg(0), fs.Arg(1), pw); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "%s: entry for %s set; reload mosquitto to apply it\n", fs.Arg(0), fs.Arg(1))
	default:
		fmt.Fprintf(stderr, "camhub mosquitto: unknown subcommand %q\n%s", verb, mosquittoUsage)
		return 2
	}
	return 0
}
