package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/auth"
	"github.com/camagent/camagent/hub/mosquitto"
)

const identitiesUsage = `camhub user|device|key — the hub's identities (docs/security.md)

  camhub user add NAME [--admin] [--password-file F]   a person (the password is read from F, or stdin)
  camhub user grant NAME DEVICE|* view,talk,command,admin   permissions on a device (empty list: revoke)
  camhub user passwd NAME [--password-file F]           a new password (their sessions end)
  camhub user list | camhub user del NAME
  camhub device add ID [--uid N]                        enrol a device: prints its credential once
  camhub device list | camhub device del ID             del revokes the credential at once
  camhub key add NAME --actions A,B [--devices D,E] [--apps X] [--channels C] [--max-ttl 1h] [--mqtt]
                                                        an API key: prints it once
  camhub key list | camhub key del ID|NAME

With an external Mosquitto broker, --mosquitto-passwd FILE on device add/del and key add/del
(with --mqtt) also sets or removes the login in Mosquitto's password file; see
"camhub mosquitto --help" for its ACL file.

Actions of a key: view, talk, command (or single commands: join, leave, status, snapshot,
privacy), token (mint channel tokens in --apps/--channels), metrics. Each subcommand takes
--config FILE and --state-dir DIR to find the hub's state directory (the running hub sees the
change within a second).
`

// openStore finds the hub's state directory from the configuration and opens its identities.
func openStore(fs *flag.FlagSet, args, environ []string, stderr io.Writer) (*auth.Store, []string, error) {
	cfgPath := fs.String("config", "", "configuration file (YAML) naming the state directory")
	stateDir := fs.String("state-dir", "", "the hub's state directory")
	fs.SetOutput(stderr)
	if err := fs.Parse(reorder(fs, args)); err != nil {
		return nil, nil, err
	}
	cfg := hub.Defaults()
	if _, err := config.FileAndEnv(envPrefix, &cfg, *cfgPath, environ); err != nil {
		return nil, nil, err
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	cfg.Derive()
	st, err := auth.Open(cfg.StateDir)
	return st, fs.Args(), err
}

// reorder puts flags before positional arguments, so `camhub user add alice --admin` works.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				continue
			}
			if i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	return append(flags, pos...)
}

func readPassword(file string, stdin io.Reader, stderr io.Writer) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	fmt.Fprint(stderr, "password (at least 10 characters), then Enter: ")
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password on standard input")
	}
	fmt.Fprintln(stderr)
	return strings.TrimRight(line, "\r\n"), nil
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

