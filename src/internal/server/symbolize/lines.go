package symbolize

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// This file decodes one compile unit's .debug_line program (DWARF 2-5) and
// folds its rows into a table answering "which line is at pc" the way gdb
// does. gdb's rules (dwarf2/read.c lnp_state_machine, buildsym.c,
// symtab.c find_pc_sect_line), restated:
//
//   - rows are grouped into one table per source file ("subfile");
//   - switching file at a new row puts a line-0 "end" marker into the
//     previous file's table at that address, which also drops that file's
//     earlier entries at the same address;
//   - a row that switches file at the same address as the previous row, is
//     not a statement while a statement row was seen at that address, is
//     ignored, and so is a line-0 row;
//   - a row repeating the previous file and line is dropped when the line
//     ever had a non-zero discriminator;
//   - sequences starting at address 0 in a unit that starts above 0 belong to
//     code the linker discarded and are ignored;
//   - to answer pc, each file's table gives its last entry at or below pc
//     (when that entry is not a statement, an earlier statement entry at the
//     same address wins); the highest address over all files wins, ties
//     going to the file listed first (the primary file, then header order)
//     unless it offers a line-0 marker and another file a real line;
//     a winning line 0 means "no line".

// lineHeader is the part of a line program header needed to run it.
type lineHeader struct {
	version       uint16
	offSize       int // 4 or 8 (64-bit DWARF)
	addrSize      int
	minInst       uint8
	maxOps        uint8
	defaultIsStmt bool
	lineBase      int8
	lineRange     uint8
	opcodeBase    uint8
	stdLens       []uint8
	dirs          []string
	// files is indexed by the DWARF file number: entry 0 is the primary file
	// in DWARF 5 and unused ("") before.
	files []string
}

// lineRow is one row of the decoded program.
type lineRow struct {
	addr  uint64
	file  uint32
	line  uint32
	col   uint32
	flags uint8
}

const (
	rowStmt    = 1 << iota // is_stmt
	rowEnd                 // end_sequence
	rowDiscr               // the line has had a non-zero discriminator
	rowOpIndex             // op_index != 0 (VLIW bundles): gdb skips these
)

// lineEnv is what the header needs from the rest of the file.
type lineEnv struct {
	line, strOffsets []byte
	lineBase         uint64 // offset of line[0] in .debug_line
	lineStr, str     string
	order            binary.ByteOrder
	names            *budget // for the paths built
	compDir          string
	strOffsetsBase   uint64
	cuAddrSize       int
}

// readLineProgram decodes the line program at off into its header and rows.
// Every count is checked against the bytes that remain before anything is
// allocated for it, and rows are bounded by the program's length.
func readLineProgram(env *lineEnv, off uint64) (*lineHeader, []lineRow, error) {
	if off < env.lineBase || off-env.lineBase >= uint64(len(env.line)) {
		return nil, nil, fmt.Errorf(".debug_line offset %#x out of range", off)
	}
	c := &cursor{b: env.line[off-env.lineBase:], order: env.order, what: ".debug_line", base: int(off)}
	h := &lineHeader{offSize: 4}
	unitLen := uint64(c.u32())
	if unitLen == 0xffffffff {
		h.offSize = 8
		unitLen = c.u64()
	} else if unitLen >= 0xfffffff0 {
		return nil, nil, fmt.Errorf(".debug_line at %#x: reserved unit length %#x", off, unitLen)
	}
	if c.err != nil {
		return nil, nil, c.err
	}
	if unitLen > uint64(c.left()) {
		return nil, nil, fmt.Errorf(".debug_line at %#x: unit length %#x exceeds section", off, unitLen)
	}
	c.b = c.b[:c.off+int(unitLen)]
	h.version = c.u16()
	if c.err == nil && (h.version < 2 || h.version > 5) {
		return nil, nil, fmt.Errorf(".debug_line at %#x: unsupported version %d", off, h.version)
	}
	h.addrSize = env.cuAddrSize
	if h.version >= 5 {
		h.addrSize = int(c.u8())
		if seg := c.u8(); seg != 0 {
			return nil, nil, fmt.Errorf(".debug_line at %#x: segment selectors not supported", off)
		}
	}
	hdrLen := c.uint(h.offSize)
	if c.err != nil {
		return nil, nil, c.err
	}
	if hdrLen > uint64(c.left()) {
		return nil, nil, fmt.Errorf(".debug_line at %#x: header length %#x exceeds unit", off, hdrLen)
	}
	progStart := c.off + int(hdrLen)
	h.minInst = c.u8()
	h.maxOps = 1
	if h.version >= 4 {
		h.maxOps = c.u8()
	}
	h.defaultIsStmt = c.u8() != 0
	h.lineBase = int8(c.u8())
	h.lineRange = c.u8()
	h.opcodeBase = c.u8()
	if c.err != nil {
		return nil, nil, c.err
	}
	if h.lineRange == 0 || h.maxOps == 0 || h.opcodeBase == 0 {
		return nil, nil, fmt.Errorf(".debug_line at %#x: invalid header (line_range %d, max_ops %d, opcode_base %d)", off, h.lineRange, h.maxOps, h.opcodeBase)
	}
	h.stdLens = c.bytes(int(h.opcodeBase) - 1)
	if h.version >= 5 {
		h.readV5Tables(c, env)
	} else {
		h.readV4Tables(c, env)
	}
	if c.err != nil {
		return nil, nil, c.err
	}
	if progStart > len(c.b) || c.off > progStart {
		return nil, nil, fmt.Errorf(".debug_line at %#x: header overruns its length", off)
	}
	c.off = progStart
	rows, err := h.run(c, env)
	return h, rows, err
}

