//go:build !linux

package alsa

import "os"

// setPipeSize is a no-op where F_SETPIPE_SZ does not exist.
func setPipeSize(*os.File) {}
