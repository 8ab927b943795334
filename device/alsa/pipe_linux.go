package alsa

import (
	"os"
	"syscall"
)

// fSetPipeSz is Linux's F_SETPIPE_SZ fcntl (not in package syscall).
const fSetPipeSz = 1031

// setPipeSize shrinks the pipe to one page: a 64 KiB default pipe holds 340 ms of
// 48 kHz mono audio, which would become latency (playback) or stale audio (capture).
// Failure is harmless, so it is ignored.
func setPipeSize(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSz, 4096)
	})
}
