/**
 * The human monitor (HMP) for qmigrate's migration commands, with QEMU 10.0's syntax, output
 * and errors on top of QMP (qemu/qemu: monitor/hmp.c, migration/migration-hmp-cmds.c):
 * `Hmp` runs command lines as `human-monitor-command` does, `serveHmp` is the interactive
 * monitor of `-monitor unix:...` / `-monitor stdio`.
 */
export { Hmp, type HmpBackend } from './hmp.js';
export { serveHmp } from './serve.js';
