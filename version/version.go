// Package version reports the build's version, set by the Makefile with
// -ldflags "-X github.com/camagent/camagent/version.Version=…".
package version

import (
	"fmt"
	"runtime"
)

// Version is the release or git description of the build.
var Version = "dev"

// String is the version with the Go runtime and platform.
func String() string {
	return fmt.Sprintf("%s (%s, %s/%s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