// runIdentities runs `camhub user|device|key …`.
func runIdentities(kind string, args, environ []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, identitiesUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("camhub "+kind+" "+verb, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(stderr, identitiesUsage) }
	var (
		admin    = fs.Bool("admin", false, "the person manages the hub and may do everything")
		pwFile   = fs.String("password-file", "", "read the password from this file")
		uid      = fs.Uint("uid", 0, "the device's uid (0: a stable hash of its id, as the agent uses)")
		actions  = fs.String("actions", "", "the key's actions")
		devices  = fs.String("devices", "", "the devices the key acts on (* for all)")
		apps     = fs.String("apps", "", "Apps the key mints tokens for")
		channels = fs.String("channels", "", "channels the key mints tokens for (exact, prefix*, or *)")
		maxTTL   = fs.Duration("max-ttl", time.Hour, "longest token the key gets")
		mqttKey  = fs.Bool("mqtt", false, "the key may log in to the MQTT broker (user name: its id)")
		mosqPW   = fs.String("mosquitto-passwd", "", "also add (or on del remove) the MQTT login in this Mosquitto password file")
	)
	st, pos, err := openStore(fs, args[1:], environ, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "camhub %s: %v\n", kind, err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "camhub %s %s: %s\n", kind, verb, strings.TrimPrefix(err.Error(), "auth: "))
		return 1
	}
	need := func(n int, what string) bool {
		if len(pos) != n {
			fmt.Fprintf(stderr, "camhub %s %s: expects %s (see camhub %s --help)\n", kind, verb, what, kind)
			return false
		}
		return true
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch kind + " " + verb {
	case "user add":
		if !need(1, "NAME") {
			return 2
		}
		pw, err := readPassword(*pwFile, stdin, stderr)
		if err != nil {
			return fail(err)
		}
		if err := st.AddUser(pos[0], pw, *admin, nil); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "user %s added (admin: %v) in %s\n", pos[0], *admin, st.Path())
	case "user passwd":
		if !need(1, "NAME") {
			return 2
		}
		pw, err := readPassword(*pwFile, stdin, stderr)
		if err != nil {
			return fail(err)
		}
		if err := st.SetUser(pos[0], auth.UserChange{Password: &pw}); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "password of %s changed; their sessions have ended\n", pos[0])
	case "user grant":
		if len(pos) != 2 && len(pos) != 3 {
			need(3, "NAME DEVICE PERMISSIONS")
			return 2
		}
		perms := []string{}
		if len(pos) == 3 {
			perms = splitList(pos[2])
		}
		if err := st.SetUser(pos[0], auth.UserChange{Permissions: map[string][]string{pos[1]: perms}}); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%s on %s: %s\n", pos[0], pos[1], strings.Join(perms, ",")+map[bool]string{true: "(none)"}[len(perms) == 0])
	case "user list":
		fmt.Fprintln(tw, "NAME\tADMIN\tPERMISSIONS")
		for _, u := range st.Users() {
			var ps []string
			for dev, p := range u.Permissions {
				ps = append(ps, dev+"="+strings.Join(p, ","))
			}
			fmt.Fprintf(tw, "%s\t%v\t%s\n", u.Name, u.Admin, strings.Join(ps, " "))
		}
	case "user del":
		if !need(1, "NAME") {
			return 2
		}
		if err := st.DeleteUser(pos[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "user %s deleted\n", pos[0])
	case "device add":
		if !need(1, "ID") {
			return 2
		}
		if *uid > 0xffffffff {
			return fail(errors.New("--uid must fit in 32 bits"))
		}
		cred, d, err := st.AddDevice(pos[0], uint32(*uid))
		if err != nil {
			return fail(err)
		}
		if *mosqPW != "" {
			if err := mosquitto.AddPassword(*mosqPW, d.ID, cred); err != nil {
				st.DeleteDevice(d.ID)
				return fail(fmt.Errorf("%w (the device was not enrolled)", err))
			}
			fmt.Fprintf(stderr, "MQTT login %s set in %s; reload mosquitto to apply it\n", d.ID, *mosqPW)
		}
		fmt.Fprintf(stderr, "device %s enrolled (uid %d, key id %s). Its credential, shown only now:\n", d.ID, d.UID, d.KeyID)
		fmt.Fprintln(stdout, cred)
		fmt.Fprintf(stderr, "On the device: put it in a file only camagent reads (e.g. /etc/camagent/credential, mode 0640 root:camagent)\n"+
			"and set in camagent.yaml:  id: %s   credentialFile: /etc/camagent/credential\n", d.ID)
	case "device list":
		fmt.Fprintln(tw, "ID\tUID\tKEY ID\tENROLLED")
		for _, d := range st.Devices() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", d.ID, d.UID, d.KeyID, d.Created.Format(time.RFC3339))
		}
	case "device del":
		if !need(1, "ID") {
			return 2
		}
		if err := st.DeleteDevice(pos[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "device %s deleted: its credential no longer works\n", pos[0])
		if *mosqPW != "" {
			if err := mosquitto.RemoveUser(*mosqPW, pos[0]); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stderr, "MQTT login %s removed from %s; reload mosquitto to apply it\n", pos[0], *mosqPW)
		}
	case "key add":
		if !need(1, "NAME") {
			return 2
		}
		text, k, err := st.AddKey(auth.Key{Name: pos[0], Actions: splitList(*actions), Devices: splitList(*devices),
			Apps: splitList(*apps), Channels: splitList(*channels), MaxTTL: auth.Duration(*maxTTL), MQTT: *mqttKey})
		if err != nil {
			return fail(err)
		}
		if *mosqPW != "" {
			if err := mosqKey(*mosqPW, k, text); err != nil {
				st.DeleteKey(k.ID)
				return fail(fmt.Errorf("%w (the key was not made)", err))
			}
			fmt.Fprintf(stderr, "MQTT login %s set in %s; write the ACL again (camhub mosquitto acl) and reload mosquitto\n", k.ID, *mosqPW)
		}
		fmt.Fprintf(stderr, "key %s (id %s) made; shown only now:\n", k.Name, k.ID)
		fmt.Fprintln(stdout, text)
	case "key list":
		fmt.Fprintln(tw, "ID\tNAME\tACTIONS\tDEVICES\tAPPS\tCHANNELS\tMAX TTL\tMQTT")
		for _, k := range st.Keys() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", k.ID, k.Name, strings.Join(k.Actions, ","), strings.Join(k.Devices, ","),
				strings.Join(k.Apps, ","), strings.Join(k.Channels, ","), time.Duration(k.MaxTTL), k.MQTT)
		}
	case "key del":
		if !need(1, "ID|NAME") {
			return 2
		}
		id := pos[0]
		for _, k := range st.Keys() {
			if k.Name == pos[0] {
				id = k.ID
			}
		}
		if err := st.DeleteKey(pos[0]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "key %s deleted\n", pos[0])
		if *mosqPW != "" {
			if err := mosquitto.RemoveUser(*mosqPW, id); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stderr, "MQTT login %s removed from %s; reload mosquitto to apply it\n", id, *mosqPW)
		}
	default:
		fmt.Fprintf(stderr, "camhub %s: unknown subcommand %q\n%s", kind, verb, identitiesUsage)
		return 2
	}
	return 0
}

// mosqKey sets an MQTT key's login in a Mosquitto password file: user name its id, password
// the whole key text, as on the embedded broker.
func mosqKey(file string, k auth.Key, text string) error {
	if !k.MQTT {
		return errors.New("--mosquitto-passwd needs --mqtt (the key would have no MQTT login)")
	}
	return mosquitto.AddPassword(file, k.ID, text)
}
