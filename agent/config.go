package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/camagent/camagent/config"
	"github.com/camagent/camagent/device/spec"
	"github.com/camagent/camagent/rtc"
)

// Config is the agent's configuration (camagent.yaml); Defaults gives the embedded defaults.
type Config struct {
	// ID is the device id, the second MQTT topic level (empty: the host name, see Derive).
	ID string `yaml:"id"`
	// MQTT is the broker URL: tcp://, ssl:// (tls://), ws://, wss://.
	MQTT         string `yaml:"mqtt"`
	MQTTPrefix   string `yaml:"mqttPrefix"`
	MQTTUsername string `yaml:"mqttUsername"`
	MQTTPassword string `yaml:"mqttPassword"`
	// MQTTPasswordFile reads the password from a file; without either, the systemd
	// credential "mqttPassword" is used when there is one.
	MQTTPasswordFile string `yaml:"mqttPasswordFile"`
	// Hub is the channel service's base URL (its token service and signalling).
	Hub string `yaml:"hub"`
	// Hubs are more hub base URLs this device trusts besides Hub: a join command's "server"
	// must name Hub or one of these (anything else is refused), so a command can never choose
	// where the device sends its media or its credential.
	Hubs []string `yaml:"hubs"`
	// HubFailover makes hub and hubs the entry points of one service (a cluster of hubs,
	// docs/scaling.md): when the one a call uses cannot be reached, the call joins and
	// rejoins through the next of them.
	HubFailover bool `yaml:"hubFailover"`
	// CredentialFile holds the device's one credential, made by `camhub device add <id>`
	// (cam_d_<keyid>_<secret>); without it, the systemd credential "credential". It is the
	// MQTT password (user name: the device id) and the hub key, unless those are set.
	CredentialFile string `yaml:"credentialFile"`
	// HubKey is the device credential for the hub's token service (bearer key); not needed
	// on loopback with the embedded defaults.
	HubKey string `yaml:"hubKey"`
	// HubKeyFile reads the key from a file; without either, the systemd credential "hubKey".
	HubKeyFile string `yaml:"hubKeyFile"`
	// HubCA is a PEM file of certificates to trust for an https:// hub besides the system's:
	// a copy of the hub's self-signed tls-cert.pem (docs/networking.md).
	HubCA string `yaml:"hubCA"`
	// AppID used when a join command names none.
	AppID string `yaml:"appId"`
	// UID the device joins with when a join command names none (0: derived from the id).
	UID uint32 `yaml:"uid"`
	// Camera, Microphone, Speaker are SPECs: test, wav:PATH, null, alsa:DEVICE, v4l2:/dev/videoN.
	// Speaker "auto" plays on ALSA when the machine has a sound card, else writes a WAV file.
	Camera     string `yaml:"camera"`
	Microphone string `yaml:"microphone"`
	Speaker    string `yaml:"speaker"`
	// Video settings of the camera.
	Width  int `yaml:"width"`
	Height int `yaml:"height"`
	FPS    int `yaml:"fps"`
	// Encoder picks the video path: auto, passthrough (a camera's own H.264), m2m (the Pi's
	// hardware encoder), rpicam, or software (docs/devices.md).
	Encoder string `yaml:"encoder"`
	// PixelFormat restricts a V4L2 camera's format (h264, mjpeg, yuyv, nv12, i420, yv12); empty: any.
	PixelFormat string `yaml:"pixelFormat"`
	// Bitrate of the video encoder in bit/s, for encoders that take one; 0: the encoder's default.
	Bitrate int `yaml:"bitrate"`
	// GOP is the time between periodic keyframes.
	GOP time.Duration `yaml:"gop"`
	// AudioCodec is what the microphone is sent as: opus, or G.711 (pcmu, pcma) for peers
	// without Opus. Remote audio is played in whichever of these it arrives.
	AudioCodec string `yaml:"audioCodec"`
	// ToneHz is the frequency of the synthetic microphone.
	ToneHz float64 `yaml:"toneHz"`
	// MicDuckDB attenuates the microphone by this many dB while a remote voice plays on the
	// speaker and for MicDuckHold after: a simple echo suppressor for a device whose
	// microphone hears its speaker (half duplex). 0: off, full duplex.
	MicDuckDB   float64       `yaml:"micDuckDB"`
	MicDuckHold time.Duration `yaml:"micDuckHold"`
	// StateDir holds files the agent writes (the speaker WAV on machines without sound);
	// empty: $STATE_DIRECTORY (systemd), else ~/.local/state/camagent (see Derive).
	StateDir string `yaml:"stateDir"`
	// ICELoopbackOnly keeps media on loopback addresses (single-machine setups and tests).
	ICELoopbackOnly bool `yaml:"iceLoopbackOnly"`
	// MetricsListen serves Prometheus metrics at http://<addr>/metrics; empty: off.
	MetricsListen string `yaml:"metricsListen"`
	// MetricsPprof adds Go's profiles (/debug/pprof/…) to the metrics endpoint: for finding
	// a leak, not for production (a CPU profile costs CPU while it runs).
	MetricsPprof bool `yaml:"metricsPprof"`
	// JoinTimeout bounds a join: token, devices, signalling, publishing.
	JoinTimeout time.Duration `yaml:"joinTimeout"`
	// LogLevel is debug, info, warn or error; LogLevels sets it per component
	// (agent, control, rtc, device…), e.g. {rtc: debug}.
	LogLevel  string            `yaml:"logLevel"`
	LogLevels map[string]string `yaml:"logLevels"`

	// AllowInsecureTransport turns the refusal of a configuration that would send the device
	// credential or the MQTT password in the clear to another machine (http:// hub, tcp:// or
	// ws:// broker) into a warning. For a lab network only.
	AllowInsecureTransport bool `yaml:"allowInsecureTransport"`

	// MQTT TLS files, the command secret, Home Assistant discovery, stats (control.go).
	ControlConfig `yaml:",inline"`

	// credentialID is the public key id of the credential from CredentialFile (for logs).
	credentialID string
}

