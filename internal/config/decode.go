package config

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The raw structs mirror the file. Their yaml tags are the single source of
// truth for the valid keys: the decoder and the "did you mean" suggestions
// read them by reflection. Scalars are opt values so that an explicit false
// or zero can be told apart from an absent key. A field named Line with tag
// "-" receives the line of the mapping it was decoded from.

type rawConfig struct {
	APIVersion opt[string]        `yaml:"apiVersion"`
	Kind       opt[string]        `yaml:"kind"`
	Schedule   opt[string]        `yaml:"schedule"`
	LockFile   opt[string]        `yaml:"lockFile"`
	Lock       rawLock            `yaml:"lock"`
	RunTimeout opt[time.Duration] `yaml:"runTimeout"`
	Log        rawLog             `yaml:"log"`
	Flux       rawFlux            `yaml:"flux"`
	Defaults   rawDefaults        `yaml:"defaults"`
	Services   []rawService       `yaml:"services"`
	Notify     []rawNotify        `yaml:"notify"`
	Metrics    rawMetrics         `yaml:"metrics"`
	Line       int                `yaml:"-"`
}

type rawNotify struct {
	Type       opt[string]        `yaml:"type"`
	Name       opt[string]        `yaml:"name"`
	URL        opt[string]        `yaml:"url"`
	URLEnv     opt[string]        `yaml:"urlEnv"`
	URLFile    opt[string]        `yaml:"urlFile"`
	Secret     opt[string]        `yaml:"secret"`
	SecretEnv  opt[string]        `yaml:"secretEnv"`
	SecretFile opt[string]        `yaml:"secretFile"`
	MinLevel   opt[string]        `yaml:"minLevel"`
	Timeout    opt[time.Duration] `yaml:"timeout"`
	Line       int                `yaml:"-"`
}

type rawMetrics struct {
	TextfileDir     opt[string] `yaml:"textfileDir"`
	Pushgateway     opt[string] `yaml:"pushgateway"`
	PushgatewayFile opt[string] `yaml:"pushgatewayFile"`
}

type rawLock struct {
	Type           opt[string]        `yaml:"type"`
	LeaseNamespace opt[string]        `yaml:"leaseNamespace"`
	LeaseName      opt[string]        `yaml:"leaseName"`
	LeaseDuration  opt[time.Duration] `yaml:"leaseDuration"`
}

type rawLog struct {
	File       opt[string] `yaml:"file"`
	MaxSizeMB  opt[int]    `yaml:"maxSizeMB"`
	MaxBackups opt[int]    `yaml:"maxBackups"`
	MaxAgeDays opt[int]    `yaml:"maxAgeDays"`
	Compress   opt[bool]   `yaml:"compress"`
}

type rawFlux struct {
	Namespace        opt[string]        `yaml:"namespace"`
	ReconcileTimeout opt[time.Duration] `yaml:"reconcileTimeout"`
}

type rawDefaults struct {
	Namespace      opt[string]        `yaml:"namespace"`
	RolloutTimeout opt[time.Duration] `yaml:"rolloutTimeout"`
	Soak           opt[time.Duration] `yaml:"soak"`
	AutoRollback   opt[bool]          `yaml:"autoRollback"`
	DeployWindows  []rawWindow        `yaml:"deployWindows"`
}

type rawService struct {
	Name           opt[string]        `yaml:"name"`
	Namespace      opt[string]        `yaml:"namespace"`
	Deployment     opt[string]        `yaml:"deployment"`
	Container      opt[string]        `yaml:"container"`
	ImagePolicy    opt[string]        `yaml:"imagePolicy"`
	Promote        *rawPromote        `yaml:"promote"`
	RolloutTimeout opt[time.Duration] `yaml:"rolloutTimeout"`
	Soak           opt[time.Duration] `yaml:"soak"`
	AutoRollback   opt[bool]          `yaml:"autoRollback"`
	DeployWindows  []rawWindow        `yaml:"deployWindows"`
	Health         *rawHealth         `yaml:"health"`
	Line           int                `yaml:"-"`
}

