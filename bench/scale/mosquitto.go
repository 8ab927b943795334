package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/camagent/camagent/control"
	"github.com/camagent/camagent/hub/mosquitto"
)

// mosquittoBin is Debian's broker (make test-deps installs it).
const mosquittoBin = "/usr/sbin/mosquitto"

// mosquittoBroker runs Debian's mosquitto on 127.0.0.1 with the trust model's files, as
// docs/mosquitto.md has an operator write them: a password file with one login per device
// (its id) and the hub's, and camhub's ACL (each device reads only its commands and writes
// only its own topics).
func mosquittoBroker(ctx context.Context, dir string, ids []string) (fleet, func(), error) {
	if _, err := os.Stat(mosquittoBin); err != nil {
		return fleet{}, nil, fmt.Errorf("%s is needed for this run (%v): run `make test-deps`", mosquittoBin, err)
	}
	var pw strings.Builder
	for _, u := range append([]string{"camhub"}, ids...) {
		h, err := mosquitto.HashPassword(pass(u))
		if err != nil {
			return fleet{}, nil, fmt.Errorf("hash %s's password: %w", u, err)
		}
		fmt.Fprintf(&pw, "%s:%s\n", u, h)
	}
	passwd, aclFile := filepath.Join(dir, "camagent.passwd"), filepath.Join(dir, "camagent.acl")
	if err := os.WriteFile(passwd, []byte(pw.String()), 0o600); err != nil {
		return fleet{}, nil, err
	}
	acl, err := mosquitto.ACL(mosquitto.ACLOptions{Prefix: control.DefaultPrefix, HubUser: "camhub"})
	if err != nil {
		return fleet{}, nil, err
	}
	if err := os.WriteFile(aclFile, []byte(acl), 0o600); err != nil {
		return fleet{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return fleet{}, nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	// user root: as root, mosquitto would otherwise become the mosquitto user, who cannot read
	// the files in this run's private directory.
	settings := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\n"+
		"persistence false\nlog_dest file %s\n", port, passwd, aclFile, filepath.Join(dir, "mosquitto.log"))
	if os.Geteuid() == 0 {
		settings = "user root\n" + settings
	}
	if err := os.WriteFile(conf, []byte(settings), 0o600); err != nil {
		return fleet{}, nil, err
	}
	cmd := exec.CommandContext(ctx, mosquittoBin, "-c", conf)
	if err := cmd.Start(); err != nil {
		return fleet{}, nil, fmt.Errorf("start mosquitto: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cmd.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitListen(addr, 10*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
		return fleet{}, wg.Wait, fmt.Errorf("mosquitto: %w\n%s", err, log)
	}
	u := "tcp://" + addr
	pid := cmd.Process.Pid
	return fleet{
		urls:     func(int) string { return u },
		hubURL:   u,
		user:     func(id string) (string, string) { return id, pass(id) },
		hubLogin: [2]string{"camhub", pass("camhub")},
		rss:      func() float64 { return rssMB([]int{pid}) },
		rssName:  "mosquitto RSS",
	}, wg.Wait, nil
}
