package ui

import (
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Escape returns s as a terminal may show it: what strconv.Quote escapes
// (control characters, among them ESC, BEL, CR and LF; DEL and C1; bidi
// overrides and other invisible format characters; invalid UTF-8) is
// written as its Go escape (\x1b, \n, \u202e, \xff), and everything
// printable, UTF-8 included, is kept as it is, without quotes. Text from
// the cluster is anyone's who may annotate a Deployment or write a Lease:
// raw, it could retitle the operator's terminal, clear it or forge lines
// of the output (issue 18, item 9).
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (r != ' ' && !strconv.IsPrint(r)) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
		case r == ' ' || strconv.IsPrint(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// Escaped returns a deep copy of v with Escape applied to every string in
// it (fields, slices, maps, through pointers): a renderer escapes what it
// is given once, instead of at each of its many rows, and a field added
// later is escaped too. v itself is left as it is (-o json shows it).
// Unexported fields (time.Time's) are copied as they are.
func Escaped[T any](v T) T {
	in := reflect.ValueOf(&v).Elem()
	out := reflect.New(in.Type()).Elem()
	escapeValue(out, in)
	return out.Interface().(T)
}

func escapeValue(out, in reflect.Value) {
	switch in.Kind() {
	case reflect.String:
		out.SetString(Escape(in.String()))
	case reflect.Pointer:
		if in.IsNil() {
			return
		}
		p := reflect.New(in.Type().Elem())
		escapeValue(p.Elem(), in.Elem())
		out.Set(p)
	case reflect.Struct:
		// The whole struct first: unexported fields (time.Time's) cannot
		// be set one by one, and hold no text of the cluster's.
		out.Set(in)
		t := in.Type()
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).IsExported() {
				escapeValue(out.Field(i), in.Field(i))
			}
		}
	case reflect.Slice:
		if in.IsNil() {
			return
		}
		s := reflect.MakeSlice(in.Type(), in.Len(), in.Len())
		for i := 0; i < in.Len(); i++ {
			escapeValue(s.Index(i), in.Index(i))
		}
		out.Set(s)
	case reflect.Map:
		if in.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(in.Type(), in.Len())
		for it := in.MapRange(); it.Next(); {
			k, v := reflect.New(in.Type().Key()).Elem(), reflect.New(in.Type().Elem()).Elem()
			escapeValue(k, it.Key())
			escapeValue(v, it.Value())
			m.SetMapIndex(k, v)
		}
		out.Set(m)
	default:
		out.Set(in)
	}
}
