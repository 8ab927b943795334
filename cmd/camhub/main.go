// Command camhub is the self-hosted channel service: web pages and browser SDK, token
// service, signalling and forwarding, device directory, and an optional embedded MQTT broker.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/systemd"
	"github.com/camagent/camagent/version"
)

const usage = `camhub — the camagent channel service

Usage:
  camhub [--config FILE] [--listen ADDR] [--mqtt URL|embedded] [--mqtt-listen ADDR] [--state-dir DIR] [--log-level LEVEL] [--demo]
  camhub token --app APP --channel NAME --uid N [--role publisher|subscriber] [--expire 1h] [--config FILE]
  camhub user|device|key add|list|del …   people, enrolled devices, API keys (camhub user --help)
  camhub mosquitto acl|passwd …            files for an external Mosquitto broker (camhub mosquitto --help)
  camhub nats users|passwd …               the trust model for a NATS cluster (camhub nats --help)
  camhub version

With no configuration camhub runs on the embedded defaults: web, API and signalling on
http://127.0.0.1:8080, an MQTT broker on 127.0.0.1:1883, App ID "demo". People log in to the
pages (first run: camhub user add admin --admin) and devices connect with their credentials
(camhub device add ID); --demo instead trusts every client on loopback (make run, tests) and
refuses to listen beyond it. Settings come from the defaults, then the file (--config, or $CAMHUB_CONFIG),
then CAMHUB_<KEY> environment variables (CAMHUB_LISTEN, CAMHUB_MQTT_PASSWORD_FILE…), then the
flags (docs/configuration.md lists them all).

Flags:
`

// envPrefix starts the environment variables that override configuration keys.
const envPrefix = "CAMHUB_"

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], environ, stdout, stderr)
		case "user", "device", "key":
			return runIdentities(args[0], args[1:], environ, os.Stdin, stdout, stderr)
		case "mosquitto":
			return runMosquitto(args[1:], environ, os.Stdin, stdout, stderr)
		case "nats":
			return runNATS(args[1:], environ, os.Stdin, stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "camhub", version.String())
			return 0
		}
	}
	cfg, code := load(args, environ, stderr)
	if code >= 0 {
		return code
	}
	log, err := config.Logger(stderr, cfg.LogLevel, cfg.LogLevels, systemd.UnderJournal())
	if err != nil {
		fmt.Fprintln(stderr, "camhub:", err)
		return 2
	}
	h, err := hub.New(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "camhub:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Ready: listening, with the embedded broker (when configured) up. The hub's own MQTT
	// client reconnects by itself, so readiness does not wait on an external broker. The
	// watchdog is fed while the hub answers its own /healthz.
	var sup sync.WaitGroup
	sup.Go(func() { systemd.Supervise(ctx, h.Ready(), healthy(h), log) })
	defer sup.Wait()
	err = h.Run(ctx)
	stop()
	if err != nil {
		log.Error("hub stopped", "err", err)
		return 1
	}
	log.Info("hub stopped")
	return 0
}

// healthy returns the time when the hub's web server answers GET /healthz, else zero.
func healthy(h *hub.Hub) func() time.Time {
	// Its own listener, maybe with a self-signed certificate: the check is of liveness, not
	// of identity.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return func() time.Time {
		resp, err := hc.Get(h.URL() + "/healthz")
		if err != nil {
			return time.Time{}
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return time.Time{}
		}
		return time.Now()
	}
}

