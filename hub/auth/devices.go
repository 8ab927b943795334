package auth

import (
	"fmt"
	"hash/fnv"
	"sort"
	"time"
)

// Device is an enrolled device.
type Device struct {
	ID string `json:"id"`
	// UID is the only uid the device may obtain tokens for.
	UID        uint32    `json:"uid"`
	KeyID      string    `json:"keyId"`
	SecretHash string    `json:"secretHash"`
	Created    time.Time `json:"created"`
}

// DefaultUID is the uid of a device enrolled without one: the same stable hash of its id the
// agent uses when it has no uid configured.
func DefaultUID(id string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(id))
	if uid := h.Sum32() & 0x7fffffff; uid != 0 {
		return uid
	}
	return 1
}

// AddDevice enrols a device and returns its credential (shown once: only its hash is kept).
// uid 0 means DefaultUID(id).
func (s *Store) AddDevice(id string, uid uint32) (credential string, dev Device, err error) {
	if !ValidName(id) {
		return "", Device{}, fmt.Errorf("auth: %q is not a valid device id (1-64 characters, no spaces, / + # *)", id)
	}
	if uid == 0 {
		uid = DefaultUID(id)
	}
	text, keyID, hash := newCredential(KindDevice)
	err = s.update(func(d *data) error {
		if d.Devices[id] != nil {
			return fmt.Errorf("auth: device %q is enrolled already (delete it first to make a new credential)", id)
		}
		dev = Device{ID: id, UID: uid, KeyID: keyID, SecretHash: hash, Created: time.Now().UTC()}
		d.Devices[id] = &dev
		return nil
	})
	if err != nil {
		return "", Device{}, err
	}
	return text, dev, nil
}

// DeleteDevice revokes a device's credential.
func (s *Store) DeleteDevice(id string) error {
	return s.update(func(d *data) error {
		if d.Devices[id] == nil {
			return fmt.Errorf("auth: no device %q", id)
		}
		delete(d.Devices, id)
		return nil
	})
}

// Devices lists the enrolled devices (without hashes), sorted by id.
func (s *Store) Devices() []Device {
	var out []Device
	s.view(func(d *data) {
		for _, dev := range d.Devices {
			c := *dev
			c.SecretHash = ""
			out = append(out, c)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Device returns an enrolled device.
func (s *Store) Device(id string) (Device, bool) {
	var dev Device
	ok := false
	s.view(func(d *data) {
		if p := d.Devices[id]; p != nil {
			dev, ok = *p, true
		}
	})
	return dev, ok
}
