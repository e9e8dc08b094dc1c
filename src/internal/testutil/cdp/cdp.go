// Package cdp drives a headless Chromium for browser tests over the Chrome DevTools Protocol:
// it starts the browser on loopback, speaks the protocol's JSON messages over a WebSocket (a
// small client of RFC 6455, text frames only), and offers what the tests need: open a page,
// navigate, evaluate JavaScript, type, and take screenshots. Only tests import it.
package cdp

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Timeout bounds every wait of a test on the browser.
const Timeout = 30 * time.Second

// Find returns the path of Chromium, or "" when it is not installed.
func Find() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Browser is a running headless Chromium and the DevTools connection to it.
type Browser struct {
	cmd  *exec.Cmd
	conn *conn
}

// Launch starts headless Chromium with a fresh profile; the test is skipped when Chromium is
// not installed. The browser ends with the test.
func Launch(t *testing.T) *Browser {
	t.Helper()
	bin := Find()
	if bin == "" {
		t.Skip("chromium is not installed (Debian: apt-get install chromium); the browser test needs it")
	}
	args := []string{"--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "--window-size=1400,1000",
		"--user-data-dir=" + t.TempDir()}
	if os.Geteuid() == 0 {
		args = append(args, "--no-sandbox") // Chromium refuses to run as root with its sandbox
	}
	cmd := exec.Command(bin, append(args, "about:blank")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	b := &Browser{cmd: cmd}
	t.Cleanup(func() {
		if b.conn != nil {
			b.conn.call(context.Background(), "", "Browser.close", nil, nil)
			b.conn.close()
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	found := make(chan string, 1)
	var log strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			log.WriteString(line + "\n")
			logMu.Unlock()
			if u, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				found <- strings.TrimSpace(u)
			}
		}
		close(found)
	}()
	var ws string
	select {
	case u, ok := <-found:
		if !ok {
			logMu.Lock()
			defer logMu.Unlock()
			t.Fatalf("chromium exited before DevTools listened:\n%s", log.String())
		}
		ws = u
	case <-time.After(Timeout):
		t.Fatal("chromium did not start DevTools in time")
	}
	c, err := dial(ws)
	if err != nil {
		t.Fatalf("connect to DevTools at %s: %v", ws, err)
	}
	b.conn = c
	return b
}

// Page is one browser tab.
type Page struct {
	t       *testing.T
	b       *Browser
	session string
}

// NewPage opens a blank tab.
func (b *Browser) NewPage(t *testing.T) *Page {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var target struct{ TargetID string }
	if err := b.conn.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatal(err)
	}
	var att struct{ SessionID string }
	if err := b.conn.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		t.Fatal(err)
	}
	p := &Page{t: t, b: b, session: att.SessionID}
	p.Call("Page.enable", nil, nil)
	p.Call("Runtime.enable", nil, nil)
	return p
}

// Call sends one command to the page and decodes its result into out (which may be nil).
func (p *Page) Call(method string, params, out any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := p.b.conn.call(ctx, p.session, method, params, out); err != nil {
		p.t.Fatal(err)
	}
}

// waitLoad runs act and waits for the page's load event that follows it.
func (p *Page) waitLoad(what string, act func()) {
	p.t.Helper()
	ch := p.b.conn.subscribe(p.session, "Page.loadEventFired")
	defer p.b.conn.unsubscribe(ch)
	act()
	select {
	case <-ch:
	case <-time.After(Timeout):
		p.t.Fatalf("%s: the page did not load in time", what)
	}
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(u string) {
	p.t.Helper()
	p.waitLoad("navigate "+u, func() {
		var res struct{ ErrorText string }
		p.Call("Page.navigate", map[string]any{"url": u}, &res)
		if res.ErrorText != "" {
			p.t.Fatalf("navigate %s: %s", u, res.ErrorText)
		}
	})
}

// Eval evaluates a JavaScript expression in the page and decodes its value into out.
func (p *Page) Eval(expr string, out any) {
	p.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	p.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res)
	if res.ExceptionDetails != nil {
		p.t.Fatalf("evaluate %s: %s %s", expr, res.ExceptionDetails.Text, res.ExceptionDetails.Exception.Description)
	}
	if out != nil {
		if len(res.Result.Value) == 0 {
			p.t.Fatalf("evaluate %s: no value", expr)
		}
		if err := json.Unmarshal(res.Result.Value, out); err != nil {
			p.t.Fatalf("evaluate %s: %v (value %s)", expr, err, res.Result.Value)
		}
	}
}

// String evaluates an expression whose value is a string.
func (p *Page) String(expr string) string {
	p.t.Helper()
	var s string
	p.Eval(expr, &s)
	return s
}

// Strings evaluates an expression whose value is an array of strings.
func (p *Page) Strings(expr string) []string {
	p.t.Helper()
	var s []string
	p.Eval(expr, &s)
	return s
}

// Do evaluates a JavaScript expression that makes the page navigate (a click, a form
// submission) and waits for the new page to load.
func (p *Page) Do(expr string) {
	p.t.Helper()
	p.waitLoad(expr, func() { p.Eval(expr, nil) })
}

