# memfault-image: debug symbols of every image build, uploaded by GNU build-id
# (meta-memfault-go). The opt-in class "memfault" adds it to every image through IMAGE_CLASSES;
# an image recipe may also inherit it on its own.
#
# - a companion debug file system (IMAGE_GEN_DEBUGFS), as a tarball of the same type as the
#   image's first tar type in IMAGE_FSTYPES (images without a tar type, such as initramfs
#   images, are left alone and upload nothing);
# - do_memfault_upload_symbols, after do_image_complete: `memfault upload-yocto-symbols` on the
#   rootfs and -dbg tarballs (their link names in DEPLOY_DIR_IMAGE). The credentials come from
#   BitBake's environment only (MEMFAULT_ORG, MEMFAULT_PROJECT, MEMFAULT_ORG_TOKEN, and
#   MEMFAULT_URL for a memfault-server): they are read from BB_ORIGENV, so they need no
#   BB_ENV_PASSTHROUGH_ADDITIONS, are in no task signature and are never printed. Without them
#   the task says so in one line and uploads nothing. It runs on every build (the server is
#   asked which build-ids it already has, so a re-run uploads nothing new).
# - MEMFAULT_SYMBOLS_STRICT = "1" fails the build when the symbol report lists shipped ELF
#   files without a build-id or without debug information (their crashes would not
#   symbolize); without credentials the check runs as a dry run.

def memfault_tar_type(d):
    for t in (d.getVar('IMAGE_FSTYPES') or '').split():
        if t == 'tar' or t.startswith('tar.'):
            return t
    return ''

MEMFAULT_IMAGE_TAR_TYPE = "${@memfault_tar_type(d)}"
IMAGE_GEN_DEBUGFS = "${@'1' if d.getVar('MEMFAULT_IMAGE_TAR_TYPE') else '0'}"
IMAGE_FSTYPES_DEBUGFS = "${MEMFAULT_IMAGE_TAR_TYPE}"

# Prelinked binaries no longer match their debug information. A no-op on releases since
# kirkstone, which have no image-prelink; kept for older ones.
USER_CLASSES:remove = "image-prelink"
# Link-time optimisation is turned off for every recipe by the opt-in class "memfault" (a class
# of the image recipe cannot reach the packages' builds).

MEMFAULT_SYMBOLS_STRICT ??= "0"

DEPENDS += "elfutils-native memfault-cli-native"

python do_memfault_upload_symbols() {
    import json
    import subprocess

    pn = d.getVar('PN')
    tartype = d.getVar('MEMFAULT_IMAGE_TAR_TYPE')
    if not tartype:
        bb.plain('memfault-image: %s: no tar type in IMAGE_FSTYPES, no symbols to upload' % pn)
        return

    origenv = d.getVar('BB_ORIGENV', False)
    creds = {}
    for name in ('MEMFAULT_ORG', 'MEMFAULT_PROJECT', 'MEMFAULT_ORG_TOKEN', 'MEMFAULT_URL'):
        value = origenv.getVar(name) if origenv else None
        if value:
            creds[name] = value
    missing = [n for n in ('MEMFAULT_ORG', 'MEMFAULT_PROJECT', 'MEMFAULT_ORG_TOKEN') if n not in creds]
    strict = bb.utils.to_boolean(d.getVar('MEMFAULT_SYMBOLS_STRICT'))
    if missing and not strict:
        bb.plain('memfault-image: %s: symbols not uploaded: %s not set in the environment' % (pn, ', '.join(missing)))
        return

    deploy = d.getVar('DEPLOY_DIR_IMAGE')
    link = d.getVar('IMAGE_LINK_NAME') or d.getVar('IMAGE_NAME')
    image = os.path.join(deploy, '%s.%s' % (link, tartype))
    dbg = os.path.join(deploy, '%s-dbg.%s' % (link, tartype))
    for path in (image, dbg):
        if not os.path.exists(path):
            bb.fatal('memfault-image: %s does not exist (IMAGE_FSTYPES, IMAGE_FSTYPES_DEBUGFS)' % path)

    workdir = d.expand('${WORKDIR}/memfault-symbols')
    bb.utils.remove(workdir, recurse=True)
    tmpdir = os.path.join(workdir, 'tmp')
    bb.utils.mkdirhier(tmpdir)
    report = os.path.join(workdir, 'report.json')
    cmd = [d.expand('${STAGING_BINDIR_NATIVE}/memfault'), 'upload-yocto-symbols',
           '--image', image, '--dbg-image', dbg,
           '--eu-unstrip-path', d.expand('${STAGING_BINDIR_NATIVE}/eu-unstrip'),
           '--package-debug-split-style', d.getVar('PACKAGE_DEBUG_SPLIT_STYLE'),
           '--report', report]
    if missing:
        cmd.append('--dry-run')
    env = dict(os.environ)
    for name in ('MEMFAULT_ORG', 'MEMFAULT_PROJECT', 'MEMFAULT_ORG_TOKEN', 'MEMFAULT_URL'):
        env.pop(name, None)
    env.update(creds)
    env['TMPDIR'] = tmpdir
    # The token goes to the uploader through its environment only: never on a command line,
    # and never in the log (the output is scrubbed in case the uploader ever echoed it).
    result = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    output = result.stdout
    if creds.get('MEMFAULT_ORG_TOKEN'):
        output = output.replace(creds['MEMFAULT_ORG_TOKEN'], '<MEMFAULT_ORG_TOKEN>')
    bb.plain(output.rstrip())
    if result.returncode != 0:
        bb.fatal('memfault-image: %s: memfault upload-yocto-symbols failed (exit status %d)' % (pn, result.returncode))
    bb.utils.remove(tmpdir, recurse=True)
    if strict:
        with open(report) as f:
            unreadable = json.load(f).get('unreadable_later') or []
        if unreadable:
            lines = ['%s: %s' % (u.get('path'), ', '.join(u.get('reasons') or [])) for u in unreadable]
            bb.fatal('memfault-image: %s: %d shipped ELF files will not symbolize (MEMFAULT_SYMBOLS_STRICT):\n%s'
                     % (pn, len(unreadable), '\n'.join(lines)))
}
do_memfault_upload_symbols[network] = "1"
do_memfault_upload_symbols[nostamp] = "1"
do_memfault_upload_symbols[vardepsexclude] += "BB_ORIGENV"
do_memfault_upload_symbols[depends] += "memfault-cli-native:do_populate_sysroot elfutils-native:do_populate_sysroot"
addtask memfault_upload_symbols after do_image_complete before do_build
