package spec

import (
	"errors"

	"github.com/camagent/camagent/device/encode"
)

// hardwareEncoder returns the board's hardware encoder for raw pictures, if there is one.
func hardwareEncoder(o VideoOptions) (func(w, h, fps int) (encode.Encoder, error), string, error) {
	return nil, "", errors.New("the Pi's M2M encoder is not in this build yet")
}
