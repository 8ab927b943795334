package m2m

import "github.com/camagent/camagent/device/v4l2abi"

// Device is the kernel interface the encoder uses: the device node's ioctls, mmap and
// poll (v4l2abi.Device). OpenDevice uses the real node; tests pass a fake.
type Device = v4l2abi.Device
