// Package packaging holds the .deb builder (mkdeb.sh, run by make dist) and its maintainer
// scripts (debian/); this test builds and installs the packages.
package packaging

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// debs returns the packages make dist built (in $DIST), by Debian architecture, and the
// directory of the amd64 binaries. Without $DIST (go test ./...) the tests are skipped:
// make test-dist runs them, after make dist.
func debs(t *testing.T) (map[string]string, string) {
	if dist := os.Getenv("DIST"); dist != "" {
		out := map[string]string{}
		for _, arch := range []string{"amd64", "arm64", "armhf"} {
			m, _ := filepath.Glob(filepath.Join(dist, "camagent_*_"+arch+".deb"))
			if len(m) != 1 {
				t.Fatalf("%s: want one %s package, found %v", dist, arch, m)
			}
			out[arch] = m[0]
		}
		return out, filepath.Join(dist, "linux-amd64")
	}
	t.Skip("needs the packages: make test-dist (DIST=dir of make dist)")
	return nil, ""
}

var machine = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "armhf": elf.EM_ARM}

// Metadata, contents and binaries of every package.
func TestDebMetadata(t *testing.T) {
	pkgs, _ := debs(t)
	for arch, deb := range pkgs {
		st, _ := os.Stat(deb)
		t.Logf("%s: %s, %.1f MB", arch, filepath.Base(deb), float64(st.Size())/1e6)
		info := run(t, "dpkg-deb", "--info", deb)
		for _, re := range []string{`(?m)^ Package: camagent$`, `(?m)^ Version: [0-9][A-Za-z0-9.+~]*$`,
			`(?m)^ Architecture: ` + arch + `$`, `(?m)^ Maintainer: .+<.+@.+>$`, `(?m)^ Installed-Size: [0-9]+$`,
			`(?m)^ Depends: passwd$`, `(?m)^ Description: .+\n .+`, `(?m)^ Section: video$`,
			`(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+postinst`, `(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*\s+postrm`,
			`(?m)^\s+\d+ bytes,\s+\d+ lines\s+conffiles`} {
			if !regexp.MustCompile(re).MatchString(info) {
				t.Errorf("%s: dpkg-deb --info lacks %s:\n%s", arch, re, info)
			}
		}
		contents := run(t, "dpkg-deb", "--contents", deb)
		for _, f := range []string{`^drwxr-xr-x root/root .* \./$`, `^-rwxr-xr-x root/root .* \./usr/bin/camagent$`,
			`^-rwxr-xr-x root/root .* \./usr/bin/camhub$`, `^-rw-r--r-- root/root .* \./lib/systemd/system/camagent\.service$`,
			`^-rw-r--r-- root/root .* \./lib/systemd/system/camhub\.service$`, `^-rw-r--r-- root/root .* \./etc/camagent/camagent\.yaml$`,
			`^-rw-r--r-- root/root .* \./etc/camagent/camhub\.yaml$`, ` \./usr/share/doc/camagent/README\.md$`} {
			if !regexp.MustCompile(`(?m)` + f).MatchString(contents) {
				t.Errorf("%s: contents lack %s:\n%s", arch, f, contents)
			}
		}
		if conf := run(t, "dpkg-deb", "--field", deb, "Package"); strings.TrimSpace(conf) != "camagent" {
			t.Errorf("field Package: %q", conf)
		}
		x := t.TempDir()
		run(t, "dpkg-deb", "-x", deb, x)
		for _, p := range []string{"camagent", "camhub"} {
			path := filepath.Join(x, "usr/bin", p)
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if f.Machine != machine[arch] || f.Type != elf.ET_EXEC {
				t.Errorf("%s %s: machine %s type %s", arch, p, f.Machine, f.Type)
			}
			if _, err := f.DynamicSymbols(); err == nil {
				t.Errorf("%s %s: dynamically linked", arch, p)
			}
			f.Close()
			bi, err := buildinfo.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range bi.Settings {
				settings[s.Key] = s.Value
			}
			if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
				t.Errorf("%s %s: build settings %v", arch, p, settings)
			}
			if arch == "armhf" && settings["GOARM"] != "6" {
				t.Errorf("armhf %s: GOARM=%s, want 6 (every Raspberry Pi)", p, settings["GOARM"])
			}
		}
	}
}

