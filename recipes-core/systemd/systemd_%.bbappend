# meta-memfault-go: with DISTRO_FEATURES "memfault" (INHERIT += "memfault"), systemd is built
# without systemd-coredump (on by default in newer oe-core, and through the "minidebuginfo"
# distro feature before), so nothing competes with memfault-core-handler for core_pattern.
# Without it this append changes nothing.
python () {
    if bb.utils.contains('DISTRO_FEATURES', 'memfault', True, False, d):
        d.setVar('PACKAGECONFIG:remove', 'coredump')
}
