SUMMARY = "memfault: uploads the debug symbols of a Yocto image to Memfault or a memfault-server"
DESCRIPTION = "The symbol uploader of meta-memfault-go (upload-yocto-symbols, \
upload-elf-symbols). Pairs the stripped ELF files of an image with their debug information and \
uploads them by GNU build-id; memfault-image.bbclass runs it after every image build."
SECTION = "devel"

require recipes-support/memfaultd/memfault-go.inc
require memfault-cli-go-licenses.inc
require memfault-cli-go-mods${MEMFAULT_GO_MODS_STYLE}.inc

GO_INSTALL = "${GO_IMPORT}/cmd/memfault"

# upload-yocto-symbols recombines split debug information with eu-unstrip (package elfutils).
RDEPENDS:${PN} = "elfutils"

do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/${GO_BUILD_BINDIR}/memfault ${D}${bindir}/memfault
}

BBCLASSEXTEND = "native nativesdk"
