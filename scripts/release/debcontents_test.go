package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readTarGz returns the headers and bodies of a .tar.gz.
func readTarGz(t *testing.T, data []byte) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries a time (%v) or a name (%q)", zr.ModTime, zr.Name)
	}
	return readTar(t, zr)
}

func readTar(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var hs []*tar.Header
	bodies := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs, bodies
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
		bodies[h.Name], _ = io.ReadAll(tr)
	}
}

// readDeb returns the members of a .deb (an ar archive, deb(5)) by name.
func readDeb(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	magic := "!<arch>\n"
	if !bytes.HasPrefix(data, []byte(magic)) {
		t.Fatalf("not an ar archive")
	}
	members := map[string][]byte{}
	for rest := data[len(magic):]; len(rest) >= 60; {
		// ar's 60-byte header: name (16), then mtime, uid, gid, mode, and
		// the size (10, from byte 48), then "`\n"; bodies pad to even.
		name := strings.TrimRight(strings.TrimSpace(string(rest[:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(rest[48:58])))
		if err != nil || 60+size > len(rest) {
			t.Fatalf("ar member %q: bad size %q", name, rest[48:58])
		}
		members[name] = rest[60 : 60+size]
		rest = rest[60+size+size%2:]
	}
	return members
}

// debFiles are the entries of a .deb's member (control.tar.gz,
// data.tar.gz) by path, without the leading "./".
func debFiles(t *testing.T, member []byte) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(member))
	if err != nil {
		t.Fatal(err)
	}
	hs, bodies := readTar(t, zr)
	headers, files := map[string]*tar.Header{}, map[string][]byte{}
	for _, h := range hs {
		p := strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		headers[p], files[p] = h, bodies[h.Name]
	}
	return headers, files
}

// The .deb ships the watch's unit where packages put units
// (/lib/systemd/system, not a conffile: an admin overrides it in
// /etc/systemd/system), disabled: no enablement link in the package, and
// no maintainer script enables or starts it. Its description says how to
// enable it. Built from stand-in inputs: nothing is compiled.
func TestDebShipsTheWatchDisabled(t *testing.T) {
	packaged, hf := packagedFiles(t)
	o := options{Root: filepath.Join("..", ".."), Out: t.TempDir(), Version: "v0.9.0", Date: time.Unix(1764547200, 0).UTC()}
	in := debInputs{Dir: t.TempDir(), Binary: []byte("#!/bin/sh\n"), Config: packaged, Cron: []byte(hf.Cron), WatchUnit: []byte(hf.WatchUnit), License: []byte("licence\n")}
	if err := buildDeb(o, targets["amd64"], in); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(o.Out, "autodeploy_0.9.0_amd64.deb"))
	if err != nil {
		t.Fatal(err)
	}
	deb := readDeb(t, raw)
	headers, files := debFiles(t, deb["data.tar.gz"])
	_, control := debFiles(t, deb["control.tar.gz"])

	const unit = "lib/systemd/system/autodeploy-watch.service"
	h, ok := headers[unit]
	if !ok {
		t.Fatalf("no /%s in the package", unit)
	}
	if h.Mode&0o777 != 0o644 || h.Uname != "root" && h.Uid != 0 {
		t.Errorf("/%s: mode %o, owner %s (%d), want 0644 root", unit, h.Mode, h.Uname, h.Uid)
	}
	body := string(files[unit])
	for _, want := range []string{"\nExecStart=/usr/bin/autodeploy watch --config /etc/autodeploy/config.yaml\n", "\nUser=root\n", "\nWantedBy=multi-user.target\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("the unit has no %q:\n%s", want, body)
		}
	}
	if strings.Contains(string(control["conffiles"]), unit) {
		t.Errorf("the unit is a conffile:\n%s", control["conffiles"])
	}
	for p := range headers {
		if strings.HasPrefix(p, "etc/systemd/") {
			t.Errorf("/%s in the package: the watch would be enabled on install", p)
		}
	}
	for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
		var code strings.Builder // the script without its comments
		for _, l := range strings.Split(string(control[script]), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				code.WriteString(l + "\n")
			}
		}
		for _, enables := range []string{"systemctl enable", "systemctl start", "--now", "deb-systemd-helper enable", "deb-systemd-invoke start"} {
			if strings.Contains(code.String(), enables) {
				t.Errorf("%s runs %q: the watch must stay as the admin left it", script, enables)
			}
		}
	}
	if !strings.Contains(string(control["control"]), "systemctl enable --now autodeploy-watch") {
		t.Errorf("the package's description does not say how to enable the watch:\n%s", control["control"])
	}
}
