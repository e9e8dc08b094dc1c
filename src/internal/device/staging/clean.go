package staging

import (
	"fmt"
	"os"
	"time"
)

// CleanPolicy bounds the staging area.
type CleanPolicy struct {
	MaxUsage      int64         // tmp_dir_max_usage_kib, in bytes: total size of all entries
	MinHeadroom   uint64        // tmp_dir_min_headroom_kib, in bytes: free space to leave on the file system
	MinInodes     uint64        // tmp_dir_min_inodes
	MaxAge        time.Duration // mar_entry_max_age_seconds; 0 keeps entries forever
	UnfinishedAge time.Duration // an entry without manifest older than this was abandoned (default 1 min)
}

// CleanReport says what Clean removed.
type CleanReport struct {
	Abandoned, Expired, Evicted int
	Freed                       int64
}

// Clean enforces the policy: abandoned entries (no manifest, older than UnfinishedAge) and
// entries older than MaxAge go first; then the oldest complete entries are deleted until the
// staging area is under MaxUsage and the file system has MinHeadroom bytes and MinInodes
// inodes free. An entry being written right now is younger than UnfinishedAge and is left alone.
func (d Dir) Clean(p CleanPolicy, now time.Time) (CleanReport, error) {
	var rep CleanReport
	if p.UnfinishedAge == 0 {
		p.UnfinishedAge = time.Minute
	}
	entries, err := d.List()
	if err != nil {
		return rep, err
	}
	remove := func(e Info) error {
		if err := os.RemoveAll(e.Path); err != nil {
			return fmt.Errorf("remove entry %s: %w", e.UUID, err)
		}
		rep.Freed += e.Size
		return nil
	}
	var keep []Info
	var usage int64
	for _, e := range entries {
		age := now.Sub(e.ModTime)
		switch {
		case !e.Complete && age > p.UnfinishedAge:
			if err := remove(e); err != nil {
				return rep, err
			}
			rep.Abandoned++
		case e.Complete && p.MaxAge > 0 && age > p.MaxAge:
			if err := remove(e); err != nil {
				return rep, err
			}
			rep.Expired++
		default:
			keep = append(keep, e)
			usage += e.Size
		}
	}
	for _, e := range keep {
		if !e.Complete {
			continue
		}
		over := p.MaxUsage > 0 && usage > p.MaxUsage
		if !over && (p.MinHeadroom > 0 || p.MinInodes > 0) {
			sp, err := FreeSpace(d.Path)
			if err != nil {
				return rep, err
			}
			over = sp.AvailBytes < p.MinHeadroom || sp.AvailInodes < p.MinInodes
		}
		if !over {
			break
		}
		if err := remove(e); err != nil {
			return rep, err
		}
		usage -= e.Size
		rep.Evicted++
	}
	return rep, nil
}