func joinPath(dir, file string) string {
	switch {
	case file == "" || dir == "" || strings.HasPrefix(file, "/"):
		return file
	case strings.HasSuffix(dir, "/"):
		return dir + file
	}
	return dir + "/" + file
}

// Paths: directory 0 is the compilation directory (DW_AT_comp_dir before
// DWARF 5, an explicit entry since); other relative directories are relative
// to it, and relative file names to their directory. A path can stay
// relative when the compilation directory itself was recorded relative
// (-fdebug-prefix-map), and is then reported as recorded, like gdb does.

func (h *lineHeader) readV4Tables(c *cursor, env *lineEnv) {
	h.dirs = []string{env.compDir}
	for c.err == nil {
		d := c.cstr()
		if d == "" {
			break
		}
		h.dirs = append(h.dirs, charge(c, env, joinPath(env.compDir, d)))
	}
	h.files = []string{""}
	for c.err == nil {
		name := c.cstr()
		if name == "" {
			break
		}
		dir := c.uleb()
		c.uleb() // mtime
		c.uleb() // length
		h.files = append(h.files, h.filePath(c, env, name, dir))
	}
}

// filePath joins a file name to its directory, charging the new string to
// the name budget.
func (h *lineHeader) filePath(c *cursor, env *lineEnv, name string, dir uint64) string {
	if dir < uint64(len(h.dirs)) {
		return charge(c, env, joinPath(h.dirs[dir], name))
	}
	return name
}

func charge(c *cursor, env *lineEnv, path string) string {
	if env.names != nil && !env.names.take(len(path)) {
		c.fail("file names over budget")
	}
	return path
}

// DWARF 5 entry formats: DW_LNCT_* content (the DW_FORM_* forms are in die.go).
const (
	lnctPath     = 1
	lnctDirIndex = 2
)

type lnctForm struct{ content, form uint64 }

func (h *lineHeader) readFormats(c *cursor) []lnctForm {
	n := int(c.u8())
	if n > c.left()/2 {
		c.fail("%d entry formats", n)
		return nil
	}
	f := make([]lnctForm, n)
	for i := range f {
		f[i] = lnctForm{c.uleb(), c.uleb()}
	}
	return f
}

// readEntries reads count entries of the given format, calling fn with each
// entry's path and directory index.
func (h *lineHeader) readEntries(c *cursor, env *lineEnv, formats []lnctForm, fn func(path string, dir uint64)) {
	count := c.uleb()
	if c.err != nil {
		return
	}
	// Every form takes at least one byte, so a count above the bytes left is a lie.
	if count > 0 && (len(formats) == 0 || count > uint64(c.left())) {
		c.fail("%d entries with %d bytes left", count, c.left())
		return
	}
	for i := uint64(0); i < count && c.err == nil; i++ {
		var path string
		var dir uint64
		for _, f := range formats {
			s, v, isStr := h.readForm(c, env, f.form)
			switch f.content {
			case lnctPath:
				if isStr {
					path = s
				}
			case lnctDirIndex:
				dir = v
			}
		}
		fn(path, dir)
	}
}

