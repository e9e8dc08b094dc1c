package worker

// Trace is the analysed form of one core, stored as JSON with the core and served by the API.
type Trace struct {
	Version        int      `json:"version"`
	Arch           string   `json:"arch"`
	Signal         string   `json:"signal"`
	SignalNumber   int      `json:"signal_number"`
	SignalCode     int      `json:"signal_code"`
	FaultAddress   string   `json:"fault_address,omitempty"`
	CrashingThread int      `json:"crashing_thread"` // tid
	Process        string   `json:"process"`
	Cmdline        []string `json:"cmdline"`
	Metadata       Metadata `json:"metadata"`
	Logs           []string `json:"logs,omitempty"`
	CaptureLogs    []string `json:"capture_logs,omitempty"`
	Threads        []Thread `json:"threads"`
	Modules        []Module `json:"modules"`
	Fingerprint    []int    `json:"fingerprint_frames"` // indexes into the crashing thread's frames
	FingerprintKey []string `json:"fingerprint_keys"`
	MissingSymbols []string `json:"missing_symbols,omitempty"` // build-ids
	Notes          []string `json:"notes,omitempty"`           // what the analysis could not do
}

// Metadata comes from the core's Memfault note and the upload's manifest.
type Metadata struct {
	DeviceSerial    string `json:"device_serial"`
	HardwareVersion string `json:"hardware_version"`
	SoftwareType    string `json:"software_type"`
	SoftwareVersion string `json:"software_version"`
	SDKVersion      string `json:"sdk_version,omitempty"`
	CapturedTime    int64  `json:"captured_time,omitempty"`
	CaptureStrategy string `json:"capture_strategy,omitempty"`
}

// Thread is one thread's registers and frames.
type Thread struct {
	TID       int        `json:"tid"`
	Crashed   bool       `json:"crashed"`
	Registers []Register `json:"registers"`
	Frames    []Frame    `json:"frames"`
	Stop      string     `json:"stop"` // why unwinding ended
}

// Register is one register of the thread's first frame.
type Register struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Frame is one frame; inlined calls are frames of their own that share the PC of the frame
// that contains them.
type Frame struct {
	PC       string `json:"pc"`
	Module   string `json:"module,omitempty"`
	BuildID  string `json:"build_id,omitempty"`
	Offset   string `json:"offset,omitempty"` // link-time address in the module
	Function string `json:"function,omitempty"`
	Mangled  string `json:"mangled,omitempty"`
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Inlined  bool   `json:"inlined,omitempty"`
	// Method says how the frame was found: context, cfi, arm_exidx, prologue, frame_pointer,
	// sigcontext, frameless, or tailcall (not on the stack: a function that left by a tail
	// call, known from DWARF call-site information; its PC is the return address of that jump,
	// and it stays out of the fingerprint).
	Method  string `json:"method"`
	Symbols string `json:"symbols"`          // dwarf, symtab, signal (a signal trampoline), or missing
	Signal  bool   `json:"signal,omitempty"` // a signal trampoline; the next frame is the one it interrupted
	InApp   bool   `json:"in_app"`
}

// Module is one mapped ELF file.
type Module struct {
	Path    string `json:"path"`
	BuildID string `json:"build_id,omitempty"`
	Start   string `json:"start"`
	End     string `json:"end"`
	Symbols bool   `json:"symbols"`
}
