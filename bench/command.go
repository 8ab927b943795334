package bench

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// PostCommand sends a device command (body, JSON) through the hub's API at hubURL, in demo
// mode (no key on loopback), again every `every` until the hub answers 200 or `within` has
// passed: the device may not be connected yet. Used by make scale and make soak.
func PostCommand(hubURL, device, body string, within, every time.Duration) error {
	var last string
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(every) {
		resp, err := http.Post(hubURL+"/api/devices/"+device+"/cmd", "application/json", strings.NewReader(body))
		if err != nil {
			last = err.Error()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status
	}
	return fmt.Errorf("command to %s through %s: no success in %v: %s", device, hubURL, within, last)
}
