package cli

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/deploy"
	"github.com/autodeploy-dev/autodeploy/internal/runlog"
)

// Cron mails whatever a job writes, every run: a problem that lasts (a
// missing ImagePolicy, a failed image running, a deploy Flux reverted)
// would mail 720 times a day. The cron line follows the notifications'
// rule instead: a standing problem is named when it appears or changes
// (deploy.ServiceResult.NewProblem, from the Deployment's
// autodeploy.dev/alerted annotation), while the exit code stays 7 on every
// run. What happened in this run (a failed deploy, a rollout left
// unverified, a service not run) is always named.

// alertedSuffix names the record of the problems of services whose
// Deployment does not exist, next to the log file (as its .lock is):
// there is no Deployment to keep the annotation on.
const alertedSuffix = ".alerted"

// alertedRecord is where the problems of missing Deployments are kept for
// log file logFile; "" when the log is stdout ("-": a pod's log, which
// nobody mails).
func alertedRecord(logFile string) string {
	if logFile == "" || logFile == "-" {
		return ""
	}
	return logFile + alertedSuffix
}

// standing says whether s is a problem that lasts from run to run, as
// opposed to what went wrong in this run.
func standing(s deploy.ServiceResult) bool {
	return (s.Outcome == deploy.OutcomeSkipped || s.Outcome == deploy.OutcomePlanned) && s.Problem && s.Alert != ""
}

// heardBefore returns the services whose standing problem people have
// already heard of, and records this run's problems of missing
// Deployments in the file at path (a map of service to alert key; "" keeps
// no record, so that those are named every run). services are the
// configured names: a service removed from the config leaves no record
// behind. The caller holds the run's lock. A record that cannot be read
// or written makes the line name the problem again, never miss it.
func heardBefore(path string, res *deploy.Result, services []string, log *slog.Logger) map[string]bool {
	if log == nil {
		log = runlog.Discard()
	}
	old := map[string]string{}
	if path != "" {
		// Not os.ReadFile: a named pipe there blocked the run for ever,
		// holding its lock (issue 18, fourth pass).
		b, err := config.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &old)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("could not read which problems cron was told of: naming them again", "file", path, "error", err)
			old = map[string]string{}
		}
	}
	heard := map[string]bool{}
	rec := maps.Clone(old)
	maps.DeleteFunc(rec, func(svc, _ string) bool { return !slices.Contains(services, svc) })
	for _, s := range res.Services {
		missing := standing(s) && strings.HasPrefix(s.Alert, deploy.AlertDeploymentMissing)
		switch {
		case missing && path != "":
			heard[s.Service] = old[s.Service] == s.Alert
			rec[s.Service] = s.Alert
		case missing:
		default:
			heard[s.Service] = standing(s) && !s.NewProblem
			delete(rec, s.Service)
		}
	}
	if path == "" || maps.Equal(old, rec) {
		return heard
	}
	b, _ := json.Marshal(rec)
	if err := writeFileAtomic(path, b); err != nil {
		log.Warn("could not record which problems cron was told of: the next run names them again", "file", path, "error", err)
	}
	return heard
}

// writeFileAtomic replaces path with b through a rename, so that a crash
// never leaves half a record. The temporary file is a new one (O_EXCL, a
// random name): a fixed path.tmp that was a named pipe blocked the write
// for ever (open to write waits for a reader), and a symlink there would
// have been written through.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o640)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// configuredNames are the names of the config's services.
func configuredNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Services))
	for i, s := range cfg.Services {
		names[i] = s.Name
	}
	return names
}
