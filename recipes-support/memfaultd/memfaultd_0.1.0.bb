SUMMARY = "memfaultd: crash collection and upload for embedded Linux (meta-memfault-go)"
DESCRIPTION = "One multi-call binary: the daemon memfaultd, memfaultctl and the kernel core \
handler memfault-core-handler. Captures small cores of crashed processes, stages and uploads \
them to Memfault or a memfault-server."
SECTION = "console/utils"

require memfault-go.inc
require memfaultd-go-licenses.inc
require memfaultd-go-mods${MEMFAULT_GO_MODS_STYLE}.inc

SRC_URI += " \
    file://memfaultd.service \
    file://memfaultd.init \
    file://50-memfault-core-pipe-limit.conf \
    file://50-memfault-gotraceback.conf \
    file://memfault-gotraceback.sh \
"

inherit systemd update-rc.d

GO_INSTALL = "${GO_IMPORT}/cmd/memfaultd"

# /etc/memfaultd.conf (README.md, "Yocto", lists every variable). Empty means "not set": the
# daemon then uses its built-in default (software type and version from /etc/os-release).
MEMFAULT_PROJECT_KEY ?= ""
MEMFAULT_BASE_URL ?= "https://device.memfault.com"
MEMFAULT_SOFTWARE_TYPE ?= ""
MEMFAULT_SOFTWARE_VERSION ?= ""
MEMFAULT_DATA_COLLECTION_DEFAULT ?= "0"

do_install() {
    install -d ${D}${bindir} ${D}${sbindir}
    install -m 0755 ${B}/${GO_BUILD_BINDIR}/memfaultd ${D}${bindir}/memfaultd
    ln -sf memfaultd ${D}${bindir}/memfaultctl
    ln -sf ../bin/memfaultd ${D}${sbindir}/memfault-core-handler

    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir} ${D}${libdir}/sysctl.d ${D}${systemd_unitdir}/system.conf.d
        install -m 0644 ${MEMFAULT_GO_UNPACKDIR}/memfaultd.service ${D}${systemd_system_unitdir}/memfaultd.service
        install -m 0644 ${MEMFAULT_GO_UNPACKDIR}/50-memfault-core-pipe-limit.conf ${D}${libdir}/sysctl.d/50-memfault-core-pipe-limit.conf
        install -m 0644 ${MEMFAULT_GO_UNPACKDIR}/50-memfault-gotraceback.conf ${D}${systemd_unitdir}/system.conf.d/50-memfault-gotraceback.conf
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${MEMFAULT_GO_UNPACKDIR}/memfaultd.init ${D}${sysconfdir}/init.d/memfaultd
    fi
    install -d ${D}${sysconfdir}/profile.d
    install -m 0644 ${MEMFAULT_GO_UNPACKDIR}/memfault-gotraceback.sh ${D}${sysconfdir}/profile.d/memfault-gotraceback.sh
}

python memfaultd_write_config() {
    import json
    def text_or_null(name):
        return d.getVar(name) or None
    config = {
        "project_key": d.getVar('MEMFAULT_PROJECT_KEY') or "",
        "base_url": d.getVar('MEMFAULT_BASE_URL'),
        "software_type": text_or_null('MEMFAULT_SOFTWARE_TYPE'),
        "software_version": text_or_null('MEMFAULT_SOFTWARE_VERSION'),
        "enable_data_collection": bb.utils.to_boolean(d.getVar('MEMFAULT_DATA_COLLECTION_DEFAULT')),
    }
    path = d.expand('${D}${sysconfdir}/memfaultd.conf')
    bb.utils.mkdirhier(os.path.dirname(path))
    with open(path, 'w') as f:
        f.write('/* Written by the memfaultd recipe (meta-memfault-go) from MEMFAULT_* variables.\n'
                '   Every other key keeps its built-in default (README.md, "Configuration"). */\n')
        json.dump(config, f, indent=2, sort_keys=True)
        f.write('\n')
    os.chmod(path, 0o644)
}
do_install[postfuncs] += "memfaultd_write_config"

PACKAGES =+ "${PN}-gotraceback"

SYSTEMD_SERVICE:${PN} = "memfaultd.service"
INITSCRIPT_NAME = "memfaultd"
INITSCRIPT_PARAMS = "defaults 90 10"

FILES:${PN} += "${libdir}/sysctl.d"
FILES:${PN}-gotraceback = "${systemd_unitdir}/system.conf.d ${sysconfdir}/profile.d/memfault-gotraceback.sh"
CONFFILES:${PN} = "${sysconfdir}/memfaultd.conf"
RRECOMMENDS:${PN} = "${PN}-gotraceback"
