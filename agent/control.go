package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/version"
)

// ControlConfig holds the agent's MQTT control-plane settings beyond the
// broker URL and credentials: TLS files, the command secret, Home Assistant
// discovery and the stats interval. Its yaml keys are meant to sit at the
// top level of camagent.yaml (embedded inline in Config).
type ControlConfig struct {
	// MQTTCAFile, MQTTCertFile, MQTTKeyFile and MQTTServerName configure
	// ssl://, tls:// and wss:// brokers: the CA that signs the broker's
	// certificate (default: the system roots), a client certificate and key
	// for brokers that require one, and the name to verify (default: the
	// URL's host).
	MQTTCAFile     string `yaml:"mqttCAFile"`
	MQTTCertFile   string `yaml:"mqttCertFile"`
	MQTTKeyFile    string `yaml:"mqttKeyFile"`
	MQTTServerName string `yaml:"mqttServerName"`
	// CommandSecret, when set, must be in every command's "secret" field.
	CommandSecret string `yaml:"commandSecret"`
	// HomeAssistantPrefix turns on Home Assistant MQTT discovery under this
	// prefix (usually "homeassistant"); empty turns it off.
	HomeAssistantPrefix string `yaml:"homeAssistantPrefix"`
	// HomeAssistantName is the device's name in Home Assistant (default: the id).
	HomeAssistantName string `yaml:"homeAssistantName"`
	// DefaultChannel is the channel Home Assistant's "Call" switch and
	// "Join" button join.
	DefaultChannel string `yaml:"defaultChannel"`
	// StatsInterval is how often a "stats" event is published during a
	// call; 0 turns stats events off.
	StatsInterval time.Duration `yaml:"statsInterval"`
	// MQTTPersistentSession keeps the device's MQTT session at the broker while it is
	// offline, so QoS 1 commands sent meanwhile run when it returns (default: clean session).
	MQTTPersistentSession bool `yaml:"mqttPersistentSession"`
	// MQTTQoS0 publishes the device's messages at QoS 0 instead of 1 (control's
	// PublishQoS0): on a NATS cluster they then do not wait for JetStream (docs/nats.md).
	MQTTQoS0 bool `yaml:"mqttQos0"`
}

// DefaultStatsInterval is the stats interval of the defaults.
const DefaultStatsInterval = 10 * time.Second

// DefaultControlConfig is the control-plane part of the defaults.
func DefaultControlConfig() ControlConfig {
	return ControlConfig{StatsInterval: DefaultStatsInterval}
}

// Validate checks the control-plane settings.
func (c ControlConfig) Validate() error {
	var errs []error
	if (c.MQTTCertFile == "") != (c.MQTTKeyFile == "") {
		errs = append(errs, errors.New("mqttCertFile/mqttKeyFile: give both or neither"))
	}
	if c.StatsInterval < 0 || (c.StatsInterval > 0 && c.StatsInterval < 100*time.Millisecond) {
		errs = append(errs, fmt.Errorf("statsInterval: %s (0 for off, else at least 100ms)", c.StatsInterval))
	}
	return errors.Join(errs...)
}

// Option changes an Agent at New.
type Option func(*Agent)

// WithControl sets the control-plane settings (until they are part of
// Config).
func WithControl(cc ControlConfig) Option {
	return func(a *Agent) { a.ctl = cc }
}

// controlOptions completes the control client's options with the
// control-plane settings.
func (a *Agent) controlOptions(o control.Options) (control.Options, error) {
	if err := a.ctl.Validate(); err != nil {
		return o, err
	}
	files := control.TLSFiles{CAFile: a.ctl.MQTTCAFile, CertFile: a.ctl.MQTTCertFile,
		KeyFile: a.ctl.MQTTKeyFile, ServerName: a.ctl.MQTTServerName}
	if !files.Empty() {
		tlsCfg, err := files.Config()
		if err != nil {
			return o, err
		}
		o.TLS = tlsCfg
	}
	o.Secret = a.ctl.CommandSecret
	o.PersistentSession = a.ctl.MQTTPersistentSession
	o.PublishQoS0 = a.ctl.MQTTQoS0
	o.HomeAssistant = control.HomeAssistant{
		Prefix:         a.ctl.HomeAssistantPrefix,
		Name:           a.ctl.HomeAssistantName,
		DefaultChannel: a.ctl.DefaultChannel,
		SWVersion:      version.Version,
	}
	return o, nil
}