type rawPromote struct {
	From        opt[string]        `yaml:"from"`
	After       opt[time.Duration] `yaml:"after"`
	ImagePolicy opt[string]        `yaml:"imagePolicy"`
	Line        int                `yaml:"-"`
}

type rawHealth struct {
	URL               opt[string]        `yaml:"url"`
	URLEnv            opt[string]        `yaml:"urlEnv"`
	URLFile           opt[string]        `yaml:"urlFile"`
	AuthorizationEnv  opt[string]        `yaml:"authorizationEnv"`
	AuthorizationFile opt[string]        `yaml:"authorizationFile"`
	ExpectStatus      opt[int]           `yaml:"expectStatus"`
	ExpectBody        opt[string]        `yaml:"expectBody"`
	Timeout           opt[time.Duration] `yaml:"timeout"`
	Interval          opt[time.Duration] `yaml:"interval"`
	Line              int                `yaml:"-"`
}

// opt is one scalar setting as read from the file. Set means the key was
// present with a non-null value; Bad means that value could not be decoded
// and has already been reported, so validation must not pile a second error
// on top of it.
type opt[T any] struct {
	Val  T
	Set  bool
	Bad  bool
	Line int
	Path string
}

// ok reports whether the value was given and decoded, i.e. is worth
// validating.
func (o opt[T]) ok() bool { return o.Set && !o.Bad }

func (o opt[T]) or(def T) T {
	if o.ok() {
		return o.Val
	}
	return def
}

// scalar is implemented by every opt type; the decoder finds it by
// reflection.
type scalar interface {
	decodeScalar(n *yaml.Node, path string) (msg string)
}

func (o *opt[T]) decodeScalar(n *yaml.Node, path string) string {
	o.Set, o.Line, o.Path = true, n.Line, path
	var msg string
	switch p := any(&o.Val).(type) {
	case *string:
		*p, msg = decodeString(n)
	case *int:
		*p, msg = decodeInt(n)
	case *bool:
		*p, msg = decodeBool(n)
	case *time.Duration:
		*p, msg = decodeDuration(n)
	default:
		panic(fmt.Sprintf("config: opt of unsupported type %T", o.Val))
	}
	o.Bad = msg != ""
	return msg
}

func decodeString(n *yaml.Node) (string, string) {
	if n.Kind != yaml.ScalarNode {
		return "", "expected a string, got " + describe(n)
	}
	return n.Value, ""
}

func decodeInt(n *yaml.Node) (int, string) {
	var i int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
		return 0, "expected an integer, got " + describe(n)
	}
	return i, ""
}

func decodeBool(n *yaml.Node) (bool, string) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		return false, "expected true or false, got " + describe(n)
	}
	return b, ""
}

func decodeDuration(n *yaml.Node) (time.Duration, string) {
	if n.Kind != yaml.ScalarNode {
		return 0, "expected a duration such as 90s, 5m or 1h, got " + describe(n)
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		return 0, fmt.Sprintf("invalid duration %s (%s)", quote(n.Value), DurationFix(n.Value))
	}
	return d, ""
}

// describe names what a node holds for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "null"
		}
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			// Otherwise `got "false"` reads as if false were refused.
			return "the quoted string " + quote(n.Value)
		}
		return quote(n.Value)
	}
	return "nothing"
}

// quote quotes a value from the file, shortened so that a stray multi-line
// block does not drown the other messages.
func quote(s string) string {
	const max = 60
	if utf8.RuneCountInString(s) > max {
		s = string([]rune(s)[:max]) + "..."
	}
	return strconv.Quote(s)
}

// nodeBudget bounds the work done on one file. Aliases and merge keys let a
// small file expand exponentially ("billion laughs"); the decoder follows
// them itself, so it must count every step of its walk (value, each pair,
// each merge source), not only the nodes it decodes: a step is a few
// hundred nanoseconds, so a file stops within a fraction of a second and a
// signal is heard as soon as Load returns.
const nodeBudget = 100000

