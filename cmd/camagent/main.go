// Command camagent is the device daemon: it keeps an MQTT connection and, on command, joins
// a channel, publishes its camera and microphone and plays the other users' audio.
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

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/device/spec"
	"github.com/camagent/camagent/version"
)

const usage = `camagent — the camagent device daemon

Usage:
  camagent [--config FILE] [--id ID] [--mqtt URL] [--hub URL] [--camera SPEC] [--microphone SPEC] [--speaker SPEC]
  camagent devices     list cameras, microphones and speakers
  camagent version

SPECs: test (synthetic), v4l2:/dev/videoN, rpicam, alsa:DEVICE (alsa:default, alsa:plughw:1,0),
wav:PATH (read for a microphone, written for a speaker), null; the speaker also takes auto
(ALSA when there is a sound card, else a WAV file in the state directory).

Control it over MQTT (docs/mqtt.md), e.g.:
  mosquitto_pub -t camagent/<id>/cmd -m '{"id":"1","action":"join","channel":"porch"}'

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintln(stdout, "camagent", version.String())
			return 0
		case "devices":
			return listDevices(stdout)
		}
	}
	cfg := agent.Defaults()
	fs := flag.NewFlagSet("camagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	id := fs.String("id", "", "device id, the MQTT topic level (default: the host name, "+cfg.ID+")")
	mqttURL := fs.String("mqtt", "", "MQTT broker URL (default "+cfg.MQTT+")")
	hubURL := fs.String("hub", "", "hub base URL (default "+cfg.Hub+")")
	camera := fs.String("camera", "", "camera SPEC (default test)")
	mic := fs.String("microphone", "", "microphone SPEC (default test)")
	spk := fs.String("speaker", "", "speaker SPEC (default auto)")
	stateDir := fs.String("state-dir", "", "where the agent writes files (default "+cfg.StateDir+")")
	loopback := fs.Bool("ice-loopback-only", false, "keep media on loopback addresses (single-machine setups, tests)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "camagent: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if *cfgPath != "" {
		if err := config.LoadFile(*cfgPath, &cfg); err != nil {
			fmt.Fprintln(stderr, "camagent:", err)
			return 2
		}
	}
	for dst, v := range map[*string]string{&cfg.ID: *id, &cfg.MQTT: *mqttURL, &cfg.Hub: *hubURL,
		&cfg.Camera: *camera, &cfg.Microphone: *mic, &cfg.Speaker: *spk, &cfg.StateDir: *stateDir} {
		if v != "" {
			*dst = v
		}
	}
	if *loopback {
		cfg.ICELoopbackOnly = true
	}
	for role, s := range map[string]string{"camera": cfg.Camera, "microphone": cfg.Microphone, "speaker": cfg.Speaker} {
		if err := spec.Check(role, s); err != nil {
			fmt.Fprintln(stderr, "camagent:", err)
			return 2
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintln(stderr, "camagent: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	a, err := agent.New(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "camagent:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("camagent starting", "id", cfg.ID, "mqtt", cfg.MQTT, "hub", cfg.Hub, "version", version.Version,
		"camera", cfg.Camera, "microphone", cfg.Microphone, "speaker", cfg.Speaker)
	if err := a.Run(ctx); err != nil {
		log.Error("camagent stopped", "err", err)
		return 1
	}
	log.Info("camagent stopped")
	return 0
}

func listDevices(w io.Writer) int {
	fmt.Fprintln(w, "cameras:")
	fmt.Fprintln(w, "  test    synthetic test pattern (H.264, 640x480@30 by default)")
	fmt.Fprintln(w, "microphones:")
	fmt.Fprintln(w, "  test    synthetic tone (440 Hz)")
	fmt.Fprintln(w, "speakers:")
	fmt.Fprintln(w, "  wav:PATH  a WAV file (48 kHz mono)")
	return 0
}
