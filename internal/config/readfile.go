package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// MaxFileSize bounds what ReadFile reads: a config or a secret is a few
// kilobytes, and a file without end (/dev/zero, a log named by mistake)
// must not fill the memory (/dev/zero as --config grew to 23 GB before the
// OOM killer took it).
const MaxFileSize = 8 << 20

// ReadFile reads the config file or a file holding a secret (urlFile,
// secretFile, authorizationFile, pushgatewayFile), which must be a regular
// file (or a symlink to one, as Kubernetes mounts Secrets) of at most
// MaxFileSize. It opens without blocking and checks the open file: a named
// pipe blocked os.ReadFile in open forever, unmoved by SIGTERM (the signal
// cancels a context no read looks at), and a device never ends.
func ReadFile(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d MiB: is it the right file?", path, MaxFileSize>>20)
	}
	return b, nil
}

// CheckFile is ReadFile's refusal without the read, for a file another
// library reads (the kubeconfig, read by client-go): an error when path is
// there but is not a regular file of at most MaxFileSize; one that is not
// there is left to the reader, which has its own words for it.
func CheckFile(path string) error {
	f, err := openRegular(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// openRegular is OpenRegular refusing what is larger than MaxFileSize.
func openRegular(path string) (*os.File, error) {
	f, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || st.Size() > MaxFileSize {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s is larger than %d MiB: is it the right file?", path, MaxFileSize>>20)
		}
		return nil, err
	}
	return f, nil
}

// OpenRegular opens path to read without blocking (a named pipe would wait
// for a writer, forever under cron) and refuses what is not a regular file
// (a symlink to one is one), naming what it is. For files of any size,
// such as the log and its backups; ReadFile bounds the size too.
func OpenRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is %s, not a regular file", path, FileKind(st.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// FileKind names what a path that is not a regular file is ("a named
// pipe", "a directory", ...).
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a file"
}
