package symbolize

import (
	"debug/dwarf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// This file builds x86-64 programs whose DWARF is written here, DIE by DIE
// (names, scopes, parameter types that compilers rarely emit), runs them
// under gdb until they crash, and compares gdb's frame names with ours.
// Each function of the program calls the next; the last one faults.

// sDIE is one DIE of a synthetic unit.
type sDIE struct {
	tag    dwarf.Tag
	attrs  []sAttr
	kids   []*sDIE
	fn     bool  // a function with code (low_pc/high_pc are added)
	covers *sDIE // an inlined call: the code of that function past its first instruction
	index  int   // its place in the call chain
	label  string
}

type sAttr struct {
	at   dwarf.Attr
	form uint8
	val  any // string, *sDIE, int64, or nil (flag_present)
}

// DWARF forms used (die.go has the others).
const formPresent = formFlagPresent

func die(tag dwarf.Tag, attrs ...sAttr) *sDIE { return &sDIE{tag: tag, attrs: attrs} }

func (d *sDIE) with(kids ...*sDIE) *sDIE { d.kids = append(d.kids, kids...); return d }

// code marks d as a function with code in the call chain.
func (d *sDIE) code() *sDIE { d.fn = true; return d }

func aName(s string) sAttr                { return sAttr{dwarf.AttrName, formString, s} }
func aLinkage(s string) sAttr             { return sAttr{dwarf.AttrLinkageName, formString, s} }
func aRef(at dwarf.Attr, d *sDIE) sAttr   { return sAttr{at, formRef4, d} }
func aType(d *sDIE) sAttr                 { return aRef(dwarf.AttrType, d) }
func aFlag(at dwarf.Attr) sAttr           { return sAttr{at, formPresent, nil} }
func aData1(at dwarf.Attr, v int64) sAttr { return sAttr{at, formData1, v} }
func aSdata(at dwarf.Attr, v int64) sAttr { return sAttr{at, formSdata, v} }

func baseType(name string, size, enc int64) *sDIE {
	return die(dwarf.TagBaseType, aName(name), aData1(dwarf.AttrByteSize, size), aData1(dwarf.AttrEncoding, enc))
}

func param(t *sDIE, extra ...sAttr) *sDIE {
	return die(dwarf.TagFormalParameter, append([]sAttr{aType(t)}, extra...)...)
}

// synthAsm writes the program: code for the functions among dies (in
// tree order) and a C++ unit holding dies.
func synthAsm(dies []*sDIE) string {
	var fns []*sDIE
	n := 0
	var walk func(d *sDIE)
	walk = func(d *sDIE) {
		d.label = fmt.Sprintf(".Ld%d", n)
		n++
		if d.fn {
			d.index = len(fns)
			fns = append(fns, d)
		}
		for _, k := range d.kids {
			walk(k)
		}
	}
	for _, d := range dies {
		walk(d)
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("\t.text\n\t.globl _start\n_start:\n\tcall f0\n\tmov $60, %%eax\n\txor %%edi, %%edi\n\tsyscall")
	for i := range fns {
		w("\t.p2align 4\nf%d:\n\t.cfi_startproc\n\tsub $8, %%rsp\n\t.cfi_def_cfa_offset 16", i)
		if i+1 < len(fns) {
			w("\tcall f%d", i+1)
		} else {
			w("\tmovl $0, 0")
		}
		w("\tadd $8, %%rsp\n\t.cfi_def_cfa_offset 8\n\tret\n\t.cfi_endproc\nf%d_end:", i)
	}
	// One abbreviation per DIE.
	w("\t.section .debug_abbrev,\"\",@progbits\n.Labbrev:")
	w("\t.uleb128 1\n\t.uleb128 0x11\n\t.byte 1\n\t.uleb128 0x13\n\t.uleb128 0x0b\n\t.uleb128 0x03\n\t.uleb128 0x08" +
		"\n\t.uleb128 0x11\n\t.uleb128 0x01\n\t.uleb128 0x12\n\t.uleb128 0x07\n\t.byte 0, 0")
	code := 2
	var abbrevs func(d *sDIE)
	abbrevs = func(d *sDIE) {
		children := 0
		if len(d.kids) > 0 {
			children = 1
		}
		w("\t.uleb128 %d\n\t.uleb128 %#x\n\t.byte %d", code, uint32(d.tag), children)
		code++
		for _, a := range d.attrs {
			w("\t.uleb128 %#x\n\t.uleb128 %#x", uint32(a.at), a.form)
		}
		if d.fn || d.covers != nil {
			w("\t.uleb128 0x11\n\t.uleb128 %#x\n\t.uleb128 0x12\n\t.uleb128 %#x", formAddr, formData8)
		}
		w("\t.byte 0, 0")
		for _, k := range d.kids {
			abbrevs(k)
		}
	}
	for _, d := range dies {
		abbrevs(d)
	}
	w("\t.byte 0")
	w("\t.section .debug_info,\"\",@progbits\n.Lcu:\n\t.long .Lcu_end - .Lcu_start\n.Lcu_start:")
	w("\t.value 4\n\t.long .Labbrev\n\t.byte 8")
	w("\t.uleb128 1\n\t.byte 0x04\n\t.string \"synth.cc\"\n\t.quad f0\n\t.quad f%d_end - f0", len(fns)-1)
	code = 2
	var emit func(d *sDIE)
	emit = func(d *sDIE) {
		w("%s:\n\t.uleb128 %d", d.label, code)
		code++
		for _, a := range d.attrs {
			switch v := a.val.(type) {
			case string:
				w("\t.string %q", v)
			case *sDIE:
				w("\t.long %s - .Lcu", v.label)
			case int64:
				if a.form == formSdata {
					w("\t.sleb128 %d", v)
				} else {
					w("\t.byte %d", v)
				}
			}
		}
		switch c := d.covers; {
		case c != nil:
			// gdb finds no inlined block that starts with its function
			// when the unit has no non-contiguous ranges (no address map)
			w("\t.quad f%d + 4\n\t.quad f%d_end - f%d - 4", c.index, c.index, c.index)
		case d.fn:
			w("\t.quad f%d\n\t.quad f%d_end - f%d", d.index, d.index, d.index)
		}
		for _, k := range d.kids {
			emit(k)
		}
		if len(d.kids) > 0 {
			w("\t.byte 0")
		}
	}
	for _, d := range dies {
		emit(d)
	}
	w("\t.byte 0\n.Lcu_end:")
	return b.String()
}

// checkSynth builds the program for dies, checks our innermost names
// along the call chain against want (one entry per function with code,
// in tree order: callers first) and, when gdb can run it,
// gdb's frames against ours.
func checkSynth(t *testing.T, dies []*sDIE, want []string) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skip("builds x86-64 programs")
	}
	needTool(t, "gcc")
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "synth.s"), filepath.Join(dir, "synth")
	require.NoError(t, os.WriteFile(src, []byte(synthAsm(dies)), 0o600))
	run(t, dir, "gcc", "-nostdlib", "-static", "-o", bin, src)
	f, err := Open(bin)
	require.NoError(t, err)
	var got []string
	for i := range want {
		// the call of f_i to f_i+1 (or the fault) is at f_i+4
		pc := linkAddress(t, bin, fmt.Sprintf("f%d", i)) + 4
		frames, err := f.Lookup(pc)
		require.NoError(t, err)
		var names []string
		for _, fr := range frames {
			names = append(names, fr.Function)
		}
		got = append(got, strings.Join(names, " < "))
	}
	assert.Equal(t, want, got)
	gdb, err := exec.LookPath("gdb")
	if err != nil {
		return
	}
	frames, _ := askGDBFrames(t, gdb, []string{"-ex", "file " + bin}, `gdb.execute("run")`)
	n := compareGDBFrames(t, f, frames, 0)
	// and _start, from the symbol table
	assert.Equal(t, len(want)+1, n, "frame chains that agree with gdb")
}

