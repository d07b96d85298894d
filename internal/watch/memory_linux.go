//go:build linux

package watch

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ReleaseIdle gives back what the process holds only because it started
// and acted, so that between events the watch is resident with little more
// than its informers (issue 20: idle under 30 MB with 50 services).
//
// Measured with scripts/bench --watch-idle (50 services, /proc/PID/pagemap
// per ELF section): of 46.6 MB resident, 11 MB were the process's own
// memory and 30 MB the executable's pages: 16.9 MB of the 23 MB .text and
// 13 MB of the 18 MB .gopclntab. The watch's loop uses a small part of
// them; they were mapped by the start: every one of the 650 packages' init
// functions, and the kernel maps up to 64 KiB around each page fault of a
// file already cached (fault-around), so sparse touches map most of the
// file. Those pages are clean copies of the file: MADV_DONTNEED removes
// them from this process, the page cache keeps them, and a page used again
// comes back with a minor fault (no disk read, microseconds), so the next
// action is not slowed. Only read-only mappings of the executable are
// dropped, and never a PT_GNU_RELRO range (written by the loader before it
// was made read-only: dropping it would lose the relocations; Go's own
// linker emits none for this binary, an external link may).
//
// debug.FreeOSMemory returns the heap the action freed at once instead of
// after the background scavenger's minutes.
func ReleaseIdle() error {
	debug.FreeOSMemory()
	return dropExecutablePages()
}

func dropExecutablePages() error {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return err
	}
	relro, err := relroRanges()
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return err
	}
	defer f.Close()
	var base uint64
	var haveBase bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m, ok := parseMapping(sc.Text())
		if !ok || m.inode != st.Ino || m.dev != uint64(st.Dev) {
			continue
		}
		if !haveBase && m.offset == 0 {
			base, haveBase = m.start-relro.firstLoad, true
		}
		if m.writable {
			continue
		}
		for _, r := range splitAround(m.start, m.end, relro.shift(base)) {
			if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(r[0]), uintptr(r[1]-r[0]), unix.MADV_DONTNEED); e != 0 {
				return fmt.Errorf("madvise %#x-%#x: %w", r[0], r[1], e)
			}
		}
	}
	return sc.Err()
}

type mapping struct {
	start, end, offset uint64
	dev, inode         uint64
	writable           bool
}

// parseMapping reads one line of /proc/self/maps (proc(5)):
// "start-end perms offset dev inode path".
func parseMapping(line string) (mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	se := strings.SplitN(f[0], "-", 2)
	if len(se) != 2 || len(f[1]) < 4 {
		return mapping{}, false
	}
	var m mapping
	var err1, err2, err3, err4 error
	m.start, err1 = strconv.ParseUint(se[0], 16, 64)
	m.end, err2 = strconv.ParseUint(se[1], 16, 64)
	m.offset, err3 = strconv.ParseUint(f[2], 16, 64)
	m.inode, err4 = strconv.ParseUint(f[4], 10, 64)
	dev := strings.SplitN(f[3], ":", 2)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || m.end <= m.start || len(dev) != 2 {
		return mapping{}, false
	}
	major, err1 := strconv.ParseUint(dev[0], 16, 32)
	minor, err2 := strconv.ParseUint(dev[1], 16, 32)
	if err1 != nil || err2 != nil {
		return mapping{}, false
	}
	m.dev = unix.Mkdev(uint32(major), uint32(minor))
	m.writable = f[1][1] == 'w'
	return m, true
}

type relroSet struct {
	firstLoad uint64      // page-aligned vaddr of the first PT_LOAD
	ranges    [][2]uint64 // page-aligned [start, end) by vaddr
}

func (s relroSet) shift(base uint64) [][2]uint64 {
	out := make([][2]uint64, len(s.ranges))
	for i, r := range s.ranges {
		out[i] = [2]uint64{r[0] + base, r[1] + base}
	}
	return out
}

// relroRanges reads the executable's program headers: where it is loaded
// from, and what the loader wrote before making it read-only.
func relroRanges() (relroSet, error) {
	e, err := elf.Open("/proc/self/exe")
	if err != nil {
		return relroSet{}, err
	}
	defer e.Close()
	const page = 4096
	var s relroSet
	first := true
	for _, p := range e.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			if first {
				s.firstLoad, first = p.Vaddr&^(page-1), false
			}
		case elf.PT_GNU_RELRO:
			s.ranges = append(s.ranges, [2]uint64{p.Vaddr &^ (page - 1), (p.Vaddr + p.Memsz + page - 1) &^ (page - 1)})
		}
	}
	return s, nil
}

// splitAround is [start, end) without the ranges in skip.
func splitAround(start, end uint64, skip [][2]uint64) [][2]uint64 {
	out := [][2]uint64{{start, end}}
	for _, k := range skip {
		var next [][2]uint64
		for _, r := range out {
			if k[1] <= r[0] || k[0] >= r[1] {
				next = append(next, r)
				continue
			}
			if r[0] < k[0] {
				next = append(next, [2]uint64{r[0], k[0]})
			}
			if k[1] < r[1] {
				next = append(next, [2]uint64{k[1], r[1]})
			}
		}
		out = next
	}
	return out
}