// load runs the configuration pipeline: defaults → file (--config or $CAMHUB_CONFIG) →
// CAMHUB_<KEY> environment variables → flags → derived values and secrets → validation.
// code is -1 on success, else the exit code (the error has been printed).
func load(args, environ []string, stderr io.Writer) (cfg hub.Config, code int) {
	def := hub.Defaults()
	var fl hub.Config
	fs := flag.NewFlagSet("camhub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "configuration file (YAML; default $CAMHUB_CONFIG, else none)")
	fs.StringVar(&fl.Listen, "listen", "", "web/API/signalling listen address (default "+def.Listen+")")
	fs.StringVar(&fl.MQTT, "mqtt", "", `MQTT broker URL, or "embedded" (default embedded)`)
	fs.StringVar(&fl.MQTTListen, "mqtt-listen", "", "embedded broker listen address (default "+def.MQTTListen+")")
	fs.StringVar(&fl.StateDir, "state-dir", "", "where generated secrets are kept (default $STATE_DIRECTORY, else ~/.local/state/camhub)")
	fs.StringVar(&fl.LogLevel, "log-level", "", "log level: debug, info, warn, error (default "+def.LogLevel+")")
	fs.BoolVar(&fl.Demo, "demo", false, "demo mode: trust clients on loopback without credentials (loopback only)")
	cfg = def
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return cfg, 0
		}
		return cfg, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "camhub: unexpected argument %q (see --help)\n", fs.Arg(0))
		return cfg, 2
	}
	fail := func(err error) (hub.Config, int) {
		fmt.Fprintln(stderr, "camhub:", err)
		return cfg, 2
	}
	unknown, err := config.FileAndEnv(envPrefix, &cfg, *cfgPath, environ)
	if err != nil {
		return fail(err)
	}
	if len(unknown) > 0 {
		fmt.Fprintln(stderr, "camhub:", config.UnknownEnvWarning(envPrefix, &cfg, unknown))
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = fl.Listen
		case "mqtt":
			cfg.MQTT = fl.MQTT
		case "mqtt-listen":
			cfg.MQTTListen = fl.MQTTListen
		case "state-dir":
			cfg.StateDir = fl.StateDir
		case "log-level":
			cfg.LogLevel = fl.LogLevel
		case "demo":
			cfg.Demo = fl.Demo
		}
	})
	cfg.Derive()
	if err := cfg.ResolveSecrets(config.Getenv(environ, "CREDENTIALS_DIRECTORY")); err != nil {
		return fail(err)
	}
	if err := cfg.Validate(); err != nil {
		return fail(fmt.Errorf("invalid configuration:\n%w", err))
	}
	return cfg, -1
}

func runToken(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("camhub token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML) holding the App certificates")
	stateDir := fs.String("state-dir", "", "state directory holding generated App certificates")
	app := fs.String("app", "", "App ID (default: the first App of the configuration)")
	channel := fs.String("channel", "", "channel name (required)")
	uid := fs.Uint("uid", 0, "user id (0: any uid, for subscriber tokens only)")
	role := fs.String("role", token.RolePublisher, "publisher or subscriber")
	expire := fs.Duration("expire", time.Hour, "lifetime of the token (at most 24h)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg := hub.Defaults()
	_, err := config.FileAndEnv(envPrefix, &cfg, *cfgPath, environ)
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	cfg.Derive()
	if err == nil {
		err = cfg.ResolveSecrets(config.Getenv(environ, "CREDENTIALS_DIRECTORY"))
	}
	if err != nil {
		fmt.Fprintln(stderr, "camhub token:", err)
		return 2
	}
	if *channel == "" {
		fmt.Fprintln(stderr, "camhub token: --channel is required")
		return 2
	}
	if *app == "" && len(cfg.Apps) > 0 {
		*app = cfg.Apps[0].ID
	}
	certs, err := cfg.Certificates()
	if err != nil {
		fmt.Fprintln(stderr, "camhub token:", err)
		return 1
	}
	cert, ok := certs[*app]
	if !ok {
		fmt.Fprintf(stderr, "camhub token: unknown App ID %q\n", *app)
		return 2
	}
	if *uid > 0xffffffff {
		fmt.Fprintln(stderr, "camhub token: --uid must fit in 32 bits")
		return 2
	}
	if *expire <= 0 || *expire > hub.MaxTokenLifetime {
		fmt.Fprintf(stderr, "camhub token: --expire must be between 1s and %s\n", hub.MaxTokenLifetime)
		return 2
	}
	if *uid == 0 && *role != token.RoleSubscriber {
		fmt.Fprintln(stderr, "camhub token: a token that publishes must name its uid (--uid N): uid 0 would admit anyone")
		return 2
	}
	tok, _, err := token.Mint(*app, cert, *channel, uint32(*uid), *role, *expire, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "camhub token:", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
