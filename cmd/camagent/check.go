package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/camagent/camagent/agent"
	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/device/spec"
	paho "github.com/eclipse/paho.mqtt.golang"
)

// checkTimeout bounds each connection test.
const checkTimeout = 5 * time.Second

// check validates the configuration, shows the devices it names, and tests the broker and
// the hub, saying what to fix. It exits 0 when everything is usable, else 1.
func check(args, environ []string, stdout, stderr io.Writer) int {
	cfg, code := load("camagent check", args, environ, stdout)
	if code == 0 {
		return 0
	}
	if code > 0 {
		fmt.Fprintln(stdout, "FAIL configuration: fix the settings above (docs/configuration.md)")
		return 1
	}
	fmt.Fprintf(stdout, "ok   configuration (device id %q, state in %s)\n", cfg.ID, cfg.StateDir)
	if id := cfg.CredentialID(); id != "" {
		fmt.Fprintf(stdout, "ok   device credential %s (MQTT user %q)\n", id, cfg.MQTTUsername)
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stdout, "WARN %s\n", w)
	}
	failed := 0
	report := func(what string, err error, fix string) {
		if err == nil {
			fmt.Fprintf(stdout, "ok   %s\n", what)
			return
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s: %v\n     fix: %s\n", what, err, fix)
	}
	fmt.Fprintln(stdout, "---- devices on this machine (camagent devices)")
	if err := spec.List(stdout); err != nil {
		fmt.Fprintf(stdout, "(cannot list devices: %v)\n", err)
	}
	fmt.Fprintln(stdout, "----")
	for _, d := range [][2]string{{"camera", cfg.Camera}, {"microphone", cfg.Microphone}, {"speaker", cfg.Speaker}} {
		report(d[0]+" "+d[1], checkDevice(d[1]), "connect the device, or set "+d[0]+" to another SPEC (camagent devices lists them)")
	}
	report("broker "+agent.RedactURL(cfg.MQTT), checkBroker(cfg),
		"start the broker (or the hub with mqtt: embedded), or correct mqtt, mqttUsername and the password")
	report("hub "+cfg.Hub, checkHub(cfg.Hub, cfg.HubCA), "start camhub, or correct hub (its base URL, e.g. https://hub.local:8443); for a self-signed certificate set hubCA")
	for i, h := range cfg.Hubs {
		report(fmt.Sprintf("hubs[%d] %s", i, h), checkHub(h, cfg.HubCA), "start that camhub, or correct or remove it from hubs")
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d problem(s) found\n", failed)
		return 1
	}
	fmt.Fprintln(stdout, "all checks passed")
	return 0
}

// checkDevice looks for the device node a SPEC names (synthetic and file devices need none).
func checkDevice(s string) error {
	kind, arg, _ := strings.Cut(s, ":")
	switch kind {
	case "v4l2":
		if _, err := os.Stat(arg); err != nil {
			return err
		}
	case "alsa", "auto":
		if _, err := os.Stat("/dev/snd"); err != nil && kind == "alsa" {
			return fmt.Errorf("no sound devices: %w", err)
		}
	}
	return nil
}

func checkBroker(cfg agent.Config) error {
	o := paho.NewClientOptions()
	for _, b := range control.BrokerURLs(cfg.MQTT) { // the first that answers
		o.AddBroker(b)
	}
	o.SetClientID(fmt.Sprintf("camagent-check-%s-%d", cfg.ID, os.Getpid())).
		SetUsername(cfg.MQTTUsername).SetPassword(cfg.MQTTPassword).
		SetConnectTimeout(checkTimeout).SetAutoReconnect(false).SetCleanSession(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(checkTimeout + time.Second) {
		return fmt.Errorf("no answer within %s", checkTimeout)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	c.Disconnect(100)
	return nil
}

func checkHub(base, caFile string) error {
	hc, err := agent.HubHTTPClient(caFile, checkTimeout)
	if err != nil {
		return err
	}
	resp, err := hc.Get(strings.TrimRight(base, "/") + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /healthz: %s", resp.Status)
	}
	return nil
}