// Type focuses the element of a CSS selector, replaces its text by typing text as a user
// would, and presses Enter when enter is set (waiting for the page it loads).
func (p *Page) Type(selector, text string, enter bool) {
	p.t.Helper()
	p.Eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.focus(); e.select(); })()`, selector), nil)
	p.Call("Input.insertText", map[string]any{"text": text}, nil)
	if enter {
		p.waitLoad("press Enter in "+selector, func() {
			key := map[string]any{"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}
			key["type"] = "keyDown"
			p.Call("Input.dispatchKeyEvent", key, nil)
			key["type"] = "keyUp"
			p.Call("Input.dispatchKeyEvent", key, nil)
		})
	}
}

// Screenshot saves a PNG of the whole page (not only the viewport) as dir/name.png and
// returns its path.
func (p *Page) Screenshot(dir, name string) string {
	p.t.Helper()
	var m struct {
		CSSContentSize struct{ Width, Height float64 } `json:"cssContentSize"`
	}
	p.Call("Page.getLayoutMetrics", nil, &m)
	h := min(m.CSSContentSize.Height, 10000)
	var shot struct{ Data string }
	p.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": m.CSSContentSize.Width, "height": h, "scale": 1}}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// The DevTools connection: JSON-RPC over a WebSocket.

type message struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    any             `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type subscription struct {
	session, method string
	ch              chan json.RawMessage
}

type conn struct {
	nc net.Conn
	br *bufio.Reader

	wmu sync.Mutex // one frame written at a time

	mu      sync.Mutex
	next    int64
	pending map[int64]chan message
	subs    []*subscription
	err     error // why the connection ended
}

func dial(wsURL string) (*conn, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", u.Host, Timeout)
	if err != nil {
		return nil, err
	}
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
		u.RequestURI(), u.Host, key)
	nc.SetDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	resp.Body.Close()
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %s", resp.Status)
	}
	nc.SetDeadline(time.Time{})
	c := &conn{nc: nc, br: br, pending: map[int64]chan message{}}
	go c.readLoop()
	return c, nil
}

func (c *conn) close() { c.nc.Close() }

func (c *conn) call(ctx context.Context, session, method string, params, out any) error {
	if params == nil {
		params = map[string]any{}
	}
	ch := make(chan message, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, err)
	}
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	b, err := json.Marshal(message{ID: id, SessionID: session, Method: method, Params: params})
	if err != nil {
		return err
	}
	if err := c.writeFrame(0x1, b); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: connection closed: %v", method, c.err)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (c *conn) subscribe(session, method string) chan json.RawMessage {
	s := &subscription{session: session, method: method, ch: make(chan json.RawMessage, 16)}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	return s.ch
}

func (c *conn) unsubscribe(ch chan json.RawMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.subs {
		if s.ch == ch {
			c.subs = append(c.subs[:i:i], c.subs[i+1:]...)
			return
		}
	}
}

func (c *conn) readLoop() {
	var err error
	for {
		var b []byte
		if b, err = c.readMessage(); err != nil {
			break
		}
		var m struct {
			ID        int64           `json:"id"`
			SessionID string          `json:"sessionId"`
			Method    string          `json:"method"`
			Params    json.RawMessage `json:"params"`
		}
		if err = json.Unmarshal(b, &m); err != nil {
			break
		}
		c.mu.Lock()
		if m.ID != 0 {
			var full message
			json.Unmarshal(b, &full)
			if ch, ok := c.pending[m.ID]; ok {
				delete(c.pending, m.ID)
				ch <- full
			}
		} else {
			for _, s := range c.subs {
				if s.method == m.Method && s.session == m.SessionID {
					select {
					case s.ch <- m.Params:
					default: // a waiter reads one event; more are not needed
					}
				}
			}
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.err = err
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// The WebSocket frames (RFC 6455 section 5): a client masks what it sends; the server does not.

const maxMessage = 64 << 20 // a full-page screenshot is the largest message

func (c *conn) writeFrame(op byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	hdr := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	hdr = append(hdr, mask[:]...)
	masked := make([]byte, len(payload))
	for i, b := range payload {
		masked[i] = b ^ mask[i%4]
	}
	_, err := c.nc.Write(append(hdr, masked...))
	return err
}

// readMessage returns the next text message, answering pings and joining fragments.
func (c *conn) readMessage() ([]byte, error) {
	var msg []byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		fin, op := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		var mask []byte
		if h[1]&0x80 != 0 {
			mask = make([]byte, 4)
			if _, err := io.ReadFull(c.br, mask); err != nil {
				return nil, err
			}
		}
		if n > maxMessage || uint64(len(msg))+n > maxMessage {
			return nil, fmt.Errorf("websocket frame of %d bytes: over %d", n, maxMessage)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(c.br, payload); err != nil {
			return nil, err
		}
		if mask != nil {
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
		}
		switch op {
		case 0x0, 0x1, 0x2:
			msg = append(msg, payload...)
			if fin {
				return msg, nil
			}
		case 0x8:
			return nil, errors.New("websocket closed by the browser")
		case 0x9:
			if err := c.writeFrame(0xA, payload); err != nil {
				return nil, err
			}
		case 0xA:
		default:
			return nil, fmt.Errorf("websocket opcode %#x", op)
		}
	}
}
