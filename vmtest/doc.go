// Package vmtest boots Debian's kernel under qemu-system-x86_64 (software emulation, no
// KVM needed) with the vivid virtual camera and the snd-aloop loopback sound card, runs
// camhub, camagent and a probe user inside, and checks what the probe saw: the camera
// listed with its formats, frames captured from /dev/video0 and published, a tone that
// went probe → device speaker → loopback → device microphone → probe, and the picture
// coming back after the camera is unplugged mid-call (vivid's Disconnect control), then
// snapshots of vivid's picture and privacy mode closing the camera and the sound card
// (probe/privacy.go, checked in privacy_test.go).
//
// The test is behind the vmtest build tag: `make test-vm`. mkinitramfs.sh builds the
// initramfs (downloaded kernel packages are cached under .cache/vm); init.sh is the
// VM's /init; probe/ is the user inside the VM. Results come back on the serial console
// as lines starting with "VMTEST".
package vmtest
