# meta-memfault-go (read only when meta-raspberrypi is in the build): with DISTRO_FEATURES
# "memfault" (INHERIT += "memfault"), the kernel configuration fragment for useful cores.
# Without it this append changes nothing.
MEMFAULT_KERNEL_FILES := "${THISDIR}/../../../../recipes-kernel/linux/files"

python () {
    if bb.utils.contains('DISTRO_FEATURES', 'memfault', True, False, d):
        d.prependVar('FILESEXTRAPATHS', d.getVar('MEMFAULT_KERNEL_FILES') + ':')
        d.appendVar('SRC_URI', ' file://memfault-coredump.cfg')
}
