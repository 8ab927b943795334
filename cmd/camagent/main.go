// Command camagent is the device daemon: it keeps an MQTT connection and, on command, joins
// a channel, publishes its camera and microphone and plays the other users' audio.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/device/spec"
	"github.com/camagent/camagent/systemd"
	"github.com/camagent/camagent/version"
)

const usage = `camagent — the camagent device daemon

Usage:
  camagent [--config FILE] [--id ID] [--mqtt URL] [--hub URL] [--camera SPEC] [--microphone SPEC] [--speaker SPEC]
  camagent check [the same flags]   validate the configuration, test the broker and the hub
  camagent devices                  list cameras, microphones and speakers
  camagent version

SPECs: test (synthetic), v4l2:/dev/videoN, rpicam, alsa:DEVICE (alsa:default, alsa:plughw:1,0),
wav:PATH (read for a microphone, written for a speaker), null; the speaker also takes auto
(ALSA when there is a sound card, else a WAV file in the state directory).

Settings come from the defaults, then the file (--config, or $CAMAGENT_CONFIG), then
CAMAGENT_<KEY> environment variables (CAMAGENT_MQTT, CAMAGENT_CREDENTIAL_FILE…), then the flags
(docs/configuration.md lists them all). The device's credential (camhub device add <id>) goes in
credentialFile or the systemd credential "credential"; it is sent only to the configured hubs
(hub, hubs) and broker, and only over TLS or loopback (allowInsecureTransport: lab networks only).

Control it over MQTT (docs/mqtt.md), e.g.:
  mosquitto_pub -t camagent/<id>/cmd -m '{"id":"1","action":"join","channel":"porch"}'

Flags:
`

// envPrefix starts the environment variables that override configuration keys.
const envPrefix = "CAMAGENT_"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "camagent", version.String())
			return 0
		case "devices":
			return listDevices(stdout, stderr)
		case "check":
			return check(args[1:], environ, stdout, stderr)
		}
	}
	cfg, code := load("camagent", args, environ, stderr)
	if code >= 0 {
		return code
	}
	log, err := config.Logger(stderr, cfg.LogLevel, cfg.LogLevels, systemd.UnderJournal())
	if err != nil {
		fmt.Fprintln(stderr, "camagent:", err)
		return 2
	}
	a, err := agent.New(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "camagent:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var sup sync.WaitGroup
	sup.Go(func() { systemd.Supervise(ctx, a.Ready(), a.LastHeartbeat, log) })
	defer sup.Wait()
	log.Info("camagent starting", "id", cfg.ID, "mqtt", agent.RedactURL(cfg.MQTT), "hub", cfg.Hub, "hubs", cfg.Hubs,
		"credential", cfg.CredentialID(), "version", version.Version,
		"camera", cfg.Camera, "microphone", cfg.Microphone, "speaker", cfg.Speaker)
	err = a.Run(ctx)
	stop()
	if err != nil {
		log.Error("camagent stopped", "err", err)
		return 1
	}
	log.Info("camagent stopped")
	return 0
}

// load runs the configuration pipeline: defaults → file → environment → flags → derived
// values and secrets → validation. code is -1 on success, else the exit code (the error has
// been printed).
func load(name string, args, environ []string, stderr io.Writer) (cfg agent.Config, code int) {
	def := agent.Defaults()
	var fl agent.Config // flag values; only the flags given are applied, after file and env
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "configuration file (YAML; default $CAMAGENT_CONFIG, else none)")
	fs.StringVar(&fl.ID, "id", "", "device id, the MQTT topic level (default: the host name)")
	fs.StringVar(&fl.MQTT, "mqtt", "", "MQTT broker URL (default "+def.MQTT+")")
	fs.StringVar(&fl.Hub, "hub", "", "hub base URL (default "+def.Hub+")")
	fs.StringVar(&fl.Camera, "camera", "", "camera SPEC (default "+def.Camera+")")
	fs.StringVar(&fl.Microphone, "microphone", "", "microphone SPEC (default "+def.Microphone+")")
	fs.StringVar(&fl.Speaker, "speaker", "", "speaker SPEC (default "+def.Speaker+")")
	fs.StringVar(&fl.StateDir, "state-dir", "", "where the agent writes files (default $STATE_DIRECTORY, else ~/.local/state/camagent)")
	fs.BoolVar(&fl.ICELoopbackOnly, "ice-loopback-only", false, "keep media on loopback addresses (single-machine setups, tests)")
	fs.StringVar(&fl.LogLevel, "log-level", "", "log level: debug, info, warn, error (default "+def.LogLevel+")")
	cfg = def
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return cfg, 0
		}
		return cfg, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q (see --help)\n", name, fs.Arg(0))
		return cfg, 2
	}
	fail := func(err error) (agent.Config, int) {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return cfg, 2
	}
	unknown, err := config.FileAndEnv(envPrefix, &cfg, *cfgPath, environ)
	if err != nil {
		return fail(err)
	}
	if len(unknown) > 0 {
		fmt.Fprintf(stderr, "%s: %s\n", name, config.UnknownEnvWarning(envPrefix, &cfg, unknown))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "id":
			cfg.ID = fl.ID
		case "mqtt":
			cfg.MQTT = fl.MQTT
		case "hub":
			cfg.Hub = fl.Hub
		case "camera":
			cfg.Camera = fl.Camera
		case "microphone":
			cfg.Microphone = fl.Microphone
		case "speaker":
			cfg.Speaker = fl.Speaker
		case "state-dir":
			cfg.StateDir = fl.StateDir
		case "ice-loopback-only":
			cfg.ICELoopbackOnly = fl.ICELoopbackOnly
		case "log-level":
			cfg.LogLevel = fl.LogLevel
		}
	})
	cfg.Derive()
	if err := cfg.ResolveSecrets(config.Getenv(environ, "CREDENTIALS_DIRECTORY")); err != nil {
		return fail(err)
	}
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, r := range [][2]string{{"camera", cfg.Camera}, {"microphone", cfg.Microphone}, {"speaker", cfg.Speaker}} {
		if err := spec.Check(r[0], r[1]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fail(fmt.Errorf("invalid configuration:\n%w", err))
	}
	return cfg, -1
}

func listDevices(stdout, stderr io.Writer) int {
	if err := spec.List(stdout); err != nil {
		fmt.Fprintln(stderr, "camagent devices:", err)
		return 1
	}
	return 0
}