// decoder walks a yaml.Node tree into the raw structs, collecting problems
// instead of stopping at the first one.
type decoder struct {
	problems []Problem
	budget   int
	// seqLines maps the path of each list to its line, or -1 when the value
	// was not a list; it tells a missing services list (an error) from an
	// empty one (a config not filled in yet) without repeating a type error.
	seqLines map[string]int
	// onMachine (set by Load) checks paths against the file system.
	onMachine bool
	// expanded says an alias or merge key was followed: a file that
	// spends the budget without one is large, not a bomb, and is told so.
	expanded bool
}

func newDecoder() *decoder {
	return &decoder{budget: nodeBudget, seqLines: map[string]int{}}
}

func (d *decoder) add(line int, path, msg string) {
	if d.budget == 0 {
		return // see spend
	}
	d.problems = append(d.problems, Problem{Line: line, Path: path, Msg: msg})
}

func (d *decoder) spend() bool {
	if d.budget <= 0 {
		return false
	}
	d.budget--
	if d.budget == 0 {
		// What was decoded so far is partial, so any other problem
		// may be an artefact: report this one alone.
		msg := "document too complex (too many aliases or merge keys)"
		if !d.expanded {
			msg = fmt.Sprintf("document too large (more than %d keys and values: autodeploy reads configs far smaller; is this the right file?)", nodeBudget)
		}
		d.problems = []Problem{{Msg: msg}}
		return false
	}
	return true
}

// deref follows aliases; anchors must precede their aliases, so the chain is
// short, but it is bounded anyway.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == 100 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// value decodes n into v, which is an opt, a struct, a pointer to a struct or
// a slice of structs.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n != nil && n.Kind == yaml.AliasNode {
		d.expanded = true
	}
	n = deref(n)
	if n == nil || !d.spend() {
		return
	}
	if s, ok := v.Addr().Interface().(scalar); ok {
		if msg := s.decodeScalar(n, path); msg != "" {
			d.add(n.Line, path, msg)
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if d.mapping(n, p.Elem(), path) {
			v.Set(p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(n.Line, path, "expected a list, got "+describe(n))
			d.seqLines[path] = -1
			return
		}
		d.seqLines[path] = n.Line
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		panic(fmt.Sprintf("config: field of unsupported type %s", v.Type()))
	}
}

// field is one valid key of a struct.
type field struct {
	key   string
	index int
}

// nullRefused maps a key to the fix of its null value. "key:" with
// nothing after it means the default, but for promote the default is "not
// promoted": a service whose promotion was left unfilled (or cancelled by
// a null over a merge key) would deploy its own imagePolicy's image, never
// verified upstream (issue 18, sixth pass). Such a null is refused.
var nullRefused = map[string]string{
	"promote": "promote a service with promote: {from: SERVICE}, or remove the key (a null promote would deploy the service's own imagePolicy unverified)",
}

// fieldsOf derives the valid keys of a mapping from the yaml tags of the
// struct it decodes into.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if key != "" && key != "-" {
			fs = append(fs, field{key, i})
		}
	}
	return fs
}

// mapping decodes a mapping node into the struct v and reports whether n was
// a mapping at all.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			d.add(n.Line, "", "expected a mapping at the top level, got "+describe(n))
		} else {
			d.add(n.Line, path, "expected a mapping, got "+describe(n))
		}
		return false
	}
	if f, ok := v.Type().FieldByName("Line"); ok && f.Tag.Get("yaml") == "-" {
		v.FieldByIndex(f.Index).SetInt(int64(n.Line))
	}
	fields := fieldsOf(v.Type())
	for _, p := range d.pairs(n, path, 0) {
		f, ok := lookup(fields, p.key.Value)
		if !ok {
			d.add(p.key.Line, "", unknownKey(p.key.Value, path, fields))
			continue
		}
		if isNull(deref(p.val)) {
			if fix, refused := nullRefused[f.key]; refused {
				d.add(p.key.Line, join(path, f.key), "is null: "+fix)
				continue
			}
			// "key:" with nothing after it means the default, as it
			// would for any YAML consumer.
			continue
		}
		d.value(p.val, v.Field(f.index), join(path, f.key))
	}
	return true
}

