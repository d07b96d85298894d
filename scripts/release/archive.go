package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// entry is one file, directory or symlink of an archive.
type entry struct {
	Name string // path inside the archive, no leading "/"
	Mode int64
	Dir  bool
	Link string // symlink target
	Body []byte
}

// file reads src into an entry named name.
func file(name, src string, mode int64) (entry, error) {
	b, err := os.ReadFile(src)
	return entry{Name: name, Mode: mode, Body: b}, err
}

// writeTar writes entries as a reproducible tar: sorted by path, every
// parent directory present, one mtime, owned by root, no user or host
// names, no access or change times. The same entries give the same bytes.
func writeTar(w io.Writer, entries []entry, mtime time.Time) error {
	byName := map[string]entry{}
	for _, e := range entries {
		byName[e.Name] = e
		for d := path.Dir(e.Name); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = entry{Name: d, Mode: 0o755, Dir: true}
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	// Component-wise order keeps a directory right before its contents
	// ("a-b" sorts before "a/" byte-wise).
	slices.SortFunc(names, func(a, b string) int {
		return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
	})
	tw := tar.NewWriter(w)
	for _, n := range names {
		e := byName[n]
		h := &tar.Header{Name: n, Mode: e.Mode, ModTime: mtime.UTC().Truncate(time.Second), Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		switch {
		case e.Dir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		case e.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(e.Body); err != nil {
			return err
		}
	}
	return tw.Close()
}

// gzipBytes compresses b reproducibly: Go's gzip writes no name and a zero
// mtime unless told, unlike gzip(1) without -n.
func gzipBytes(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// writeTarGz writes entries as a reproducible .tar.gz file.
func writeTarGz(dst string, entries []entry, mtime time.Time) error {
	var tb bytes.Buffer
	if err := writeTar(&tb, entries, mtime); err != nil {
		return err
	}
	gz, err := gzipBytes(tb.Bytes())
	if err != nil {
		return err
	}
	return os.WriteFile(dst, gz, 0o644)
}
