// Command devbench runs the device-protocol test server on loopback for benchmarks, and stages
// synthetic core entries. It is a test tool, not a product.
//
//	devbench -key K                       print the base URL and a sink URL, serve until killed
//	devbench -stage DIR -n 100 -size 65536 -key K   write n complete elf-coredump entries into DIR (a mar dir)
package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	"meta-memfault-go/internal/device/capture"
	"meta-memfault-go/internal/device/staging"
	"meta-memfault-go/internal/elfcore"
	"meta-memfault-go/internal/protocol"
	"meta-memfault-go/internal/testutil/deviceapi"
)

func main() {
	key := flag.String("key", "bench", "project key")
	stage := flag.String("stage", "", "stage entries into this mar directory instead of serving")
	n := flag.Int("n", 100, "entries to stage")
	size := flag.Int("size", 64<<10, "attachment size")
	serial := flag.String("serial", "bench-device", "device serial in the staged manifests")
	small := flag.String("small", "", "write the threads-strategy core of the full core -in to this file")
	in := flag.String("in", "", "full kernel core (with -small)")
	flag.Parse()
	if *small != "" {
		if err := smallCore(*in, *small); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *stage != "" {
		if err := stageEntries(staging.Dir{Path: *stage}, *n, *size, *key, *serial); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	s := deviceapi.Start(*key)
	// A sink that only reads request bodies: the benchmark's transfer-only baseline.
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer sink.Close()
	fmt.Println(s.URL)
	fmt.Println(sink.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	fmt.Fprintf(os.Stderr, "entries %d commits %d violations %d\n", len(s.Entries()), s.Commits(), len(s.Violations()))
	for _, v := range s.Violations() {
		fmt.Fprintln(os.Stderr, "violation:", v)
	}
	s.Close()
}

// smallCore runs the threads capture strategy on a full core, the core standing in for the
// process memory, as the hermetic tests do.
func smallCore(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	c, err := elfcore.ReadCore(bytes.NewReader(b), elfcore.DefaultLimits)
	if err != nil {
		return err
	}
	notes, err := elfcore.ParseNotes(c.Notes, c.Header.ByteOrder())
	if err != nil {
		return err
	}
	p, err := elfcore.DecodeProcess(&c.Header, notes)
	if err != nil {
		return err
	}
	mem := elfcore.NewSegmentMemory(bytes.NewReader(b), c.Progs)
	res, err := capture.Threads(capture.Input{Core: c, Proc: p, Mem: mem}, 32<<10)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = res.Layout.Write(f, mem)
	return err
}

func stageEntries(d staging.Dir, n, size int, key, serial string) error {
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		rand.Read(buf)
		e, err := d.NewEntry()
		if err != nil {
			return err
		}
		name := "core-" + e.UUID + ".elf.gz"
		f, err := e.Create(name)
		if err != nil {
			return err
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
		f.Close()
		err = e.Commit(&protocol.Manifest{SchemaVersion: 1,
			CollectionTime: protocol.CollectionTime{Timestamp: time.Now().UTC().Format(time.RFC3339)},
			Device:         protocol.ManifestDevice{ProjectKey: key, DeviceSerial: serial, HardwareVersion: "bench", SoftwareType: "bench", SoftwareVersion: "1"},
			Producer:       protocol.Producer{ID: "memfaultd", Version: "bench"},
			Type:           protocol.ManifestTypeCoredump,
			Metadata:       protocol.CoredumpPayload{CoredumpFileName: name, Compression: "gzip"}})
		if err != nil {
			return err
		}
	}
	return nil
}