func lookup(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// where phrases the location of a key for messages that carry no path.
func where(path string) string {
	if path == "" {
		return " at the top level"
	}
	return " in " + path
}

type pair struct{ key, val *yaml.Node }

// pairs lists the keys of a mapping, expanding merge keys ("<<: *base") and
// reporting duplicates, which the YAML library accepts silently in a node
// tree and would otherwise make one of the two values vanish.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var own, merged []pair
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !d.spend() {
			return nil
		}
		k, val := deref(n.Content[i]), n.Content[i+1]
		if k == nil {
			continue
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			d.expanded = true
			merged = append(merged, d.merge(val, path, depth)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, "", "expected a key"+where(path)+", got "+describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.add(k.Line, "", fmt.Sprintf("duplicate key %s%s (first at line %d)", quote(k.Value), where(path), first))
			continue
		}
		seen[k.Value] = k.Line
		own = append(own, pair{k, val})
	}
	// Keys written in the mapping win over merged ones, and earlier merge
	// sources win over later ones, as the merge key spec says.
	for _, p := range merged {
		if _, dup := seen[p.key.Value]; !dup {
			seen[p.key.Value] = p.key.Line
			own = append(own, p)
		}
	}
	return own
}

func (d *decoder) merge(val *yaml.Node, path string, depth int) []pair {
	val = deref(val)
	// Each visit spends, not only each pair: lists of lists of aliases
	// hold no pair until their leaves, and a 954-byte file (20 wide, 10
	// deep) had 20^9 of them walked here after the budget ran out, for
	// over 11 minutes (issue 18, item 7).
	if val == nil || !d.spend() {
		return nil
	}
	if depth > 10 {
		d.add(val.Line, "", "merge keys nested too deeply"+where(path))
		return nil
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path, depth+1)
	case yaml.SequenceNode:
		var ps []pair
		for _, item := range val.Content {
			ps = append(ps, d.merge(item, path, depth+1)...)
		}
		return ps
	}
	d.add(val.Line, "", "merge key (<<)"+where(path)+" needs a mapping or a list of mappings, got "+describe(val))
	return nil
}

// unknownKey suggests the closest valid key, or lists them all when none is
// close, so that a misplaced key can be found without reading the docs.
func unknownKey(key, path string, fields []field) string {
	msg := "unknown key " + quote(key) + where(path)
	if s := suggest(key, fields); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	return msg + " (valid keys: " + strings.Join(keys, ", ") + ")"
}

func suggest(key string, fields []field) string {
	lk := strings.ToLower(key)
	// Short keys get a tight limit: "foo" is three edits from "log" but is
	// not a typo of it.
	limit := min(3, max(1, utf8.RuneCountInString(key)/3))
	best, bestDist := "", limit+1
	for _, f := range fields {
		lf := strings.ToLower(f.key)
		dist := editDistance(lk, lf)
		short, long := lk, lf
		if len(short) > len(long) {
			short, long = long, short
		}
		if dist > limit && len(short) >= 4 && 2*len(short) >= len(long) && strings.Contains(long, short) {
			// timeoutSeconds -> timeout, expectStatusCode -> expectStatus;
			// but "image" is not a spelling of "imagePolicy".
			dist = limit
		}
		if dist < bestDist {
			best, bestDist = f.key, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: Levenshtein plus
// transposition of adjacent letters, the commonest typo ("sheduel").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 100 || len(rb) > 100 {
		return 1 << 30 // not a typo, and not worth quadratic time
	}
	// d[i][j] is the distance between ra[:i] and rb[:j].
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// DurationSyntax is the fix of a duration that does not parse, in the
// config and in flags alike.
const DurationSyntax = "use Go syntax such as 90s, 5m, 1h"

// durationShape is the syntax time.ParseDuration accepts.
var durationShape = regexp.MustCompile(`^[-+]?(0|((\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$`)

// DurationFix is the fix of a duration time.ParseDuration refused: its
// error is "invalid duration" for a number too large as for a typo, and
// 99999999999h was told to use Go syntax (issue 18, seventh pass).
func DurationFix(value string) string {
	if durationShape.MatchString(value) {
		return fmt.Sprintf("out of range: the longest is %dh", math.MaxInt64/int64(time.Hour))
	}
	return DurationSyntax
}
