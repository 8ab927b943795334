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
	"github.com/camagent/camagent/hub/natsconf"
)

const natsUsage = `camhub nats — the trust model for a NATS cluster as the broker (docs/nats.md)

  camhub nats users --passwd FILE [--ha-prefix homeassistant] [--hub-user camhub] [--out F]
        the authorization block every node includes: a user per enrolled device (its own
        subjects), the hub's account, a user per MQTT key (its devices); identities without
        an entry in FILE are left out and listed; write it again after adding or deleting a
        device or key, then reload the nodes
  camhub nats passwd FILE USER [--password-file F]
        set USER's bcrypt entry in FILE (the credential from F, or stdin): each device with
        the credential "camhub device add" printed, each MQTT key with its key, the hub with
        its mqttPassword

Both take --config FILE and --state-dir DIR like the identity subcommands.
`

// natsFlags are the flags of camhub nats's subcommands.
type natsFlags struct {
	cfgPath, stateDir, passwd, haPrefix, hubUser, out, pwFile *string
}

// parseNATS reads "camhub nats VERB [flags] [args]": the verb, its flag set and the flags,
// or an exit code (>= 0) when there is nothing more to do.
func parseNATS(args []string, stderr io.Writer) (string, *flag.FlagSet, natsFlags, int) {
	var f natsFlags
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, natsUsage)
		return "", nil, f, 2
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stderr, natsUsage)
		return "", nil, f, 0
	}
	fs := flag.NewFlagSet("camhub nats "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, natsUsage) }
	f = natsFlags{
		cfgPath:  fs.String("config", "", "configuration file (YAML) naming the state directory and topic prefix"),
		stateDir: fs.String("state-dir", "", "the hub's state directory"),
		passwd:   fs.String("passwd", "", "the user:bcrypt password file (camhub nats passwd)"),
		haPrefix: fs.String("ha-prefix", "homeassistant", "Home Assistant's discovery prefix (empty: none)"),
		hubUser:  fs.String("hub-user", "camhub", "the MQTT user name the hub logs in with (its mqttUsername)"),
		out:      fs.String("out", "", "write the block to this file (mode 0640) instead of stdout"),
		pwFile:   fs.String("password-file", "", "read the credential from this file"),
	}
	err := fs.Parse(reorder(fs, args[1:]))
	switch {
	case errors.Is(err, flag.ErrHelp):
		return "", nil, f, 0
	case err != nil:
		return "", nil, f, 2
	}
	return args[0], fs, f, -1
}

func runNATS(args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	verb, fs, f, code := parseNATS(args, stderr)
	if code >= 0 {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "camhub nats %s: %v\n", verb, err)
		return 1
	}
	switch {
	case verb == "passwd" && fs.NArg() == 2:
		pw, err := readPassword(*f.pwFile, stdin, stderr)
		if err != nil {
			return fail(err)
		}
		if err := natsconf.SetPassword(fs.Arg(0), fs.Arg(1), pw); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "%s: entry for %s set; write the users again (camhub nats users) and reload the nodes\n", fs.Arg(0), fs.Arg(1))
		return 0
	case verb != "users" || fs.NArg() != 0 || *f.passwd == "":
		fmt.Fprint(stderr, natsUsage)
		return 2
	}
	cfg := hub.Defaults()
	if _, err := config.FileAndEnv(envPrefix, &cfg, *f.cfgPath, environ); err != nil {
		return fail(err)
	}
	if *f.stateDir != "" {
		cfg.StateDir = *f.stateDir
	}
	cfg.Derive()
	st, err := auth.Open(cfg.StateDir)
	if err != nil {
		return fail(err)
	}
	hashes, err := natsconf.ReadPasswords(*f.passwd)
	if err != nil {
		return fail(err)
	}
	o := natsconf.Options{Prefix: cfg.MQTTPrefix, HAPrefix: *f.haPrefix, HubUsers: []string{*f.hubUser}, Keys: st.Keys(), Hashes: hashes}
	if cfg.MQTTUsername != "" && cfg.MQTTUsername != *f.hubUser {
		o.HubUsers = append(o.HubUsers, cfg.MQTTUsername)
	}
	for _, d := range st.Devices() {
		o.Devices = append(o.Devices, d.ID)
	}
	text, missing, err := natsconf.Config(o)
	if err != nil {
		return fail(err)
	}
	for _, m := range missing {
		fmt.Fprintf(stderr, "camhub nats users: %s has no entry in %s and is left out (camhub nats passwd %s %s)\n", m, *f.passwd, *f.passwd, m)
	}
	if *f.out == "" {
		fmt.Fprint(stdout, text)
		return 0
	}
	if err := os.WriteFile(*f.out, []byte(text), 0o640); err != nil {
		return fail(err)
	}
	fmt.Fprintf(stderr, "wrote %s; reload every node (nats-server --signal reload) to apply it\n", *f.out)
	return 0
}