// readForm reads one attribute value: a string, or a number.
func (h *lineHeader) readForm(c *cursor, env *lineEnv, form uint64) (string, uint64, bool) {
	switch form {
	case formString:
		return c.cstr(), 0, true
	case formLineStrp:
		return cString(env.lineStr, c.uint(h.offSize)), 0, true
	case formStrp:
		return cString(env.str, c.uint(h.offSize)), 0, true
	case formStrx, formStrx1, formStrx2, formStrx3, formStrx4:
		var idx uint64
		switch form {
		case formStrx:
			idx = c.uleb()
		case formStrx1:
			idx = c.uint(1)
		case formStrx2:
			idx = c.uint(2)
		case formStrx3:
			idx = c.uint(3)
		case formStrx4:
			idx = c.uint(4)
		}
		return h.strx(env, idx), 0, true
	case formUdata:
		return "", c.uleb(), false
	case formSdata:
		return "", uint64(c.sleb()), false
	case formData1:
		return "", c.uint(1), false
	case formData2:
		return "", c.uint(2), false
	case formData4:
		return "", c.uint(4), false
	case formData8:
		return "", c.uint(8), false
	case formData16:
		c.bytes(16)
	case formBlock:
		c.bytes(int(min(c.uleb(), uint64(c.left())+1)))
	case formBlock1:
		c.bytes(int(c.u8()))
	case formBlock2:
		c.bytes(int(c.u16()))
	case formBlock4:
		c.bytes(int(min(uint64(c.u32()), uint64(c.left())+1)))
	default:
		c.fail("unsupported form %#x in line table header", form)
	}
	return "", 0, false
}

func (h *lineHeader) strx(env *lineEnv, idx uint64) string {
	sz := uint64(h.offSize)
	if env.strOffsetsBase > uint64(len(env.strOffsets)) {
		return ""
	}
	if idx > (uint64(len(env.strOffsets))-env.strOffsetsBase)/sz {
		return ""
	}
	p := env.strOffsetsBase + idx*sz
	if p+sz > uint64(len(env.strOffsets)) {
		return ""
	}
	var off uint64
	if sz == 8 {
		off = env.order.Uint64(env.strOffsets[p:])
	} else {
		off = uint64(env.order.Uint32(env.strOffsets[p:]))
	}
	return cString(env.str, off)
}

func (h *lineHeader) readV5Tables(c *cursor, env *lineEnv) {
	dirFormats := h.readFormats(c)
	h.readEntries(c, env, dirFormats, func(path string, _ uint64) {
		switch {
		case len(h.dirs) == 0 && path == "":
			path = env.compDir
		case len(h.dirs) > 0:
			path = charge(c, env, joinPath(h.dirs[0], path))
		}
		h.dirs = append(h.dirs, path)
	})
	fileFormats := h.readFormats(c)
	h.readEntries(c, env, fileFormats, func(path string, dir uint64) {
		h.files = append(h.files, h.filePath(c, env, path, dir))
	})
}

// Standard and extended opcodes.
const (
	lnsCopy             = 1
	lnsAdvancePC        = 2
	lnsAdvanceLine      = 3
	lnsSetFile          = 4
	lnsSetColumn        = 5
	lnsNegateStmt       = 6
	lnsSetBasicBlock    = 7
	lnsConstAddPC       = 8
	lnsFixedAdvancePC   = 9
	lnsSetPrologueEnd   = 10
	lnsSetEpilogueBegin = 11
	lnsSetISA           = 12

	lneEndSequence      = 1
	lneSetAddress       = 2
	lneDefineFile       = 3
	lneSetDiscriminator = 4
)