// The amd64 package installs into a throw-away root: files, users, groups, config
// permissions; an upgrade keeps an edited config; a purge removes files and state.
func TestDebInstall(t *testing.T) {
	pkgs, bin := debs(t)
	root := t.TempDir()
	for _, d := range []string{"etc", "var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	files := map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/bash\n",
		"etc/group":           "root:x:0:\naudio:x:29:\nvideo:x:44:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\naudio:*::\nvideo:*::\n",
		"var/lib/dpkg/status": "",
	}
	for name, s := range files {
		os.WriteFile(filepath.Join(root, name), []byte(s), 0o644)
	}
	dpkg := func(args ...string) string {
		t.Helper()
		return run(t, "dpkg", append([]string{"--root=" + root, "--force-not-root", "--force-script-chrootless",
			"--force-depends", "--log=/dev/null"}, args...)...)
	}
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	dpkg("--install", pkgs["amd64"])

	for _, f := range []string{"usr/bin/camagent", "usr/bin/camhub"} {
		st, err := os.Stat(filepath.Join(root, f))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", f, st, err)
		}
	}
	for _, f := range []string{"camagent.service", "camhub.service"} {
		got, _ := os.ReadFile(filepath.Join(root, "lib/systemd/system", f))
		want, _ := os.ReadFile(filepath.Join("../systemd", f))
		if len(got) == 0 || string(got) != string(want) {
			t.Errorf("unit %s differs from systemd/%s", f, f)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	for _, re := range []string{`(?m)^camagent:x:[1-9][0-9]{0,2}:\d+:camagent device agent:/var/lib/camagent:/usr/sbin/nologin$`,
		`(?m)^camhub:x:[1-9][0-9]{0,2}:\d+:camagent hub:/var/lib/camhub:/usr/sbin/nologin$`} {
		if !regexp.MustCompile(re).Match(passwd) {
			t.Errorf("passwd lacks %s:\n%s", re, passwd)
		}
	}
	for _, re := range []string{`(?m)^video:x:44:camagent$`, `(?m)^audio:x:29:camagent$`, `(?m)^camagent:x:\d+:$`, `(?m)^camhub:x:\d+:$`} {
		if !regexp.MustCompile(re).Match(group) {
			t.Errorf("group lacks %s:\n%s", re, group)
		}
	}
	if after, _ := os.ReadFile("/etc/passwd"); string(after) != string(hostPasswd) {
		t.Fatal("the maintainer scripts changed the host's /etc/passwd")
	}
	conf := filepath.Join(root, "etc/camagent/camagent.yaml")
	st, err := os.Stat(conf)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("camagent.yaml: %v %v", st, err)
	}
	status := run(t, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "--showformat=${Status} ${Conffiles}", "--show", "camagent")
	if !strings.HasPrefix(status, "install ok installed") || !strings.Contains(status, "/etc/camagent/camagent.yaml") || !strings.Contains(status, "/etc/camagent/camhub.yaml") {
		t.Errorf("dpkg-query: %s", status)
	}
	// The installed agent accepts the installed configuration.
	out, _ := exec.Command(filepath.Join(root, "usr/bin/camagent"), "check", "--config", conf,
		"--mqtt", "tcp://127.0.0.1:9", "--hub", "http://127.0.0.1:9", "--state-dir", t.TempDir()).CombinedOutput()
	if !strings.Contains(string(out), "ok   configuration") {
		t.Errorf("installed config: %s", out)
	}

	// An edited configuration survives an upgrade.
	edited := "# edited by the administrator\nfps: 25\n"
	os.WriteFile(conf, []byte(edited), 0o640)
	newer := strings.TrimSpace(run(t, "./mkdeb.sh", "amd64", bin, "v99.0.0", t.TempDir()))
	dpkg("--install", newer)
	if b, _ := os.ReadFile(conf); string(b) != edited {
		t.Errorf("upgrade replaced the edited configuration:\n%s", b)
	}
	if v := run(t, "dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "--showformat=${Version}", "--show", "camagent"); v != "99.0.0" {
		t.Errorf("version after upgrade %q", v)
	}

	// Purge: binaries, configuration and state go.
	os.MkdirAll(filepath.Join(root, "var/lib/camagent"), 0o750)
	os.WriteFile(filepath.Join(root, "var/lib/camagent/speaker.wav"), nil, 0o600)
	dpkg("--purge", "camagent")
	for _, f := range []string{"usr/bin/camagent", "etc/camagent/camagent.yaml", "etc/camagent", "var/lib/camagent", "lib/systemd/system/camagent.service"} {
		if _, err := os.Stat(filepath.Join(root, f)); err == nil {
			t.Errorf("%s left after purge", f)
		}
	}
}
