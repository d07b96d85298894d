package doctor

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/autodeploy-dev/autodeploy/internal/config"
	"github.com/autodeploy-dev/autodeploy/internal/manifests"
)

// A crontab as Debian's cron reads it (crontab(5), cron(8)): a line is a
// comment, an environment setting ("name = value", tried first: so
// "TZ=UTC */2 * * * * ..." sets TZ and runs nothing), or a job: five
// schedule fields or an @ descriptor, the user in a system crontab
// (/etc/crontab, /etc/cron.d), then the command, cut at the first
// unescaped %. One line cron cannot parse, or without a user it knows,
// makes it ignore the whole system crontab ("ERROR (Syntax error, this
// crontab file will be ignored)"; seen in Debian's cron 3.0pl1 by the
// release test, scripts/release TestDebianCronRunsWhatCronWrites).

var (
	envLine  = regexp.MustCompile(`^([^\s=]+)\s*=\s*(.*)$`)
	runsWord = regexp.MustCompile(`\brun\b`)
)

// cronDefaultPath is the PATH Debian's cron gives a job the crontab sets
// none for (cron(8)).
const cronDefaultPath = "/usr/bin:/bin"

// cronTab checks the lines of one crontab that run `autodeploy run`
// (system: it has the user field) and says whether it found one.
func cronTab(r *Report, cfg *config.Config, h Host, src, content string, system bool) bool {
	env := map[string]string{}
	ignored := "" // why cron ignores the whole file
	type job struct {
		n             int
		spec, command string
		crlf          bool   // the line ends in \r, which cron keeps
		envName       string // set when cron reads the line as a variable
	}
	var jobs []job
	for i, l := range strings.Split(content, "\n") {
		crlf := strings.HasSuffix(l, "\r")
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		mentions := strings.Contains(l, "autodeploy") && runsWord.MatchString(l)
		if m := envLine.FindStringSubmatch(l); m != nil {
			env[m[1]] = strings.Trim(m[2], `"'`)
			if mentions {
				jobs = append(jobs, job{n: i + 1, envName: m[1]})
			}
			continue
		}
		f := strings.Fields(l)
		n := 5
		if strings.HasPrefix(l, "@") {
			n = 1
		}
		if system {
			n++
		}
		if len(f) <= n {
			if ignored == "" {
				ignored = fmt.Sprintf("line %d is not schedule, user and command", i+1)
			}
			continue
		}
		spec := strings.Join(f[:n-boolInt(system)], " ")
		if err := manifests.CronSpec(spec); err != nil && ignored == "" {
			ignored = fmt.Sprintf("line %d: %v", i+1, err)
		}
		if system && ignored == "" {
			if _, err := user.Lookup(f[n-1]); err != nil {
				if strings.Contains(f[n-1], "/") || strings.Contains(f[n-1], "autodeploy") {
					ignored = fmt.Sprintf("line %d has no user field (cron reads %q as the user)", i+1, f[n-1])
				} else {
					ignored = fmt.Sprintf("line %d runs as %q, a user this host does not have", i+1, f[n-1])
				}
			}
		}
		if mentions {
			jobs = append(jobs, job{n: i + 1, spec: spec, command: restAfter(l, n), crlf: crlf})
		}
	}
	for _, j := range jobs {
		where := fmt.Sprintf("%s:%d", src, j.n)
		switch {
		case j.envName != "":
			r.add("schedule", Fail, fmt.Sprintf("%s never runs: cron reads it as the variable %s (a time zone per line is unknown to Debian's cron)", where, j.envName),
				"drop the prefix and write the times in the host's time zone; autodeploy manifests cron writes the line")
		case system && ignored != "":
			r.add("schedule", Fail, fmt.Sprintf("%s never runs: Debian's cron ignores the whole file, %s", where, ignored),
				"fix that line (in /etc/crontab and /etc/cron.d: schedule, user, command), or write the file anew: autodeploy manifests cron > /etc/cron.d/autodeploy")
		case j.crlf:
			r.add("schedule", Fail, fmt.Sprintf("%s does not run this config: it ends in a carriage return (a DOS line end), which cron keeps in the command, so its last word is %q", where, lastWord(j.command)+"\r"),
				"convert the file to Unix line ends: sed -i 's/\\r$//' "+src)
		default:
			problems, unsure := cronCommand(cfg, h, env, j.command)
			if len(problems) > 0 {
				r.add("schedule", Fail, fmt.Sprintf("%s (at %q) does not run this config: %s", where, j.spec, strings.Join(problems, "; ")),
					"make the line run an installed autodeploy with run --config "+shownPath(cfg.Path)+" and no --dry-run (autodeploy manifests cron writes it), or run doctor with the --config the line uses")
			} else if len(unsure) > 0 {
				r.add("schedule", Warn, fmt.Sprintf("%s (at %q): cannot tell whether this line runs this config: %s", where, j.spec, strings.Join(unsure, "; ")),
					"run autodeploy directly in the line, or behind nice, ionice, timeout, env, flock or sh -c (autodeploy manifests cron writes it)")
			} else if j.spec == cfg.Schedule {
				r.add("schedule", OK, fmt.Sprintf("%s runs autodeploy at %q, as configured", where, j.spec), "")
			} else {
				r.add("schedule", Warn, fmt.Sprintf("%s runs autodeploy at %q but the config says %q (status shows the wrong next run)", where, j.spec, cfg.Schedule), "make schedule in the config match the crontab")
			}
		}
	}
	return len(jobs) > 0
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// lastWord is the last word of s.
func lastWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// restAfter is l after its first n fields.
func restAfter(l string, n int) string {
	for i := 0; i < n; i++ {
		l = strings.TrimLeft(l, " \t")
		l = strings.TrimLeft(l[strings.IndexAny(l+" ", " \t"):], " \t")
	}
	return l
}

// cronCommand says what keeps command, a cron job's, from running cfg: a
// missing binary (behind a [ -x ] guard the line silently does nothing),
// --dry-run, or another config (--config, else AUTODEPLOY_CONFIG before
// the command or in the file, else the default); and, in unsure, why it
// cannot tell: a command it cannot read as autodeploy's run, directly or
// behind the common wrappers (unwrap), is never "as configured".
func cronCommand(cfg *config.Config, h Host, env map[string]string, command string) (problems, unsure []string) {
	found := false
	var check func(text string, depth int)
	check = func(text string, depth int) {
		for _, seg := range commandSegments(text) {
			vars := map[string]string{}
			for k, v := range env {
				vars[k] = v
			}
			cmd, inner, why, wrappers := unwrap(seg, vars)
			path := vars["PATH"]
			if path == "" {
				path = cronDefaultPath
			}
			for _, w := range wrappers {
				// A wrapper that is not there fails the whole command
				// (sh: 1: ionice: not found) before autodeploy starts.
				if !executable(w, path) {
					problems = append(problems, fmt.Sprintf("%s is not installed or not executable (cron's PATH is %s), so the line fails before autodeploy starts", w, path))
				}
			}
			switch {
			case why != "":
				if mentionsRun(seg) {
					unsure = append(unsure, why)
				}
			case inner != "" && depth < 3:
				check(inner, depth+1)
			case len(cmd) >= 4 && (cmd[0] == "[" || cmd[0] == "test") && cmd[1] == "-x":
				if !executable(cmd[2], path) {
					problems = append(problems, fmt.Sprintf("%s does not exist or is not executable, so its [ -x ] guard makes the line do nothing", cmd[2]))
				}
			case len(cmd) > 0 && filepath.Base(cmd[0]) == "autodeploy" && slices.Contains(cmd, "run"):
				found = true
				problems = append(problems, autodeployRun(cfg, h, vars, path, cmd, len(problems) == 0)...)
			case mentionsRun(cmd):
				unsure = append(unsure, fmt.Sprintf("%q is not autodeploy itself nor a wrapper doctor knows (nice, ionice, timeout, env, flock, sh -c, VAR=value)", strings.Join(cmd, " ")))
			}
		}
	}
	check(cronCommandText(command), 0)
	if !found && len(problems) == 0 && len(unsure) == 0 {
		unsure = append(unsure, "no command in it reads as autodeploy run")
	}
	return problems, unsure
}

// mentionsRun says whether words name autodeploy and run.
func mentionsRun(words []string) bool {
	a := slices.ContainsFunc(words, func(w string) bool { return strings.Contains(w, "autodeploy") })
	return a && slices.ContainsFunc(words, func(w string) bool { return runsWord.MatchString(w) })
}

// autodeployRun judges an autodeploy command line, cmd, with vars its
// environment.
func autodeployRun(cfg *config.Config, h Host, vars map[string]string, path string, cmd []string, first bool) []string {
	var problems []string
	if !executable(cmd[0], path) && first {
		problems = append(problems, fmt.Sprintf("%s does not exist or is not executable (cron's PATH is %s)", cmd[0], path))
	}
	conf := ""
	for i := 1; i < len(cmd); i++ {
		switch a := cmd[i]; {
		case a == "--dry-run":
			problems = append(problems, "it runs with --dry-run, which only plans and deploys nothing")
		case strings.HasPrefix(a, "--dry-run="):
			// pflag reads a bool's value with strconv.ParseBool.
			switch v, err := strconv.ParseBool(strings.TrimPrefix(a, "--dry-run=")); {
			case err != nil:
				problems = append(problems, fmt.Sprintf("autodeploy refuses %s (not a bool), so the line never runs", a))
			case v:
				problems = append(problems, fmt.Sprintf("it runs with %s, which only plans and deploys nothing", a))
			}
		case a == "--config" && i+1 < len(cmd):
			conf = cmd[i+1]
			i++
		case strings.HasPrefix(a, "--config="):
			conf = strings.TrimPrefix(a, "--config=")
		}
	}
	how := "--config " + conf
	if conf == "" {
		conf, how = vars["AUTODEPLOY_CONFIG"], "AUTODEPLOY_CONFIG"
	}
	if conf == "" {
		conf, how = h.DefaultConfig, "the default, without --config"
	}
	if conf != "" && !samePath(conf, cfg.Path) {
		problems = append(problems, fmt.Sprintf("it reads %s (%s), not %s", conf, how, shownPath(cfg.Path)))
	}
	return problems
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// unwrap looks through the wrappers people put before a command: VAR=value
// prefixes and env's (set in vars), nice, ionice, timeout, flock, nohup,
// exec, and sh -c (its string is returned as inner, to be read as a
// command). why says what it cannot read; cmd is the command run;
// wrappers are the programs it went through (exec, a shell builtin, is
// not one).
func unwrap(seg []string, vars map[string]string) (cmd []string, inner, why string, wrappers []string) {
	// opts skips a wrapper's options: withArg are those taking a value
	// (as the next word unless joined: -n10, --adjustment=10).
	opts := func(w []string, withArg ...string) ([]string, bool) {
		for len(w) > 0 && strings.HasPrefix(w[0], "-") && w[0] != "-" {
			if w[0] == "--" {
				return w[1:], true
			}
			name, _, joined := strings.Cut(w[0], "=")
			if slices.Contains(withArg, name) && !joined {
				if len(w) < 2 {
					return nil, false
				}
				w = w[1:]
			}
			w = w[1:] // a flag, or one with its value joined: -n10, --signal=TERM, nice's -10
		}
		return w, true
	}
	w := seg
	for depth := 0; len(w) > 0 && depth < 10; depth++ {
		if assignment.MatchString(w[0]) {
			k, v, _ := strings.Cut(w[0], "=")
			vars[k] = v
			w = w[1:]
			continue
		}
		ok := true
		if b := filepath.Base(w[0]); b != "exec" && b != "[" && b != "test" && isWrapper[b] {
			wrappers = append(wrappers, w[0])
		}
		switch filepath.Base(w[0]) {
		case "env":
			w = w[1:]
			for len(w) > 0 && strings.HasPrefix(w[0], "-") {
				if w[0] == "-i" || w[0] == "--ignore-environment" || w[0] == "-" {
					for k := range vars {
						delete(vars, k)
					}
				} else if w[0] != "--" {
					return nil, "", fmt.Sprintf("env option %s", w[0]), wrappers
				}
				w = w[1:]
			}
		case "nice":
			w, ok = opts(w[1:], "-n", "--adjustment")
		case "ionice":
			w, ok = opts(w[1:], "-c", "--class", "-n", "--classdata")
		case "nohup", "exec":
			w, ok = opts(w[1:])
		case "timeout":
			if w, ok = opts(w[1:], "-s", "--signal", "-k", "--kill-after"); ok && len(w) > 0 {
				w = w[1:] // the duration
			}
		case "flock":
			for _, a := range w[1:] {
				if a == "-c" || a == "--command" {
					return nil, "", "flock's -c before its lock file", wrappers
				}
				if !strings.HasPrefix(a, "-") {
					break
				}
			}
			w, ok = opts(w[1:], "-w", "--wait", "--timeout", "-E", "--conflict-exit-code")
			if ok && len(w) > 0 {
				w = w[1:] // the lock file
			}
			if ok && len(w) == 2 && (w[0] == "-c" || w[0] == "--command") {
				return nil, w[1], "", wrappers
			}
		case "sh", "bash", "dash":
			if len(w) >= 3 && w[1] == "-c" {
				return nil, w[2], "", wrappers
			}
			return nil, "", fmt.Sprintf("%q runs no -c string", strings.Join(w, " ")), wrappers
		default:
			return w, "", "", wrappers
		}
		if !ok {
			return nil, "", fmt.Sprintf("%q: a wrapper without its command", strings.Join(seg, " ")), wrappers
		}
	}
	return w, "", "", wrappers
}

// isWrapper are the programs unwrap looks through.
var isWrapper = map[string]bool{"env": true, "nice": true, "ionice": true, "nohup": true, "timeout": true, "flock": true, "sh": true, "bash": true, "dash": true}

// cronCommandText is what cron hands the shell of command: up to the
// first unescaped %, with \% as % (crontab(5)).
func cronCommandText(command string) string {
	var b strings.Builder
	for i := 0; i < len(command); i++ {
		switch {
		case command[i] == '\\' && i+1 < len(command) && command[i+1] == '%':
			b.WriteByte('%')
			i++
		case command[i] == '%':
			return b.String()
		default:
			b.WriteByte(command[i])
		}
	}
	return b.String()
}

// commandSegments splits a shell command into simple commands at &&, ||,
// ;, | and &, each a list of words unquoted as sh does; redirections are
// dropped. It reads the lines autodeploy and people write, not all of sh.
func commandSegments(s string) [][]string {
	var segs [][]string
	var seg []string
	var w strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			word := w.String()
			if !regexp.MustCompile(`^[0-9]*[<>]`).MatchString(word) {
				seg = append(seg, word)
			}
		}
		w.Reset()
		inWord = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '\'':
			inWord = true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = len(s) - i - 1
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord = true
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
		case c == '\\' && i+1 < len(s):
			inWord = true
			i++
			w.WriteByte(s[i])
		case c == ';' || c == '|' || c == '&':
			if c == '&' && inWord && strings.HasSuffix(w.String(), ">") {
				w.WriteByte(c) // 2>&1
				continue
			}
			flush()
			if i+1 < len(s) && s[i+1] == c {
				i++
			}
			segs = append(segs, seg)
			seg = nil
		default:
			inWord = true
			w.WriteByte(c)
		}
	}
	flush()
	return append(segs, seg)
}

// executable says whether name (a path, or a name looked up in path) is an
// executable file.
func executable(name, path string) bool {
	if !strings.Contains(name, "/") {
		for _, d := range filepath.SplitList(path) {
			if executable(filepath.Join(d, name), "") {
				return true
			}
		}
		return false
	}
	st, err := os.Stat(name)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// samePath says whether a and b name the same file: the same file on
// disk, or the same absolute path.
func samePath(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	return shownPath(a) == shownPath(b)
}

// shownPath is p made absolute, as a cron line must name it.
func shownPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
