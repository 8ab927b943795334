// Command camhub is the self-hosted channel service: web pages and browser SDK, token
// service, signalling and forwarding, device directory, and an optional embedded MQTT broker.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/hub"
	"github.com/camagent/camagent/hub/token"
	"github.com/camagent/camagent/version"
)

const usage = `camhub — the camagent channel service

Usage:
  camhub [--config FILE] [--listen ADDR] [--mqtt URL|embedded] [--mqtt-listen ADDR] [--log-level LEVEL]
  camhub token --app APP --channel NAME --uid N [--role publisher|subscriber] [--expire 1h] [--config FILE]
  camhub version

With no configuration camhub runs on the embedded defaults: web, API and signalling on
http://127.0.0.1:8080, an MQTT broker on 127.0.0.1:1883, App ID "demo".

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, "camhub", version.String())
			return 0
		}
	}
	fs := flag.NewFlagSet("camhub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "web/API/signalling listen address (default 127.0.0.1:8080)")
	mqttURL := fs.String("mqtt", "", `MQTT broker URL, or "embedded" (default embedded)`)
	mqttListen := fs.String("mqtt-listen", "", "embedded broker listen address (default 127.0.0.1:1883)")
	stateDir := fs.String("state-dir", "", "where generated secrets are kept")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "camhub:", err)
		return 2
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Listen, *listen)
	set(&cfg.MQTT, *mqttURL)
	set(&cfg.MQTTListen, *mqttListen)
	set(&cfg.StateDir, *stateDir)

	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(stderr, "camhub: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	h, err := hub.New(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "camhub:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := h.Run(ctx); err != nil {
		log.Error("hub stopped", "err", err)
		return 1
	}
	log.Info("hub stopped")
	return 0
}

func loadConfig(path string) (hub.Config, error) {
	cfg := hub.Defaults()
	if path != "" {
		if err := config.LoadFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("camhub token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML) holding the App certificates")
	stateDir := fs.String("state-dir", "", "state directory holding generated App certificates")
	app := fs.String("app", "", "App ID (default: the first App of the configuration)")
	channel := fs.String("channel", "", "channel name (required)")
	uid := fs.Uint("uid", 0, "user id (0: any uid)")
	role := fs.String("role", token.RolePublisher, "publisher or subscriber")
	expire := fs.Duration("expire", time.Hour, "lifetime of the token")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "camhub token:", err)
		return 2
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
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
	tok, _, err := token.Mint(*app, cert, *channel, uint32(*uid), *role, *expire, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "camhub token:", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