// Defaults are the embedded defaults: synthetic devices, local broker and hub.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		ID:          sanitizeID(host),
		MQTT:        "tcp://127.0.0.1:1883",
		MQTTPrefix:  "camagent",
		Hub:         "http://127.0.0.1:8080",
		AppID:       "demo",
		Camera:      "test",
		Microphone:  "test",
		Speaker:     "auto",
		Width:       640,
		Height:      480,
		FPS:         30,
		Encoder:     "auto",
		AudioCodec:  "opus",
		GOP:         2 * time.Second,
		ToneHz:      440,
		MicDuckHold: 300 * time.Millisecond,
		StateDir:    defaultStateDir(),
		JoinTimeout: 15 * time.Second,
		LogLevel:    "info",

		ControlConfig: DefaultControlConfig(),
	}
}

// Derive fills the settings whose defaults depend on the host and are written empty in a
// configuration file: the id (the host name) and the state directory.
func (c *Config) Derive() {
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = sanitizeID(host)
	}
	if c.StateDir == "" {
		c.StateDir = defaultStateDir()
	}
}

// ResolveSecrets reads the secrets given as files or systemd credentials (credDir is
// $CREDENTIALS_DIRECTORY, empty when there is none) into MQTTPassword and HubKey. The
// device credential (credentialFile, or the systemd credential "credential") fills those
// not set otherwise, and the MQTT user name (the device id) when it is the password; call
// Derive first.
func (c *Config) ResolveSecrets(credDir string) error {
	pw, err1 := config.Secret("mqttPassword", c.MQTTPassword, c.MQTTPasswordFile, "mqttPassword", credDir)
	key, err2 := config.Secret("hubKey", c.HubKey, c.HubKeyFile, "hubKey", credDir)
	cred, err3 := config.Secret("credential", "", c.CredentialFile, "credential", credDir)
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	c.MQTTPassword, c.MQTTPasswordFile = pw, ""
	c.HubKey, c.HubKeyFile = key, ""
	if cred == "" {
		if c.CredentialFile != "" {
			return fmt.Errorf("credentialFile: %s is empty", c.CredentialFile)
		}
		return nil
	}
	id, ok := deviceCredentialID(cred)
	if !ok {
		return errors.New("credentialFile: not a device credential (cam_d_<keyid>_<secret>, as `camhub device add <id>` prints it)")
	}
	c.credentialID, c.CredentialFile = id, ""
	if c.MQTTPassword == "" {
		c.MQTTPassword = cred
		if c.MQTTUsername == "" {
			c.MQTTUsername = c.ID
		}
	}
	if c.HubKey == "" {
		c.HubKey = cred
	}
	return nil
}

// CredentialID is the public key id of the device credential in use (from credentialFile
// or the systemd credential "credential"), empty when there is none: safe to log.
func (c *Config) CredentialID() string { return c.credentialID }

// deviceCredentialID checks the form of a device credential, cam_d_<keyid>_<secret> (keyid:
// 8 hex digits; secret: base64url), and returns its key id.
func deviceCredentialID(s string) (string, bool) {
	rest, ok := strings.CutPrefix(s, "cam_d_")
	if !ok || len(rest) < 10 || rest[8] != '_' {
		return "", false
	}
	id, secret := rest[:8], rest[9:]
	for _, r := range id {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return "", false
		}
	}
	if len(secret) < 16 {
		return "", false
	}
	for _, r := range secret {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", false
		}
	}
	return id, true
}

func defaultStateDir() string {
	if d := os.Getenv("STATE_DIRECTORY"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "camagent")
	}
	return filepath.Join(os.TempDir(), "camagent")
}