// run executes the line program. Each row costs at least one opcode byte.
func (h *lineHeader) run(c *cursor, env *lineEnv) ([]lineRow, error) {
	// Rows take 3-7 bytes of program (glibc, Rust's std, Go's runtime): start
	// at one per 3 bytes, near the final size, rather than growing through
	// every size or zeroing the memory of one row per byte.
	rows := make([]lineRow, 0, c.left()/3+16)
	var (
		addr    uint64
		opIndex uint64
		file    uint64
		line    int64
		col     uint64
		isStmt  bool
		discr   uint64
		hadDisc bool
	)
	reset := func() {
		addr, opIndex, file, line, col = 0, 0, 1, 1, 0
		isStmt = h.defaultIsStmt
		discr, hadDisc = 0, false
	}
	reset()
	advance := func(n uint64) {
		if h.maxOps == 1 {
			addr += uint64(h.minInst) * n
			return
		}
		t := opIndex + n
		addr += uint64(h.minInst) * (t / uint64(h.maxOps))
		opIndex = t % uint64(h.maxOps)
	}
	emit := func(end bool) {
		r := lineRow{addr: addr, file: uint32(min(file, 1<<32-1)), line: uint32(line), col: uint32(min(col, 1<<32-1))}
		if isStmt {
			r.flags |= rowStmt
		}
		if end {
			r.flags |= rowEnd
		}
		if hadDisc {
			r.flags |= rowDiscr
		}
		if opIndex != 0 {
			r.flags |= rowOpIndex
		}
		rows = append(rows, r)
		discr = 0
	}
	setLine := func(delta int64) {
		if delta != 0 {
			hadDisc = discr != 0
		}
		line += delta
	}
	for c.err == nil && c.left() > 0 {
		op := c.u8()
		switch {
		case op >= h.opcodeBase:
			adj := uint64(op - h.opcodeBase)
			advance(adj / uint64(h.lineRange))
			setLine(int64(h.lineBase) + int64(adj%uint64(h.lineRange)))
			emit(false)
		case op == 0:
			n := c.uleb()
			if c.err != nil {
				break
			}
			if n == 0 || n > uint64(c.left()) {
				c.fail("extended opcode length %d with %d bytes left", n, c.left())
				break
			}
			end := c.off + int(n)
			switch sub := c.u8(); sub {
			case lneEndSequence:
				emit(true)
				reset()
			case lneSetAddress:
				sz := int(n) - 1
				if sz < 1 || sz > 8 {
					c.fail("DW_LNE_set_address of %d bytes", sz)
					break
				}
				addr = c.uint(sz)
				opIndex = 0
			case lneDefineFile:
				name := c.cstr()
				dir := c.uleb()
				c.uleb()
				c.uleb()
				if h.version < 5 {
					h.files = append(h.files, h.filePath(c, env, name, dir))
				}
			case lneSetDiscriminator:
				discr = c.uleb()
				hadDisc = hadDisc || discr != 0
			}
			if c.err == nil {
				c.off = end
			}
		default:
			switch op {
			case lnsCopy:
				emit(false)
			case lnsAdvancePC:
				advance(c.uleb())
			case lnsAdvanceLine:
				setLine(c.sleb())
			case lnsSetFile:
				file = c.uleb()
			case lnsSetColumn:
				col = c.uleb()
			case lnsNegateStmt:
				isStmt = !isStmt
			case lnsSetBasicBlock, lnsSetPrologueEnd, lnsSetEpilogueBegin:
			case lnsConstAddPC:
				advance(uint64(255-h.opcodeBase) / uint64(h.lineRange))
			case lnsFixedAdvancePC:
				addr += uint64(c.u16())
				opIndex = 0
			case lnsSetISA:
				c.uleb()
			default:
				for i := uint8(0); i < h.stdLens[op-1] && c.err == nil; i++ {
					c.uleb()
				}
			}
		}
	}
	return rows, c.err
}

// lineEntry is one answer of the folded table: from pc up to the next
// entry's pc, the line is (file, line, col); line 0 means none.
type lineEntry struct {
	pc   uint64
	line uint32
	col  uint32
	file int32 // index into lineTable.files
}

type lineTable struct {
	entries []lineEntry
	files   []string // distinct paths
	header  *lineHeader
}

