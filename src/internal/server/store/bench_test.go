package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkCoreLifecycle runs the database work of one uploaded and analysed core, as the
// server does it: prepare, PUT, commit, claim, finish (with a 57 KB trace, the size of the
// armhf fixture's), and one status count.
func BenchmarkCoreLifecycle(b *testing.B) {
	ctx := context.Background()
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	trace := `{"threads":"` + strings.Repeat("x", 57000) + `"}`
	blob := strings.Repeat("c", 64)
	step := func(name string, err error) {
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tok := fmt.Sprintf("tok%d", i)
		step("prepare", s.CreateUpload(ctx, tok, "mar", 1000))
		_, err := s.GetUpload(ctx, tok)
		step("put", err)
		step("put", s.SetUploadBlob(ctx, tok, blob))
		_, err = s.GetUpload(ctx, tok)
		step("commit", err)
		_, err = s.CommitEntries(ctx, tok, []NewEntry{{
			Entry: Entry{UUID: fmt.Sprintf("u%d", i), Type: "elf-coredump", DeviceSerial: "d", Manifest: strings.Repeat("m", 360)},
			Core:  &CoreInput{Blob: blob, Compression: "none", DeviceSerial: "d", SoftwareVersion: "1.0", Captured: time.Now()},
		}})
		step("commit", err)
		c, err := s.ClaimNext(ctx)
		step("claim", err)
		_, _, err = s.FinishCore(ctx, c.ID, Result{Fingerprint: "fp", Title: "t", Signal: "SIGSEGV", FingerprintFrames: "[]", Trace: trace})
		step("finish", err)
		_, err = s.CoreStatusCounts(ctx)
		step("status", err)
	}
}