// sanitizeID makes a host name usable as one MQTT topic level.
func sanitizeID(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '+' || r == '#' || r < 0x20 {
			return '-'
		}
		return r
	}, s)
	if s == "" {
		return "camagent"
	}
	return s
}

// Validate checks the configuration and says what to fix.
func (c *Config) Validate() error {
	var errs []error
	if c.ID == "" || strings.ContainsAny(c.ID, "/+#") {
		errs = append(errs, fmt.Errorf("id: %q must be non-empty without '/', '+' or '#'", c.ID))
	}
	if !strings.Contains(c.MQTT, "://") {
		errs = append(errs, fmt.Errorf("mqtt: %q is not a broker URL (tcp://host:1883)", c.MQTT))
	}
	if _, err := normalizeHubURL(c.Hub); err != nil {
		errs = append(errs, fmt.Errorf("hub: %q: %v (want the hub's base URL, e.g. https://hub.local:8443)", redactURL(c.Hub), err))
	}
	for i, h := range c.Hubs {
		if _, err := normalizeHubURL(h); err != nil {
			errs = append(errs, fmt.Errorf("hubs[%d]: %q: %v (want a hub's base URL, e.g. https://hub2.local:8443)", i, redactURL(h), err))
		}
	}
	if !c.AllowInsecureTransport {
		for _, p := range c.transportProblems() {
			errs = append(errs, fmt.Errorf("%s; on a lab network only, allowInsecureTransport: true lets this through", p))
		}
	}
	if c.HubCA != "" {
		if _, err := HubTLS(c.HubCA); err != nil {
			errs = append(errs, err)
		}
	}
	if c.AppID == "" {
		errs = append(errs, errors.New("appId: empty"))
	}
	if c.Width < 16 || c.Height < 16 || c.Width%2 != 0 || c.Height%2 != 0 || c.Width > 4096 || c.Height > 4096 {
		errs = append(errs, fmt.Errorf("width/height: %dx%d (even numbers, 16 to 4096)", c.Width, c.Height))
	}
	if c.FPS < 1 || c.FPS > 120 {
		errs = append(errs, fmt.Errorf("fps: %d (1 to 120)", c.FPS))
	}
	if !slices.Contains(spec.Encoders, c.Encoder) {
		errs = append(errs, fmt.Errorf("encoder: %q (want one of %s)", c.Encoder, strings.Join(spec.Encoders, ", ")))
	}
	if !slices.Contains(AudioCodecs, c.AudioCodec) {
		errs = append(errs, fmt.Errorf("audioCodec: %q (want one of %s)", c.AudioCodec, strings.Join(AudioCodecs, ", ")))
	}
	if c.Bitrate < 0 || c.GOP < 0 {
		errs = append(errs, fmt.Errorf("bitrate/gop: %d, %s must not be negative", c.Bitrate, c.GOP))
	}
	if c.MicDuckDB < 0 || c.MicDuckDB > 60 || c.MicDuckHold < 0 || c.MicDuckHold > 5*time.Second {
		errs = append(errs, fmt.Errorf("micDuckDB/micDuckHold: %g dB, %s (0 to 60 dB, 0 to 5 s)", c.MicDuckDB, c.MicDuckHold))
	}
	if c.JoinTimeout <= 0 {
		errs = append(errs, fmt.Errorf("joinTimeout: %s must be positive", c.JoinTimeout))
	}
	if _, err := config.Logger(io.Discard, c.LogLevel, c.LogLevels, false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DefaultUID is the uid a device joins with when none is configured: a stable hash of its id.
func (c *Config) DefaultUID() uint32 {
	if c.UID != 0 {
		return c.UID
	}
	h := fnv.New32a()
	h.Write([]byte(c.ID))
	uid := h.Sum32() & 0x7fffffff
	if uid == 0 {
		uid = 1
	}
	return uid
}

// HubTLS is the TLS configuration for an https:// hub: the system's roots plus the
// certificates in the PEM file caFile (none: nil, the defaults).
func HubTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pool, err := config.RootsWithFile("hubCA", caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool}, nil
}

// HubHTTPClient is the HTTP client for the hub's API: its TLS trusts HubTLS(caFile).
func HubHTTPClient(caFile string, timeout time.Duration) (*http.Client, error) {
	cfg, err := HubTLS(caFile)
	if err != nil {
		return nil, err
	}
	return hubHTTPClient(cfg, timeout), nil
}

// hubHTTPClient is an HTTP client whose TLS is cfg (nil: the defaults). Its connects are
// bounded as the signalling's are (rtc.DefaultConnectTimeout): a SYN lost to a cut network is
// retried on a fresh connect, and the failure counts as unanswered (quick rejoin retry).
func hubHTTPClient(cfg *tls.Config, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.DialContext = (&net.Dialer{Timeout: rtc.DefaultConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: tr, Timeout: timeout}
}
