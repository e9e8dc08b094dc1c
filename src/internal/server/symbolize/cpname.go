package symbolize

import (
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// This file is a parser for C++ names as gdb's cp-name-parser reads them:
// it turns "ns::Node<long int>" into a tree and prints the tree back the
// way the demangler prints (libiberty style: "ns::Node<long>", "char
// const*", "> >"). gdb uses it for two things this package copies:
//
//   - canonicalization (cp_canonicalize_string): names read from DWARF are
//     re-printed in canonical form; a name the grammar does not accept
//     ("<lambda(int)>", "[abi:cxx11]", "std::function<void (int)>") is kept
//     as it is;
//   - frame names (cp_remove_params): a function's print name without its
//     parameter list; when the name does not parse, gdb prints it whole,
//     parameters included.
//
// The grammar follows gdb's (a yacc grammar), written here as a
// recursive-descent parser; where the two could differ, gdb's behaviour on
// real names was checked with gdb itself (see cpname_test.go). Trees are
// built from the demangle package's AST nodes and printed with its
// printer, which follows libiberty's. Input is untrusted: its length, the
// nesting depth and the number of tokens are bounded, and a failed parse
// is an answer, never a panic.

// Limits on what the parser accepts.
const (
	maxCPNameInput  = 1 << 14 // bytes
	maxCPNameDepth  = 64      // nested templates, argument lists, declarators
	cpStepsPerToken = 64      // productions tried per token, at most
)

type cpTok int

const (
	tkEOF cpTok = iota
	tkError
	tkName
	tkInt   // an integer or character literal (lit holds it)
	tkFloat // a floating literal (lit holds it)
	tkPunct // a one-character token (c)
	tkColonColon
	tkArrow
	tkEllipsis
	tkLSH
	tkRSH
	tkLEQ
	tkGEQ
	tkEqual
	tkNotEqual
	tkAndAnd
	tkOrOr
	tkIncrement
	tkDecrement
	tkAssignModify // text holds the operator ("+=", "<<=")
	// keywords
	kwOperator
	kwNew
	kwDelete
	kwConst
	kwVolatile
	kwRestrict
	kwUnsigned
	kwSigned
	kwLong
	kwShort
	kwInt
	kwChar
	kwBool
	kwFloat
	kwDouble
	kwVoid
	kwWcharT
	kwTrue
	kwFalse
	kwSizeof
	kwStaticCast
	kwDynamicCast
	kwReinterpretCast
	kwOther // struct, class, union, enum, template and the demangler's
	// special prefixes ("vtable for "): tokens no rule here accepts
)

type cpToken struct {
	kind cpTok
	c    byte   // for tkPunct
	text string // names, assignment operators
	lit  *demangle.Literal
}

var cpKeywords = map[string]cpTok{
	"operator": kwOperator, "new": kwNew, "delete": kwDelete,
	"const": kwConst, "volatile": kwVolatile, "restrict": kwRestrict,
	"unsigned": kwUnsigned, "signed": kwSigned, "long": kwLong, "short": kwShort,
	"int": kwInt, "char": kwChar, "bool": kwBool, "float": kwFloat, "double": kwDouble,
	"void": kwVoid, "wchar_t": kwWcharT, "true": kwTrue, "false": kwFalse,
	"sizeof": kwSizeof, "static_cast": kwStaticCast, "dynamic_cast": kwDynamicCast,
	"reinterpret_cast": kwReinterpretCast,
	"struct":           kwOther, "class": kwOther, "union": kwOther, "enum": kwOther, "template": kwOther,
}

// The demangler's phrases that gdb's lexer turns into special tokens.
var cpSpecialPhrases = []string{
	"construction vtable for ", "covariant return thunk to ", "reference temporary for ",
	"typeinfo for ", "typeinfo fn for ", "typeinfo name for ", "virtual thunk to ",
	"global constructors keyed to ", "global destructors keyed to ", "vtable for ",
	"guard variable for ", "VTT for ", "non-virtual thunk to ",
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

// cpLex splits s into tokens as gdb's lexer does; an input it cannot lex
// ends with a tkError token.
func cpLex(s string) []cpToken {
	var out []cpToken
	punct := func(c byte) { out = append(out, cpToken{kind: tkPunct, c: c}) }
	for i := 0; i < len(s); {
		c := s[i]
		rest := s[i:]
		two := func(t string) bool { return strings.HasPrefix(rest, t) }
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
			continue
		case c == '\'':
			n, ok := cpCharLiteral(rest)
			if !ok {
				return append(out, cpToken{kind: tkError})
			}
			out = append(out, cpToken{kind: tkInt, lit: &demangle.Literal{Type: &demangle.BuiltinType{Name: "char"}, Val: rest[:n]}})
			i += n
			continue
		case c == '(':
			if two("(anonymous namespace)") {
				out = append(out, cpToken{kind: tkName, text: "(anonymous namespace)"})
				i += len("(anonymous namespace)")
				continue
			}
			punct(c)
		case c == ')' || c == ',':
			punct(c)
		case c == '.':
			if two("...") {
				out = append(out, cpToken{kind: tkEllipsis})
				i += 3
				continue
			}
			if len(rest) > 1 && isDigit(rest[1]) {
				n, t := cpNumber(rest)
				if t.kind == tkError {
					return append(out, t)
				}
				out = append(out, t)
				i += n
				continue
			}
			punct(c)
		case c == '-':
			switch {
			case two("-="):
				out = append(out, cpToken{kind: tkAssignModify, text: "-="})
				i += 2
				continue
			case two("--"):
				out = append(out, cpToken{kind: tkDecrement})
				i += 2
				continue
			case two("->"):
				out = append(out, cpToken{kind: tkArrow})
				i += 2
				continue
			case two("-in-"): // construction vtables
				return append(out, cpToken{kind: tkError})
			case len(rest) > 1 && isDigit(rest[1]):
				n, t := cpNumber(rest)
				if t.kind == tkError {
					return append(out, t)
				}
				out = append(out, t)
				i += n
				continue
			}
			punct(c)
		case isDigit(c):
			n, t := cpNumber(rest)
			if t.kind == tkError {
				return append(out, t)
			}
			out = append(out, t)
			i += n
			continue
		case c == '+' || c == '*' || c == '/' || c == '%' || c == '|' || c == '&' || c == '^' || c == '!' || c == '=':
			var k cpTok
			n := 1
			switch {
			case len(rest) > 1 && rest[1] == '=' && c != '!' && c != '=':
				k, n = tkAssignModify, 2
			case two("++"):
				k, n = tkIncrement, 2
			case two("||"):
				k, n = tkOrOr, 2
			case two("&&"):
				k, n = tkAndAnd, 2
			case two("!="):
				k, n = tkNotEqual, 2
			case two("=="):
				k, n = tkEqual, 2
			}
			if n == 1 {
				punct(c)
			} else {
				out = append(out, cpToken{kind: k, text: rest[:2]})
				i += 2
				continue
			}
		case c == '<' || c == '>':
			switch {
			case len(rest) > 2 && rest[1] == c && rest[2] == '=':
				out = append(out, cpToken{kind: tkAssignModify, text: rest[:3]})
				i += 3
				continue
			case len(rest) > 1 && rest[1] == '=':
				k := tkLEQ
				if c == '>' {
					k = tkGEQ
				}
				out = append(out, cpToken{kind: k})
				i += 2
				continue
			case len(rest) > 1 && rest[1] == c:
				k := tkLSH
				if c == '>' {
					k = tkRSH
				}
				out = append(out, cpToken{kind: k})
				i += 2
				continue
			}
			punct(c)
		case c == ':':
			if two("::") {
				out = append(out, cpToken{kind: tkColonColon})
				i += 2
				continue
			}
			punct(c)
		case c == '[' || c == ']' || c == '?' || c == '@' || c == '~' || c == '{' || c == '}':
			punct(c)
		case isIdentStart(c):
			n := 1
			for n < len(rest) && isIdentChar(rest[n]) {
				n++
			}
			word := rest[:n]
			for _, sp := range cpSpecialPhrases {
				if strings.HasPrefix(rest, sp) && strings.IndexByte(sp, ' ') == n {
					return append(out, cpToken{kind: tkError})
				}
			}
			if k, ok := cpKeywords[word]; ok {
				out = append(out, cpToken{kind: k, text: word})
			} else {
				out = append(out, cpToken{kind: tkName, text: word})
			}
			i += n
			continue
		default: // a string literal, a stray character, a non-ASCII byte
			return append(out, cpToken{kind: tkError})
		}
		i++
	}
	return append(out, cpToken{kind: tkEOF})
}

// cpCharLiteral returns the length of the character literal at the start
// of s ('a', '\n', '\012').
func cpCharLiteral(s string) (int, bool) {
	i := 1
	if i >= len(s) {
		return 0, false
	}
	switch s[i] {
	case '\'':
		return 0, false
	case '\\':
		i++
		if i >= len(s) {
			return 0, false
		}
		switch c := s[i]; {
		case c >= '0' && c <= '7':
			i++
			for k := 1; k < 3 && i < len(s) && s[i] >= '0' && s[i] <= '7'; k++ {
				i++
			}
		case c == '^':
			i++
			if i < len(s) && s[i] == '\\' {
				i++
			}
			i++
		default:
			i++
		}
	default:
		i++
	}
	if i >= len(s) || s[i] != '\'' {
		return 0, false
	}
	return i + 1, true
}

// cpNumber lexes the number at the start of s (maybe negative) the way
// gdb's lexer does: any letters and digits belong to it; integer suffixes
// (u, l, ll) choose the literal's type and are dropped from its text.
func cpNumber(s string) (int, cpToken) {
	p := 0
	if s[0] == '-' {
		p = 1
	}
	hex := false
	if p+1 < len(s) && s[p] == '0' {
		switch s[p+1] {
		case 'x', 'X':
			hex = true
			p += 2
		case 't', 'T', 'd', 'D':
			p += 2
		}
	}
	gotDot, gotE := false, false
	for ; p < len(s); p++ {
		c := s[p]
		switch {
		case !hex && !gotE && (c == 'e' || c == 'E'):
			gotDot, gotE = true, true
		case !gotDot && c == '.':
			gotDot = true
		case gotE && (s[p-1] == 'e' || s[p-1] == 'E') && (c == '-' || c == '+'):
		case isAlnum(c):
		default:
			goto done
		}
	}
done:
	text := s[:p]
	neg := false
	if text[0] == '-' {
		neg, text = true, text[1:]
	}
	if text == "" {
		return p, cpToken{kind: tkError}
	}
	if gotDot {
		typ := "double"
		switch c := text[len(text)-1]; {
		case c == 'f' || c == 'F':
			typ, text = "float", text[:len(text)-1]
		case c == 'l' || c == 'L':
			typ, text = "long double", text[:len(text)-1]
		case isDigit(c) || c == '.':
		default:
			return p, cpToken{kind: tkError}
		}
		return p, cpToken{kind: tkFloat, lit: &demangle.Literal{Type: &demangle.BuiltinType{Name: typ}, Val: text, Neg: neg}}
	}
	longs, unsigned := 0, false
	for len(text) > 0 {
		switch text[len(text)-1] {
		case 'l', 'L':
			longs++
		case 'u', 'U':
			unsigned = true
		default:
			goto typed
		}
		text = text[:len(text)-1]
	}
typed:
	typ := "int"
	switch {
	case longs == 1:
		typ = "long"
	case longs > 1:
		typ = "long long"
	}
	if unsigned {
		typ = "unsigned " + typ
	}
	return p, cpToken{kind: tkInt, lit: &demangle.Literal{Type: &demangle.BuiltinType{Name: typ}, Val: text, Neg: neg}}
}

// cpParser holds one parse. Productions return ok=false on a syntax error;
// callers that try alternatives restore pos.
type cpParser struct {
	toks  []cpToken
	pos   int
	depth int
	steps int // productions entered; bounds the work of backtracking
}

func (p *cpParser) peek() cpToken { return p.toks[p.pos] }

func (p *cpParser) peekAt(k int) cpToken {
	if p.pos+k < len(p.toks) {
		return p.toks[p.pos+k]
	}
	return p.toks[len(p.toks)-1]
}

func (p *cpParser) next() cpToken {
	t := p.toks[p.pos]
	if p.pos < len(p.toks)-1 {
		p.pos++
	}
	return t
}

func (p *cpParser) isPunct(c byte) bool { t := p.peek(); return t.kind == tkPunct && t.c == c }

func (p *cpParser) acceptPunct(c byte) bool {
	if p.isPunct(c) {
		p.next()
		return true
	}
	return false
}

func (p *cpParser) accept(k cpTok) bool {
	if p.peek().kind == k {
		p.next()
		return true
	}
	return false
}

// enter bounds the recursion; every production that can nest calls it.
func (p *cpParser) enter() bool {
	p.depth++
	p.steps++
	return p.depth <= maxCPNameDepth && p.steps <= cpStepsPerToken*len(p.toks)+1000
}

func (p *cpParser) leave() { p.depth-- }

// cpParse parses a whole name; ok is false when gdb's parser would reject
// it (or it is over the limits).
func cpParse(s string) (demangle.AST, bool) {
	if len(s) > maxCPNameInput {
		return nil, false
	}
	toks := cpLex(s)
	if toks[len(toks)-1].kind != tkEOF {
		return nil, false
	}
	p := &cpParser{toks: toks}
	return p.start(func(t cpToken) bool { return t.kind == tkEOF })
}

// start is the grammar's "start": a function (with its parameters) or a
// type. follow tells which token may come after it.
func (p *cpParser) start(follow func(cpToken) bool) (demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	save := p.pos
	if a, ok := p.function(follow); ok && follow(p.peek()) {
		return a, true
	}
	p.pos = save
	if a, ok := p.typ(); ok && follow(p.peek()) {
		return a, true
	}
	p.pos = save
	return nil, false
}

// nameKind tells what a qualified name ends in.
type nameKind int

const (
	nameFail  nameKind = iota
	namePlain          // a name or template: "a::b<int>"
	nameExt            // an operator or destructor: "a::operator()", "a::~a"
	nameConv           // a conversion operator: "a::operator int"
)

// function parses the grammar's "function": a function name with its
// argument list, a conversion operator, or a declaration with a return type.
func (p *cpParser) function(follow func(cpToken) bool) (demangle.AST, bool) {
	save := p.pos
	if t := p.peek(); t.kind == tkName || t.kind == tkColonColon || t.kind == kwOperator || (t.kind == tkPunct && t.c == '~') {
		name, kind := p.qualName()
		switch kind {
		case nameConv:
			c := name
			if !p.convPtrs(&c) {
				return nil, false
			}
			if p.isPunct('(') {
				ft, ok := p.functionArglist()
				if !ok {
					return nil, false
				}
				return p.startOpt(&demangle.Typed{Name: c, Type: ft}, follow)
			}
			return p.startOpt(c, follow)
		case nameExt:
			ft, ok := p.functionArglist()
			if !ok {
				return nil, false
			}
			return p.startOpt(&demangle.Typed{Name: name, Type: ft}, follow)
		}
	}
	p.pos = save
	ts, ok := p.typespec()
	if !ok {
		return nil, false
	}
	if p.isPunct('(') {
		s := p.pos
		if ft, ok := p.functionArglist(); ok {
			return p.startOpt(&demangle.Typed{Name: ts, Type: ft}, follow)
		}
		p.pos = s
	}
	return p.declarator(ts, follow)
}

// startOpt parses an optional "::start" after a function: a name local to
// it ("f(int)::x").
func (p *cpParser) startOpt(fn demangle.AST, follow func(cpToken) bool) (demangle.AST, bool) {
	if p.peek().kind != tkColonColon {
		return fn, true
	}
	p.next()
	local, ok := p.start(follow)
	if !ok {
		return nil, false
	}
	return &demangle.Qualified{Scope: fn, Name: local, LocalName: true}, true
}

// declarator parses what follows a return type: pointer operators and the
// declared name, with its argument list or not ("char const* f(int)").
func (p *cpParser) declarator(ret demangle.AST, follow func(cpToken) bool) (demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	for {
		op, ok := p.ptrOperator()
		if !ok {
			break
		}
		ret = op(ret)
	}
	t := p.peek()
	if !(t.kind == tkName || t.kind == tkColonColon || t.kind == kwOperator || (t.kind == tkPunct && t.c == '~')) {
		return nil, false
	}
	name, kind := p.qualName()
	if kind != namePlain && kind != nameExt {
		return nil, false
	}
	switch {
	case p.isPunct('('):
		ft, ok := p.functionArglist()
		if !ok {
			return nil, false
		}
		setReturn(ft, ret)
		typed := &demangle.Typed{Name: name, Type: ft}
		if p.peek().kind == tkColonColon {
			return p.startOpt(typed, follow)
		}
		return typed, true
	case p.isPunct('['):
		arr, ok := p.arrayIndicator()
		if !ok {
			return nil, false
		}
		return &demangle.Typed{Name: name, Type: arr(ret)}, true
	}
	return &demangle.Typed{Name: name, Type: ret}, true
}

func setReturn(ft demangle.AST, ret demangle.AST) {
	switch f := ft.(type) {
	case *demangle.FunctionType:
		f.Return = ret
	case *demangle.MethodWithQualifiers:
		setReturn(f.Method, ret)
	}
}

// qualName parses "[::] {scope ::} last" where last is a name, a
// template, an operator (maybe with template arguments), a destructor or a
// conversion operator. It stops before a "::" that a '*' follows (a
// pointer to member).
func (p *cpParser) qualName() (demangle.AST, nameKind) {
	if !p.enter() {
		return nil, nameFail
	}
	defer p.leave()
	p.accept(tkColonColon)
	// Each scope counts as a level of nesting: the printer's work grows
	// with the square of the depth.
	levels := 0
	defer func() { p.depth -= levels }()
	var scope demangle.AST
	join := func(a demangle.AST) demangle.AST {
		if scope == nil {
			return a
		}
		return &demangle.Qualified{Scope: scope, Name: a}
	}
	for {
		t := p.peek()
		switch {
		case t.kind == tkName:
			p.next()
			var a demangle.AST = &demangle.Name{Name: t.text}
			if p.isPunct('<') {
				args, ok := p.templateArgs()
				if !ok {
					return nil, nameFail
				}
				a = &demangle.Template{Name: a, Args: args}
			}
			if p.peek().kind == tkColonColon && p.continuesName(p.peekAt(1)) {
				p.next()
				scope = join(a)
				levels++
				if !p.enter() {
					return nil, nameFail
				}
				continue
			}
			return join(a), namePlain
		case t.kind == kwOperator:
			p.next()
			op, conv, ok := p.operatorName()
			if !ok {
				return nil, nameFail
			}
			if conv != nil {
				return join(&demangle.Cast{To: conv}), nameConv
			}
			var a demangle.AST = op
			if p.isPunct('<') {
				args, ok := p.templateArgs()
				if !ok {
					return nil, nameFail
				}
				a = &demangle.Template{Name: a, Args: args}
			}
			return join(a), nameExt
		case t.kind == tkPunct && t.c == '~':
			p.next()
			n := p.next()
			if n.kind != tkName {
				return nil, nameFail
			}
			return join(&demangle.Destructor{Name: &demangle.Name{Name: n.text}}), nameExt
		default:
			return nil, nameFail
		}
	}
}

// continuesName reports whether a qualified name goes on after "::" with t.
func (p *cpParser) continuesName(t cpToken) bool {
	return t.kind == tkName || t.kind == kwOperator || (t.kind == tkPunct && t.c == '~')
}

// operatorName parses what follows "operator": an operator symbol, or a
// type (a conversion operator).
func (p *cpParser) operatorName() (op *demangle.Operator, conv demangle.AST, ok bool) {
	t := p.peek()
	name := ""
	switch t.kind {
	case kwNew, kwDelete:
		p.next()
		name = t.text
		if p.isPunct('[') && p.peekAt(1).kind == tkPunct && p.peekAt(1).c == ']' {
			p.next()
			p.next()
			name += "[]"
		}
	case tkPunct:
		switch t.c {
		case '+', '-', '*', '/', '%', '^', '&', '|', '~', '!', '=', '<', '>', ',':
			p.next()
			name = string(t.c)
		case '(', '[':
			closeC := byte(')')
			if t.c == '[' {
				closeC = ']'
			}
			if n := p.peekAt(1); n.kind == tkPunct && n.c == closeC {
				p.next()
				p.next()
				name = string(t.c) + string(closeC)
			}
		}
	case tkAssignModify:
		p.next()
		name = t.text
	case tkLSH, tkRSH, tkEqual, tkNotEqual, tkLEQ, tkGEQ, tkAndAnd, tkOrOr, tkIncrement, tkDecrement:
		p.next()
		name = map[cpTok]string{tkLSH: "<<", tkRSH: ">>", tkEqual: "==", tkNotEqual: "!=", tkLEQ: "<=",
			tkGEQ: ">=", tkAndAnd: "&&", tkOrOr: "||", tkIncrement: "++", tkDecrement: "--"}[t.kind]
	case tkArrow:
		p.next()
		name = "->"
		if p.acceptPunct('*') {
			name = "->*"
		}
	}
	if name != "" {
		return &demangle.Operator{Name: name}, nil, true
	}
	if !p.startsTypespec(t) {
		return nil, nil, false
	}
	ts, ok := p.typespec()
	if !ok {
		return nil, nil, false
	}
	return nil, ts, true
}

// convPtrs applies pointer operators that follow a conversion operator
// ("operator char*") to its target type.
func (p *cpParser) convPtrs(name *demangle.AST) bool {
	for {
		op, ok := p.ptrOperator()
		if !ok {
			return true
		}
		switch n := (*name).(type) {
		case *demangle.Cast:
			n.To = op(n.To)
		case *demangle.Qualified:
			c, ok := n.Name.(*demangle.Cast)
			if !ok {
				return false
			}
			c.To = op(c.To)
		default:
			return false
		}
	}
}

func (p *cpParser) startsTypespec(t cpToken) bool {
	switch t.kind {
	case tkName, tkColonColon, kwConst, kwVolatile, kwRestrict, kwUnsigned, kwSigned, kwLong, kwShort,
		kwInt, kwChar, kwBool, kwFloat, kwDouble, kwVoid, kwWcharT:
		return true
	}
	return false
}

// qualifier bits, applied in gdb's order (const innermost).
const (
	qConst = 1 << iota
	qVolatile
	qRestrict
)

func (p *cpParser) qualifiers() int {
	q := 0
	for {
		switch p.peek().kind {
		case kwConst:
			q |= qConst
		case kwVolatile:
			q |= qVolatile
		case kwRestrict:
			q |= qRestrict
		default:
			return q
		}
		p.next()
	}
}

func qualifierList(q int) *demangle.Qualifiers {
	var list []demangle.AST
	for _, b := range []struct {
		bit  int
		name string
	}{{qConst, "const"}, {qVolatile, "volatile"}, {qRestrict, "restrict"}} {
		if q&b.bit != 0 {
			list = append(list, &demangle.Qualifier{Name: b.name})
		}
	}
	return &demangle.Qualifiers{Qualifiers: list}
}

// cvQualify adds qualifiers to a type, merging them with those it has.
func cvQualify(t demangle.AST, q int) demangle.AST {
	if q == 0 {
		return t
	}
	if tq, ok := t.(*demangle.TypeWithQualifiers); ok {
		have := 0
		if qs, ok := tq.Qualifiers.(*demangle.Qualifiers); ok {
			for _, a := range qs.Qualifiers {
				if n, ok := a.(*demangle.Qualifier); ok {
					switch n.Name {
					case "const":
						have |= qConst
					case "volatile":
						have |= qVolatile
					case "restrict":
						have |= qRestrict
					}
				}
			}
		}
		return &demangle.TypeWithQualifiers{Base: tq.Base, Qualifiers: qualifierList(have | q)}
	}
	return &demangle.TypeWithQualifiers{Base: t, Qualifiers: qualifierList(q)}
}

// typespec is the grammar's typespec_2: a builtin type or a name, with
// qualifiers before and after.
func (p *cpParser) typespec() (demangle.AST, bool) {
	q := p.qualifiers()
	var base demangle.AST
	t := p.peek()
	switch t.kind {
	case kwUnsigned, kwSigned, kwLong, kwShort, kwInt, kwChar, kwBool, kwFloat, kwDouble, kwVoid, kwWcharT:
		b, ok := p.builtin()
		if !ok {
			return nil, false
		}
		base = b
	case tkName, tkColonColon:
		n, kind := p.qualName()
		if kind != namePlain {
			return nil, false
		}
		base = n
	default:
		return nil, false
	}
	q |= p.qualifiers()
	return cvQualify(base, q), true
}

// builtin parses a builtin type; gdb accepts the int keywords in any
// order and prints the canonical spelling ("long unsigned int" ->
// "unsigned long").
func (p *cpParser) builtin() (demangle.AST, bool) {
	name := ""
	switch p.peek().kind {
	case kwFloat:
		name = "float"
	case kwDouble:
		name = "double"
	case kwBool:
		name = "bool"
	case kwWcharT:
		name = "wchar_t"
	case kwVoid:
		name = "void"
	case kwLong:
		if p.peekAt(1).kind == kwDouble {
			p.next()
			name = "long double"
		}
	}
	if name != "" {
		p.next()
		return &demangle.BuiltinType{Name: name}, true
	}
	const (
		iChar = 1 << iota
		iShort
		iLong
		iLLong
		iSigned
		iUnsigned
	)
	flags, n := 0, 0
	for ; ; n++ {
		var f int
		switch p.peek().kind {
		case kwInt:
		case kwSigned:
			f = iSigned
		case kwUnsigned:
			f = iUnsigned
		case kwChar:
			f = iChar
		case kwLong:
			f = iLong
		case kwShort:
			f = iShort
		default:
			goto done
		}
		p.next()
		if flags&f&iLong != 0 {
			f |= iLLong
		}
		flags |= f
	}
done:
	if n == 0 {
		return nil, false
	}
	switch flags {
	case iSigned | iChar:
		name = "signed char"
	case iChar:
		name = "char"
	case iUnsigned | iChar:
		name = "unsigned char"
	case 0, iSigned:
		name = "int"
	case iUnsigned:
		name = "unsigned int"
	case iLong, iSigned | iLong:
		name = "long"
	case iUnsigned | iLong:
		name = "unsigned long"
	case iShort, iSigned | iShort:
		name = "short"
	case iUnsigned | iShort:
		name = "unsigned short"
	case iLLong | iLong, iSigned | iLLong | iLong:
		name = "long long"
	case iUnsigned | iLLong | iLong:
		name = "unsigned long long"
	default:
		return nil, false
	}
	return &demangle.BuiltinType{Name: name}, true
}

// typ is the grammar's "type": a typespec and an optional abstract
// declarator.
func (p *cpParser) typ() (demangle.AST, bool) {
	ts, ok := p.typespec()
	if !ok {
		return nil, false
	}
	d, present, ok := p.abstractDeclarator()
	if !ok {
		return nil, false
	}
	if present {
		return d(ts), true
	}
	return ts, true
}

type typeOp func(demangle.AST) demangle.AST

// ptrOperator parses "*" with qualifiers, "&", "&&", or "Class::*" with
// qualifiers; it consumes nothing when none is there.
func (p *cpParser) ptrOperator() (typeOp, bool) {
	t := p.peek()
	switch {
	case t.kind == tkPunct && t.c == '*':
		p.next()
		q := p.qualifiers()
		return func(a demangle.AST) demangle.AST { return cvQualify(&demangle.PointerType{Base: a}, q) }, true
	case t.kind == tkPunct && t.c == '&':
		p.next()
		return func(a demangle.AST) demangle.AST { return &demangle.ReferenceType{Base: a} }, true
	case t.kind == tkAndAnd:
		p.next()
		return func(a demangle.AST) demangle.AST { return &demangle.RvalueReferenceType{Base: a} }, true
	case t.kind == tkName || t.kind == tkColonColon:
		save := p.pos
		class, ok := p.nestedName()
		if !ok || !p.acceptPunct('*') {
			p.pos = save
			return nil, false
		}
		q := p.qualifiers()
		return func(a demangle.AST) demangle.AST {
			return cvQualify(&demangle.PtrMem{Class: class, Member: a}, q)
		}, true
	}
	return nil, false
}

// nestedName parses "[::] scope :: {scope ::}" (names and templates each
// followed by "::") and returns the scope it names.
func (p *cpParser) nestedName() (demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	p.accept(tkColonColon)
	levels := 0
	defer func() { p.depth -= levels }()
	var scope demangle.AST
	for p.peek().kind == tkName {
		levels++
		if !p.enter() {
			return nil, false
		}
		t := p.next()
		var a demangle.AST = &demangle.Name{Name: t.text}
		if p.isPunct('<') {
			args, ok := p.templateArgs()
			if !ok {
				return nil, false
			}
			a = &demangle.Template{Name: a, Args: args}
		}
		if !p.accept(tkColonColon) {
			return nil, false
		}
		if scope == nil {
			scope = a
		} else {
			scope = &demangle.Qualified{Scope: scope, Name: a}
		}
	}
	return scope, scope != nil
}

// abstractDeclarator parses pointer operators, parenthesized declarators,
// argument lists and array bounds after a type ("(*)(int)", "* const*",
// "(&) [3]"); present is false when there is none.
func (p *cpParser) abstractDeclarator() (op typeOp, present, ok bool) {
	if !p.enter() {
		return nil, false, false
	}
	defer p.leave()
	if ptr, isPtr := p.ptrOperator(); isPtr {
		rest, more, ok := p.abstractDeclarator()
		if !ok {
			return nil, false, false
		}
		if !more {
			return ptr, true, true
		}
		return func(a demangle.AST) demangle.AST { return rest(ptr(a)) }, true, true
	}
	var inner typeOp
	switch {
	case p.isPunct('(') && p.startsAbstract(p.peekAt(1)):
		p.next()
		d, present, ok := p.abstractDeclarator()
		if !ok || !present || !p.acceptPunct(')') {
			return nil, false, false
		}
		inner = d
	case p.isPunct('['):
	default:
		return nil, false, true
	}
	var suffixes []typeOp
	for {
		switch {
		case p.isPunct('(') && inner != nil:
			ft, ok := p.functionArglist()
			if !ok {
				return nil, false, false
			}
			suffixes = append(suffixes, func(a demangle.AST) demangle.AST { setReturn(ft, a); return ft })
			continue
		case p.isPunct('['):
			arr, ok := p.arrayIndicator()
			if !ok {
				return nil, false, false
			}
			suffixes = append(suffixes, arr)
			continue
		}
		break
	}
	return func(a demangle.AST) demangle.AST {
		for i := len(suffixes) - 1; i >= 0; i-- {
			a = suffixes[i](a)
		}
		if inner != nil {
			a = inner(a)
		}
		return a
	}, true, true
}

// startsAbstract reports whether t, after '(', begins an abstract
// declarator rather than an argument list.
func (p *cpParser) startsAbstract(t cpToken) bool {
	if t.kind == tkAndAnd {
		return true
	}
	if t.kind == tkPunct && (t.c == '*' || t.c == '&' || t.c == '(' || t.c == '[') {
		return true
	}
	if t.kind == tkName || t.kind == tkColonColon {
		// "(A::*)": a pointer to member
		save := p.pos
		p.next()
		_, ok := p.nestedName()
		ok = ok && p.isPunct('*')
		p.pos = save
		return ok
	}
	return false
}

// arrayIndicator parses "[]" or "[N]".
func (p *cpParser) arrayIndicator() (typeOp, bool) {
	if !p.acceptPunct('[') {
		return nil, false
	}
	var dim demangle.AST = &demangle.Name{Name: ""}
	if t := p.peek(); t.kind == tkInt {
		p.next()
		dim = t.lit
	}
	if !p.acceptPunct(']') {
		return nil, false
	}
	return func(a demangle.AST) demangle.AST { return &demangle.ArrayType{Dimension: dim, Element: a} }, true
}

// functionArglist parses "(args) qualifiers", "(void)" or "()".
func (p *cpParser) functionArglist() (demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	if !p.acceptPunct('(') {
		return nil, false
	}
	var args []demangle.AST
	switch {
	case p.acceptPunct(')'):
	case p.peek().kind == kwVoid && p.peekAt(1).kind == tkPunct && p.peekAt(1).c == ')':
		p.next()
		p.next()
	default:
		for {
			a, ok := p.typ()
			if !ok {
				return nil, false
			}
			args = append(args, a)
			if p.acceptPunct(',') {
				if p.accept(tkEllipsis) {
					args = append(args, &demangle.BuiltinType{Name: "..."})
					if !p.acceptPunct(')') {
						return nil, false
					}
					break
				}
				continue
			}
			if !p.acceptPunct(')') {
				return nil, false
			}
			break
		}
	}
	ft := &demangle.FunctionType{Args: args}
	if q := p.qualifiers(); q != 0 {
		return &demangle.MethodWithQualifiers{Method: ft, Qualifiers: qualifierList(q)}, true
	}
	return ft, true
}

// templateArgs parses "<arg, ...>".
func (p *cpParser) templateArgs() ([]demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	if !p.acceptPunct('<') {
		return nil, false
	}
	var args []demangle.AST
	for {
		a, ok := p.templateArg()
		if !ok {
			return nil, false
		}
		args = append(args, a)
		if p.acceptPunct(',') {
			continue
		}
		if p.acceptPunct('>') {
			return args, true
		}
		return nil, false
	}
}

func templateArgEnd(t cpToken) bool { return t.kind == tkPunct && (t.c == ',' || t.c == '>') }

func (p *cpParser) templateArg() (demangle.AST, bool) {
	t := p.peek()
	switch {
	case t.kind == tkPunct && t.c == '&':
		return p.addressOf(templateArgEnd)
	case p.startsTypespec(t):
		return p.typ()
	}
	return p.exp(0)
}

// addressOf parses "&start" or "&(start)".
func (p *cpParser) addressOf(follow func(cpToken) bool) (demangle.AST, bool) {
	p.next() // '&'
	save := p.pos
	if p.acceptPunct('(') {
		if a, ok := p.start(func(t cpToken) bool { return t.kind == tkPunct && t.c == ')' }); ok {
			p.next()
			if follow(p.peek()) {
				return &demangle.Unary{Op: &demangle.Operator{Name: "&"}, Expr: a}, true
			}
		}
		p.pos = save
	}
	a, ok := p.start(follow)
	if !ok {
		return nil, false
	}
	return &demangle.Unary{Op: &demangle.Operator{Name: "&"}, Expr: a}, true
}

// Binary operators of expressions, by precedence (higher binds tighter),
// as gdb's grammar declares them. '>' is only accepted inside parentheses.
var cpBinaryPrec = map[string]int{
	"?": 1, "||": 2, "&&": 3, "|": 4, "^": 5, "&": 6, "==": 7, "!=": 7,
	"<": 8, "<=": 8, ">=": 8, "<<": 9, ">>": 9, "+": 11, "-": 11, "*": 12, "/": 12, "%": 12,
}

func (p *cpParser) binop() string {
	t := p.peek()
	switch t.kind {
	case tkPunct:
		switch t.c {
		case '?', '|', '^', '&', '<', '+', '-', '*', '/', '%':
			return string(t.c)
		}
	case tkOrOr:
		return "||"
	case tkAndAnd:
		return "&&"
	case tkEqual:
		return "=="
	case tkNotEqual:
		return "!="
	case tkLEQ:
		return "<="
	case tkGEQ:
		return ">="
	case tkLSH:
		return "<<"
	case tkRSH:
		return ">>"
	}
	return ""
}

// exp parses an expression whose operators bind at least as tightly as
// minPrec.
func (p *cpParser) exp(minPrec int) (demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	lhs, ok := p.unary()
	if !ok {
		return nil, false
	}
	for {
		op := p.binop()
		prec := cpBinaryPrec[op]
		if op == "" || prec < minPrec {
			return lhs, true
		}
		p.next()
		if op == "?" {
			mid, ok := p.exp(0)
			if !ok || !p.acceptPunct(':') {
				return nil, false
			}
			rhs, ok := p.exp(prec) // right associative
			if !ok {
				return nil, false
			}
			lhs = &demangle.Trinary{Op: &demangle.Operator{Name: "?"}, First: lhs, Second: mid, Third: rhs}
			continue
		}
		rhs, ok := p.exp(prec + 1)
		if !ok {
			return nil, false
		}
		lhs = &demangle.Binary{Op: &demangle.Operator{Name: op}, Left: lhs, Right: rhs}
	}
}

const cpUnaryPrec = 13

// unary parses literals, unary operators, casts, sizeof and parenthesized
// expressions.
func (p *cpParser) unary() (demangle.AST, bool) {
	if !p.enter() {
		return nil, false
	}
	defer p.leave()
	t := p.peek()
	var e demangle.AST
	switch {
	case t.kind == tkInt || t.kind == tkFloat:
		p.next()
		l := *t.lit
		e = &l
	case t.kind == kwTrue || t.kind == kwFalse:
		p.next()
		v := "0"
		if t.kind == kwTrue {
			v = "1"
		}
		e = &demangle.Literal{Type: &demangle.BuiltinType{Name: "bool"}, Val: v}
	case t.kind == tkPunct && (t.c == '-' || t.c == '!' || t.c == '~'):
		p.next()
		x, ok := p.exp(cpUnaryPrec)
		if !ok {
			return nil, false
		}
		e = &demangle.Unary{Op: &demangle.Operator{Name: string(t.c)}, Expr: x}
	case t.kind == kwSizeof:
		p.next()
		if !p.acceptPunct('(') {
			return nil, false
		}
		ty, ok := p.typ()
		if !ok || !p.acceptPunct(')') {
			return nil, false
		}
		e = &demangle.Unary{Op: &demangle.Operator{Name: "sizeof "}, Expr: ty, SizeofType: true}
	case t.kind == kwStaticCast || t.kind == kwDynamicCast || t.kind == kwReinterpretCast:
		p.next()
		if !p.acceptPunct('<') {
			return nil, false
		}
		ty, ok := p.typ()
		if !ok || !p.acceptPunct('>') || !p.acceptPunct('(') {
			return nil, false
		}
		x, ok := p.exp1()
		if !ok || !p.acceptPunct(')') {
			return nil, false
		}
		e = castTo(ty, x)
	case t.kind == tkPunct && t.c == '(':
		save := p.pos
		p.next()
		if ty, ok := p.typ(); ok && p.acceptPunct(')') && p.startsExp(p.peek()) {
			x, ok := p.exp(cpUnaryPrec)
			if !ok {
				return nil, false
			}
			e = castTo(ty, x)
			break
		}
		p.pos = save
		p.next()
		x, ok := p.exp1()
		if !ok || !p.acceptPunct(')') {
			return nil, false
		}
		e = x
	default:
		return nil, false
	}
	for {
		switch {
		case p.peek().kind == tkArrow && p.peekAt(1).kind == tkName:
			p.next()
			n := p.next()
			e = &demangle.Binary{Op: &demangle.Operator{Name: "->"}, Left: e, Right: &demangle.Name{Name: n.text}}
			continue
		case p.isPunct('.') && p.peekAt(1).kind == tkName:
			p.next()
			n := p.next()
			e = &demangle.Binary{Op: &demangle.Operator{Name: "."}, Left: e, Right: &demangle.Name{Name: n.text}}
			continue
		}
		return e, true
	}
}

// exp1 is an expression inside parentheses, where one '>' is allowed, or
// an address.
func (p *cpParser) exp1() (demangle.AST, bool) {
	if p.isPunct('&') {
		return p.addressOf(func(t cpToken) bool { return t.kind == tkPunct && t.c == ')' })
	}
	l, ok := p.exp(0)
	if !ok {
		return nil, false
	}
	if p.acceptPunct('>') {
		r, ok := p.exp(0)
		if !ok {
			return nil, false
		}
		return &demangle.Binary{Op: &demangle.Operator{Name: ">"}, Left: l, Right: r}, true
	}
	return l, true
}

func (p *cpParser) startsExp(t cpToken) bool {
	switch t.kind {
	case tkInt, tkFloat, kwTrue, kwFalse, kwSizeof, kwStaticCast, kwDynamicCast, kwReinterpretCast:
		return true
	case tkPunct:
		return t.c == '(' || t.c == '-' || t.c == '!' || t.c == '~'
	}
	return false
}

// castTo gives a literal the cast's type ("(long)5" is "5l"), as gdb does,
// and wraps anything else in a cast.
func castTo(ty, x demangle.AST) demangle.AST {
	if l, ok := x.(*demangle.Literal); ok {
		return &demangle.Literal{Type: ty, Val: l.Val, Neg: l.Neg}
	}
	return &demangle.Unary{Op: &demangle.Cast{To: ty}, Expr: x}
}

// cpPrint prints a tree, at most demangleLimit long (substitutions in a
// mangled name can make its tree print exponentially long); a printer
// failure is a failed parse.
func cpPrint(a demangle.AST) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	return demangle.ASTToString(a, demangleLimit), true
}

// cpCanonicalize returns the canonical spelling of a C++ name, or the name
// itself when gdb's parser would not accept it (cp_canonicalize_string).
func cpCanonicalize(s string) string {
	if cpAlreadyCanonical(s) {
		return s
	}
	a, ok := cpParse(s)
	if !ok {
		return s
	}
	if out, ok := cpPrint(a); ok {
		return out
	}
	return s
}

// cpAlreadyCanonical is gdb's shortcut: a plain identifier is canonical,
// except "unsigned" and "signed".
func cpAlreadyCanonical(s string) bool {
	if s == "" || !isIdentStart(s[0]) || s == "unsigned" || s == "signed" {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

// cpRemoveParams returns a function's name without its parameter list
// (and method qualifiers), canonical, as gdb names frames; ok is false
// when the name does not parse as a function with parameters.
func cpRemoveParams(s string) (string, bool) {
	a, ok := cpParse(s)
	if !ok {
		return "", false
	}
	t, ok := a.(*demangle.Typed)
	if !ok {
		return "", false
	}
	return cpPrint(t.Name)
}
