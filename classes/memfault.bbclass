# memfault: the one opt-in of meta-memfault-go. In local.conf or a distro configuration:
#
#   INHERIT += "memfault"
#
# Adding the layer alone changes nothing; this class brings:
# - DISTRO_FEATURES "memfault", which the layer's appends to other layers' recipes check
#   (linux-yocto and linux-raspberrypi: the kernel fragment memfault-coredump.cfg;
#   systemd: no systemd-coredump, so memfault-core-handler owns core_pattern);
# - memfaultd in every image that uses IMAGE_INSTALL, and memfault-image.bbclass (debug file
#   system, symbol upload) in every image;
# - LTO off for every recipe (the "lto" distro feature and the LTO flags);
# - Rust application recipes (cargo): panic=abort and unwind tables, so a panic is a SIGABRT
#   with a core the server can unwind; Go programs crash with GOTRACEBACK=crash (set in their
#   environment by memfaultd-gotraceback: the Go runtime reads it when it starts).

DISTRO_FEATURES:append = " memfault"

IMAGE_CLASSES += "memfault-image"
IMAGE_INSTALL:append = " memfaultd"

DISTRO_FEATURES:remove = "lto"
LTO = ""

MEMFAULT_RUSTFLAGS ?= "-C panic=abort -C force-unwind-tables=yes"

python () {
    if not bb.data.inherits_class('cargo', d):
        return
    for cls in ('native', 'nativesdk', 'cross', 'crosssdk'):
        if bb.data.inherits_class(cls, d):
            return
    # The Rust toolchain and its standard library are built as they are.
    if d.getVar('PN').startswith(('rust', 'libstd-rs', 'cargo')):
        return
    d.appendVar('RUSTFLAGS', ' ' + d.getVar('MEMFAULT_RUSTFLAGS'))
}
