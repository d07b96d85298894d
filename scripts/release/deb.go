package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/autodeploy-dev/autodeploy/internal/version"
)

// debInputs is what goes into a .deb besides its binary's target.
type debInputs struct {
	Dir    string // scratch directory: nfpm reads files from disk
	Binary []byte
	Config []byte // /etc/autodeploy/config.yaml
	Cron   []byte // /etc/cron.d/autodeploy
	// WatchUnit is /lib/systemd/system/autodeploy-watch.service, shipped
	// disabled: cron stays what runs autodeploy until an admin enables it.
	WatchUnit []byte
	License   []byte
	Docs      []doc
}

var notInDebVersion = regexp.MustCompile(`[^A-Za-z0-9.+~]+`)

// debVersion is o.Version as dpkg orders versions: v1.2.3 is 1.2.3, v1.2.3-rc.1 is
// 1.2.3~rc.1 (before 1.2.3). A build that is not a release sorts below every
// release and by commit time: 0.0.0~git20261126002437.95a2a9f.
func debVersion(o options) string {
	v := o.Version
	if version.IsRelease(v) {
		return strings.Replace(strings.TrimPrefix(v, "v"), "-", "~", 1)
	}
	return "0.0.0~git" + o.Date.Format("20060102150405") + "." + strings.Trim(notInDebVersion.ReplaceAllString(v, "."), ".")
}

// watchUnitPath is where the .deb puts the watch's unit, as Debian's
// packages put theirs (dh_installsystemd; Debian 13 moves them to
// /usr/lib, which /lib is a symlink to there).
const watchUnitPath = "/lib/systemd/system/autodeploy-watch.service"

// buildDeb writes autodeploy_<version>_<arch>.deb into o.Out: the binary,
// the kubectl plugin's symlink, the packaged config and cron line as
// conffiles, the watch's unit (disabled), completions, gzipped man pages,
// and the maintainer scripts of packaging/deb (log directory, the watch's
// restart on upgrade and stop on removal; purge).
func buildDeb(o options, t target, in debInputs) error {
	// Staged at their destination under in.Dir/deb: two files of one name
	// (the binary and its bash completion) must not meet.
	write := func(dst string, body []byte) (string, error) {
		p := filepath.Join(in.Dir, "deb", filepath.FromSlash(dst))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		return p, os.WriteFile(p, body, 0o644)
	}
	var contents files.Contents
	add := func(dst string, body []byte, typ string, mode os.FileMode) error {
		src, err := write(dst, body)
		contents = append(contents, &files.Content{Source: src, Destination: dst, Type: typ, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}})
		return err
	}
	errs := []error{
		add(binaryPath, in.Binary, files.TypeFile, 0o755),
		add(configPath, in.Config, files.TypeConfig, 0o644),
		add("/etc/cron.d/autodeploy", in.Cron, files.TypeConfig, 0o644),
		// Not a conffile: units of packages live in /lib, and an admin
		// overrides them in /etc/systemd/system (systemctl edit).
		add(watchUnitPath, in.WatchUnit, files.TypeFile, 0o644),
		add("/usr/share/doc/autodeploy/copyright", in.License, files.TypeFile, 0o644),
	}
	for _, d := range in.Docs {
		body := d.Body
		if strings.HasSuffix(d.Deb, ".gz") {
			gz, err := gzipBytes(body)
			if err != nil {
				return err
			}
			body = gz
		}
		errs = append(errs, add(d.Deb, body, files.TypeFile, 0o644))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	contents = append(contents, &files.Content{Source: "autodeploy", Destination: "/usr/bin/kubectl-autodeploy", Type: files.TypeSymlink,
		FileInfo: &files.ContentFileInfo{Mode: 0o777, Owner: "root", Group: "root"}})

	info := &nfpm.Info{
		Name:          "autodeploy",
		Arch:          t.Deb,
		Platform:      "linux",
		Version:       debVersion(o),
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    "The autodeploy developers",
		Homepage:      "https://github.com/autodeploy-dev/autodeploy",
		License:       "Apache-2.0",
		Description: `keeps Kubernetes Deployments on the newest image Flux detected
 autodeploy rolls out the image Flux's image automation selected for each
 configured Deployment, verifies it and rolls back on failure. It runs from
 /etc/cron.d/autodeploy; the installed /etc/autodeploy/config.yaml lists no
 service, so nothing happens until one is configured.
 .
 To deploy within seconds of Flux selecting an image, enable the watch,
 shipped disabled: systemctl enable --now autodeploy-watch. The cron line
 may stay: its run skips while the watch acts, or makes the same pass.`,
		MTime: o.Date,
		Overridables: nfpm.Overridables{
			Recommends: []string{"cron | cron-daemon"},
			Suggests:   []string{"bash-completion"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(o.Root, "packaging", "deb", "postinst"),
				PreRemove:   filepath.Join(o.Root, "packaging", "deb", "prerm"),
				PostRemove:  filepath.Join(o.Root, "packaging", "deb", "postrm"),
			},
			Deb: nfpm.Deb{Compression: "gzip"},
		},
	}
	if err := nfpm.PrepareForPackager(nfpm.WithDefaults(info), "deb"); err != nil {
		return fmt.Errorf("deb for %s: %w", t.Deb, err)
	}
	name := fmt.Sprintf("autodeploy_%s_%s.deb", info.Version, t.Deb)
	f, err := os.Create(filepath.Join(o.Out, name))
	if err != nil {
		return err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("deb for %s: %w", t.Deb, err)
	}
	return f.Close()
}