// TestGDBNameTable names one top-level function after each entry and
// checks the frame name gdb gives it: the DW_AT_name canonicalized, then
// with gdb's "(void)" for no parameters canonicalized again, then without
// parameters when that parses.
func TestGDBNameTable(t *testing.T) {
	var dies []*sDIE
	var want []string
	for _, tc := range cpNameTable {
		dies = append(dies, die(dwarf.TagSubprogram, aName(tc.in)).code())
		want = append(want, tc.frame)
		// the same computation without DWARF
		phys := cpCanonicalize(cpCanonicalize(tc.in) + "(void)")
		assert.Equal(t, tc.frame, gdbFrameName(phys), tc.in)
	}
	checkSynth(t, dies, want)
}

// TestGDBNamesSynthetic builds the scopes and types gdb composes names
// from. Most functions take a last parameter of an unnamed struct type:
// gdb's parser rejects "struct {...}", so the frame name keeps the whole
// parameter list as gdb printed it.
func TestGDBNamesSynthetic(t *testing.T) {
	long := baseType("long int", 8, 5)
	ulong := baseType("long unsigned int", 8, 7)
	char := baseType("char", 1, 6)
	boolean := baseType("bool", 1, 2)
	integer := baseType("int", 4, 5)
	anon := die(dwarf.TagStructType, aData1(dwarf.AttrByteSize, 1))
	anonClass := die(dwarf.TagClassType, aData1(dwarf.AttrByteSize, 1))
	anonUnion := die(dwarf.TagUnionType, aData1(dwarf.AttrByteSize, 1))
	anonEnum := die(dwarf.TagEnumerationType, aData1(dwarf.AttrByteSize, 4), aType(integer))
	gccAnon := die(dwarf.TagStructType, aName("._0"), aData1(dwarf.AttrByteSize, 1))
	cchar := die(dwarf.TagConstType, aType(char))
	pcchar := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(cchar))
	cpcchar := die(dwarf.TagConstType, aType(pcchar))
	vlong := die(dwarf.TagVolatileType, aType(long))
	rlong := die(dwarf.TagReferenceType, aData1(dwarf.AttrByteSize, 8), aType(vlong))
	rrlong := die(tagRvalueReferenceType, aData1(dwarf.AttrByteSize, 8), aType(long))
	fnType := die(dwarf.TagSubroutineType, aFlag(dwarf.AttrPrototyped), aType(integer)).with(param(long), param(pcchar))
	pfn := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(fnType))
	voidFn := die(dwarf.TagSubroutineType, aFlag(dwarf.AttrPrototyped))
	pvoidFn := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(voidFn))
	arr := die(dwarf.TagArrayType, aType(integer)).with(die(dwarf.TagSubrangeType, aType(ulong), aData1(dwarf.AttrUpperBound, 2)))
	refArr := die(dwarf.TagReferenceType, aData1(dwarf.AttrByteSize, 8), aType(arr))
	nullptrT := die(dwarf.TagUnspecifiedType, aName("decltype(nullptr)"))
	pp := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(pcchar))

	node := die(dwarf.TagStructType, aName("Node<long int>"), aData1(dwarf.AttrByteSize, 8)).with(
		die(dwarf.TagTemplateTypeParameter, aName("T"), aType(long)))
	pnode := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(node))
	anonNS := die(dwarf.TagNamespace).with(node)

	// namespace n { class C<long int> { m(...) const; g(...) }; typedef
	// unsigned long size_type; enum class E; }, a member pointer to C.
	cls := die(dwarf.TagClassType, aName("C<long int>"), aData1(dwarf.AttrByteSize, 8))
	ccls := die(dwarf.TagConstType, aType(cls))
	pccls := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(ccls))
	pcls := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(cls))
	mDecl := die(dwarf.TagSubprogram, aName("m"), aFlag(dwarf.AttrDeclaration)).with(
		param(pccls, aFlag(dwarf.AttrArtificial)), param(long), param(anon))
	gDecl := die(dwarf.TagSubprogram, aName("g"), aFlag(dwarf.AttrDeclaration)).with(
		param(pcls, aFlag(dwarf.AttrArtificial)), param(anon))
	cls.with(mDecl, gDecl)
	sizeType := die(dwarf.TagTypedef, aName("size_type"), aType(ulong))
	enumE := die(dwarf.TagEnumerationType, aName("E"), aFlag(attrEnumClass), aData1(dwarf.AttrByteSize, 4), aType(integer))
	ns := die(dwarf.TagNamespace, aName("n")).with(cls, sizeType, enumE)
	memPtr := die(dwarf.TagPtrToMemberType, aType(long), aRef(dwarf.AttrContainingType, cls))
	methodType := die(dwarf.TagSubroutineType, aFlag(dwarf.AttrPrototyped)).with(
		param(pcls, aFlag(dwarf.AttrArtificial)), param(integer))
	methodPtr := die(dwarf.TagPtrToMemberType, aType(methodType), aRef(dwarf.AttrContainingType, cls))

	// namespace ns { void outer() { struct L { static void meth(); }; } }
	local := die(dwarf.TagStructType, aName("L"), aData1(dwarf.AttrByteSize, 1))
	methDecl := die(dwarf.TagSubprogram, aName("meth"), aFlag(dwarf.AttrDeclaration))
	local.with(methDecl)
	outer := die(dwarf.TagSubprogram, aName("outer")).code().with(local)
	ns2 := die(dwarf.TagNamespace, aName("ns")).with(outer)

	// an inlined call of ns3::inl<char>() from "host"; gdb ignores one
	// without its call site (in "host2"), but not the call inside that
	inlAbstract := die(dwarf.TagSubprogram, aName("inl<char>"), aData1(dwarf.AttrInline, 3))
	ns3 := die(dwarf.TagNamespace, aName("ns3")).with(inlAbstract)
	host := die(dwarf.TagSubprogram, aName("host")).code()
	call := die(dwarf.TagInlinedSubroutine, aRef(dwarf.AttrAbstractOrigin, inlAbstract),
		aData1(dwarf.AttrCallFile, 1), aData1(dwarf.AttrCallLine, 7))
	call.covers = host
	host.with(call)
	host2 := die(dwarf.TagSubprogram, aName("host2")).code()
	noSite := die(dwarf.TagInlinedSubroutine, aRef(dwarf.AttrAbstractOrigin, inlAbstract), aData1(dwarf.AttrCallLine, 7))
	noSite.covers = host2
	inner := die(dwarf.TagInlinedSubroutine, aRef(dwarf.AttrAbstractOrigin, gDecl),
		aData1(dwarf.AttrCallFile, 0), aData1(dwarf.AttrCallLine, 0))
	inner.covers = host2
	host2.with(noSite.with(inner))

	// a struct named without its template arguments, which gdb adds from
	// its children, and the same for a function
	tmpl := die(dwarf.TagStructType, aName("S"), aData1(dwarf.AttrByteSize, 1)).with(
		die(dwarf.TagTemplateTypeParameter, aName("T"), aType(long)),
		die(dwarf.TagTemplateValueParameter, aName("N"), aType(integer), aSdata(dwarf.AttrConstValue, -5)))
	ptmpl := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8), aType(tmpl))

	dies := []*sDIE{
		long, ulong, char, boolean, integer, anon, anonClass, anonUnion, anonEnum, gccAnon, cchar, pcchar, cpcchar,
		vlong, rlong, rrlong, fnType, pfn, voidFn, pvoidFn, arr, refArr, nullptrT, pp, pnode, anonNS, ccls, pccls,
		pcls, ns, memPtr, methodType, methodPtr, ns2, ns3, tmpl, ptmpl,
		// definitions
		die(dwarf.TagSubprogram, aRef(dwarf.AttrSpecification, mDecl)).code().with(
			param(pccls, aFlag(dwarf.AttrArtificial), aName("this")), param(long), param(anon)),
		die(dwarf.TagSubprogram, aRef(dwarf.AttrSpecification, gDecl)).code().with(
			param(pcls, aFlag(dwarf.AttrArtificial), aName("this")), param(anon)),
		die(dwarf.TagSubprogram, aRef(dwarf.AttrSpecification, methDecl)).code(),
		die(dwarf.TagSubprogram, aName("types")).code().with(
			param(cpcchar), param(rlong), param(rrlong), param(pfn), param(pvoidFn), param(refArr),
			param(nullptrT), param(pp), param(pnode), param(sizeType), param(enumE), param(memPtr),
			param(methodPtr), param(anonClass), param(anonUnion), param(anonEnum), param(gccAnon),
			param(ptmpl), param(anon), die(dwarf.TagUnspecifiedParameters)),
		die(dwarf.TagSubprogram, aName("canon")).code().with(
			param(cpcchar), param(rlong), param(rrlong), param(pfn), param(refArr), param(pnode), param(sizeType),
			param(enumE), param(memPtr), param(methodPtr), param(ulong), die(dwarf.TagUnspecifiedParameters)),
		die(dwarf.TagSubprogram, aName("tf")).code().with(
			die(dwarf.TagTemplateTypeParameter, aName("T"), aType(ulong)),
			die(dwarf.TagTemplateValueParameter, aName("C"), aType(char), aSdata(dwarf.AttrConstValue, 'a')),
			die(dwarf.TagTemplateValueParameter, aName("B"), aType(boolean), aSdata(dwarf.AttrConstValue, 1)),
			param(anon)),
		host,
		host2,
		die(dwarf.TagSubprogram, aName("name"), aLinkage("_Z4nameB5cxx11i")).code(),
		die(dwarf.TagSubprogram, aName("f"), aLinkage("_Z1fIiEvT_")).code(),
		die(dwarf.TagSubprogram, aName("c_name"), aLinkage("c_name_asm")).code(),
	}
	checkSynth(t, dies, []string{
		"ns::outer",
		"n::C<long>::m(long, struct {...}) const",
		"n::C<long>::g(struct {...})",
		"L::meth",
		"types(const char *, volatile long &, long &&, int (*)(long, const char *), void (*)(void), int (&)[3], " +
			"decltype(nullptr), const char **, (anonymous namespace)::Node<long> *, n::size_type, n::E, long n::C<long>::*, " +
			"void (n::C<long>::*)(n::C<long> * const, int), class {...}, union {...}, enum {...}, struct {...}, " +
			"S<long, -5> *, struct {...}, ...)",
		"canon",
		"tf<unsigned long, 'a', 1>(struct {...})",
		"ns3::inl<char> < host",
		"n::C<long>::g < host2",
		"name[abi:cxx11](int)",
		"f<int>",
		"c_name_asm",
	})
}

