# meta-memfault-go: Go programs started from a login shell crash with SIGABRT (and so a core
# that memfault-core-handler captures) on a fatal error or an unrecovered panic.
export GOTRACEBACK=crash