// subEntry is an entry of one file's table while folding.
type subEntry struct {
	pc   uint64
	line uint32
	col  uint32
	stmt bool
}

// foldLines applies gdb's rules (see the top of this file) to rows.
// primary is the unit's own file (DW_AT_name), cuLow the lowest address of
// the unit's ranges.
func foldLines(h *lineHeader, rows []lineRow, primary string, cuLow uint64) *lineTable {
	t := &lineTable{header: h}
	ids := map[string]int32{}
	var rank []int // per subfile id: position in gdb's file list
	var subs [][]subEntry
	subfile := func(path string) int32 {
		if id, ok := ids[path]; ok {
			return id
		}
		id := int32(len(t.files))
		ids[path] = id
		t.files = append(t.files, path)
		rank = append(rank, 1<<30+int(id))
		subs = append(subs, nil)
		return id
	}
	// gdb's file order: the primary file first, then the header's files in order.
	if primary != "" {
		rank[subfile(primary)] = 0
	}
	for i, f := range h.files {
		if i == 0 && h.version < 5 {
			continue
		}
		if id := subfile(f); rank[id] >= 1<<30 {
			rank[id] = 1 + i
		}
	}
	// fileOf maps a file number to its subfile, or -1 when the number is
	// invalid: gdb records nothing for such rows.
	fileIDs := make([]int32, len(h.files))
	for i := range fileIDs {
		fileIDs[i] = -2 // not looked up yet
	}
	fileOf := func(idx uint32) int32 {
		if int(idx) >= len(h.files) || (idx == 0 && h.version < 5) {
			return -1
		}
		if fileIDs[idx] == -2 {
			fileIDs[idx] = subfile(h.files[idx])
		}
		return fileIDs[idx]
	}
	record := func(id int32, pc uint64, line, col uint32, stmt bool) {
		v := subs[id]
		if line == 0 {
			last, have := uint32(0), false
			for len(v) > 0 {
				last, have = v[len(v)-1].line, true
				if v[len(v)-1].pc != pc {
					break
				}
				v = v[:len(v)-1]
			}
			if !have || last == 0 {
				subs[id] = v
				return
			}
		}
		subs[id] = append(v, subEntry{pc: pc, line: line, col: col, stmt: stmt})
	}

	// Simulate gdb's state machine, one sequence at a time; twice: first
	// counting what each file may record, so that every file's table is
	// carved from one allocation, then recording.
	counts := []int{}
	simulate(rows, cuLow, fileOf, func(id int32, _ uint64, _, _ uint32, _ bool) {
		for int(id) >= len(counts) {
			counts = append(counts, 0)
		}
		counts[id]++
	})
	total := 0
	for _, c := range counts {
		total += c
	}
	backing := make([]subEntry, total)
	for id, c := range counts {
		subs[id] = backing[:0:c]
		backing = backing[c:]
	}
	simulate(rows, cuLow, fileOf, record)

	// Sort each file's table by pc, line-0 markers first among equal pcs.
	n := 0
	for _, v := range subs {
		n += len(v)
	}
	// Files in gdb's order, each file's entries in its order: a stable sort
	// by pc then orders entries by (pc, file order, position in the file).
	byRank := make([]int32, len(subs))
	for i := range byRank {
		byRank[i] = int32(i)
	}
	slices.SortFunc(byRank, func(a, b int32) int { return cmp.Compare(rank[a], rank[b]) })
	all := make([]ref, 0, n)
	for _, id := range byRank {
		v := subs[id]
		slices.SortStableFunc(v, func(a, b subEntry) int {
			if a.pc == b.pc && (a.line == 0) != (b.line == 0) {
				if a.line == 0 {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.pc, b.pc)
		})
		for i := range v {
			all = append(all, ref{v[i].pc, id, int32(i)})
		}
	}
	all = radixSortRefs(all)
	// One answer per distinct pc: each file with entries there offers its
	// last one (or an earlier statement entry at the same pc); the first
	// file in gdb's order offering a real line wins, else the pc has none.
	t.entries = make([]lineEntry, 0, len(all))
	for i := 0; i < len(all); {
		pc := all[i].pc
		var pick *subEntry
		var pickSub int32
		for i < len(all) && all[i].pc == pc {
			j := i
			for j < len(all) && all[j].pc == pc && all[j].sub == all[i].sub {
				j++
			}
			v := subs[all[i].sub]
			best := int(all[j-1].idx)
			if !v[best].stmt {
				k := best
				for k > 0 && v[k-1].pc == v[k].pc && v[k-1].line != 0 && !v[k].stmt {
					k--
				}
				if v[k].stmt {
					best = k
				}
			}
			if pick == nil || (pick.line == 0 && v[best].line != 0) {
				pick, pickSub = &v[best], all[i].sub
			}
			i = j
		}
		t.entries = append(t.entries, lineEntry{pc: pc, line: pick.line, col: pick.col, file: pickSub})
	}
	return t
}

// simulate runs gdb's line state machine over rows, calling record with
// what each file's table gets (a line 0 entry is an end marker).
func simulate(rows []lineRow, cuLow uint64, fileOf func(uint32) int32, record func(id int32, pc uint64, line, col uint32, stmt bool)) {
	lastSub, lastLine, lastAddr := int32(-1), uint32(0), uint64(0)
	stmtAtAddr := false // some row at lastAddr was a statement
	recording := true
	first := true
	for _, r := range rows {
		if first {
			recording = !(r.addr == 0 && cuLow > 0)
			first = false
		}
		end := r.flags&rowEnd != 0
		stmt := r.flags&rowStmt != 0
		cur := fileOf(r.file)
		if recording && cur >= 0 && (r.flags&rowOpIndex == 0 || end) {
			if end {
				if lastSub >= 0 {
					record(lastSub, r.addr, 0, 0, true)
				}
			} else {
				changed := cur != lastSub
				ignore := (changed && r.addr == lastAddr && !stmt && stmtAtAddr) || r.line == 0
				if changed && !ignore && lastSub >= 0 {
					record(lastSub, r.addr, 0, 0, true)
				}
				if !ignore {
					if changed || r.line != lastLine || r.flags&rowDiscr == 0 {
						record(cur, r.addr, r.line, r.col, stmt)
					}
					lastSub, lastLine = cur, r.line
				}
			}
		}
		if r.addr != lastAddr {
			lastAddr, stmtAtAddr = r.addr, false
		}
		stmtAtAddr = stmtAtAddr || stmt
		if end {
			lastSub, lastLine, lastAddr, stmtAtAddr = -1, 0, 0, false
			first = true
		}
	}
}

// ref is an entry of one file's table (subs[sub][idx]) while folding.
type ref struct {
	pc  uint64
	sub int32
	idx int32
}

// radixSortRefs sorts by pc, stably: 11 bits of pc-min(pc) per pass.
func radixSortRefs(a []ref) []ref {
	if len(a) < 2 {
		return a
	}
	lo, hi := a[0].pc, a[0].pc
	for _, r := range a {
		lo, hi = min(lo, r.pc), max(hi, r.pc)
	}
	tmp := make([]ref, len(a))
	const bits = 11
	var count [1 << bits]int
	for shift := uint(0); shift < 64 && (hi-lo)>>shift != 0; shift += bits {
		clear(count[:])
		for _, r := range a {
			count[(r.pc-lo)>>shift&(1<<bits-1)]++
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, r := range a {
			d := (r.pc - lo) >> shift & (1<<bits - 1)
			tmp[count[d]] = r
			count[d]++
		}
		a, tmp = tmp, a
	}
	return a
}

// lookup returns the file, line and column at pc; ok is false when gdb would
// say there is no line information.
func (t *lineTable) lookup(pc uint64) (file string, line, col int, ok bool) {
	i := sort.Search(len(t.entries), func(i int) bool { return t.entries[i].pc > pc }) - 1
	if i < 0 || t.entries[i].line == 0 {
		return "", 0, 0, false
	}
	e := t.entries[i]
	return t.files[e.file], int(e.line), int(e.col), true
}

// fileName resolves a DW_AT_call_file / DW_AT_decl_file index.
func (t *lineTable) fileName(idx int64) string {
	h := t.header
	if h == nil || idx < 0 || idx >= int64(len(h.files)) || (idx == 0 && h.version < 5) {
		return ""
	}
	return h.files[idx]
}