// TestHostileCxxNames: reference cycles, self-referential types, deep
// scopes and huge names end in bounded names, without panics.
func TestHostileCxxNames(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("builds x86-64 programs")
	}
	needTool(t, "gcc")
	selfSpec := die(dwarf.TagSubprogram, aName("loop")).code()
	selfSpec.attrs = append(selfSpec.attrs, aRef(dwarf.AttrSpecification, selfSpec))
	selfPtr := die(dwarf.TagPointerType, aData1(dwarf.AttrByteSize, 8))
	selfPtr.attrs = append(selfPtr.attrs, aType(selfPtr))
	selfConst := die(dwarf.TagConstType)
	selfConst.attrs = append(selfConst.attrs, aType(selfConst))
	selfClass := die(dwarf.TagClassType, aName("Self"))
	selfClass.attrs = append(selfClass.attrs, aRef(dwarf.AttrSpecification, selfClass))
	member := die(dwarf.TagSubprogram, aName("m"), aFlag(dwarf.AttrDeclaration))
	selfClass.with(member)
	// 80 nested namespaces and classes, a method at the bottom
	deep := die(dwarf.TagSubprogram, aName("deep"), aFlag(dwarf.AttrDeclaration))
	scope := deep
	for i := 0; i < 80; i++ {
		tag := dwarf.TagNamespace
		if i%2 == 0 {
			tag = dwarf.TagStructType
		}
		scope = die(tag, aName(fmt.Sprintf("s%d<int>", i))).with(scope)
	}
	huge := strings.Repeat("x<", 20000) + strings.Repeat(">", 20000)
	dies := []*sDIE{selfPtr, selfConst, selfClass, scope,
		selfSpec,
		die(dwarf.TagSubprogram, aName("params")).code().with(param(selfPtr), param(selfConst), param(selfClass), param(die(dwarf.TagStructType))),
		die(dwarf.TagSubprogram, aRef(dwarf.AttrSpecification, member)).code().with(param(selfPtr, aFlag(dwarf.AttrArtificial))),
		die(dwarf.TagSubprogram, aRef(dwarf.AttrSpecification, deep)).code(),
		die(dwarf.TagSubprogram, aName(huge)).code(),
		die(dwarf.TagSubprogram, aName("bad"), aLinkage("_Z"+strings.Repeat("N1a", 3000))).code(),
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "synth.s"), filepath.Join(dir, "synth")
	require.NoError(t, os.WriteFile(src, []byte(synthAsm(dies)), 0o600))
	run(t, dir, "gcc", "-nostdlib", "-static", "-o", bin, src)
	f, err := Open(bin)
	require.NoError(t, err)
	for i := 0; i < 6; i++ {
		frames, err := f.Lookup(linkAddress(t, bin, fmt.Sprintf("f%d", i)) + 4)
		require.NoError(t, err)
		for _, fr := range frames {
			assert.LessOrEqual(t, len(fr.Function), 2*maxCxxNameLen, "f%d", i)
			t.Logf("f%d: %.200s", i, fr.Function)
		}
	}
}
