/**
 * `qmigrate vm`: a VM host process built from QEMU's command line. It creates the guest RAM
 * (from -m or memory backends), the run state, the migration engine and the optional
 * workload, and serves the monitors (QMP and HMP) on the chardevs given, like
 * qemu-system-x86_64 -machine none.
 */
import { closeSync, constants, existsSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { serveHmp } from '../hmp/index.js';
import { Workload } from '../machine/workload.js';
import { QapiError } from '../qapi/errors.js';
import { SocketError } from '../util/sockets.js';
import { ChardevError, openChardev } from './chardev.js';
import { parseVmArgs, UsageError, type VmConfig } from './cmdline.js';
import { QEMU_VERSION_TEXT, Vm } from './vm.js';

interface Backing {
  path: string;
  host: Buffer;
}

/** Reads a memory-backend-file's content into a RAM buffer of the backend's size. */
function loadFile(path: string, size: number): { host: Buffer; filled: boolean } {
  const host = Buffer.alloc(size);
  if (!existsSync(path) || statSync(path).size === 0) return { host, filled: false };
  const fd = openSync(path, 'r');
  try {
    for (let at = 0; at < size; ) {
      const n = readSync(fd, host, at, Math.min(size - at, 64 << 20), at);
      if (n === 0) break;
      at += n;
    }
  } finally {
    closeSync(fd);
  }
  return { host, filled: true };
}

/**
 * Writes a shared backend's RAM back to its file in place, as QEMU's MAP_SHARED mapping
 * leaves it: the first `size` bytes, created if missing, never truncated (a file longer than
 * the backend keeps its tail).
 */
function writeBack(path: string, host: Buffer): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT, 0o644);
  try {
    for (let at = 0; at < host.length; )
      at += writeSync(fd, host, at, Math.min(host.length - at, 64 << 20), at);
  } finally {
    closeSync(fd);
  }
}

/** Builds the guest RAM blocks QEMU would create for this configuration. */
function buildRam(cfg: VmConfig): { ram: { idstr: string; host: Buffer }[]; backings: Backing[] } {
  const ram: { idstr: string; host: Buffer; filled: boolean }[] = [];
  const backings: Backing[] = [];
  if (cfg.memoryBackend !== undefined && !cfg.backends.some((b) => b.id === cfg.memoryBackend)) {
    throw new UsageError(`Memory backend '${cfg.memoryBackend}' not found`);
  }
  for (const b of cfg.backends) {
    if (b.id === cfg.memoryBackend && cfg.ramSizeGiven && b.size !== cfg.ramSize) {
      throw new UsageError('Machine memory size does not match the size of the memory backend');
    }
    if (b.size % 4096n !== 0n || b.size === 0n)
      throw new UsageError(`-object ${b.type},id=${b.id}: bad size ${b.size}`);
    const size = Number(b.size);
    const { host, filled } = b.memPath
      ? loadFile(b.memPath, size)
      : { host: Buffer.alloc(size), filled: false };
    if (b.memPath && b.share) backings.push({ path: b.memPath, host });
    ram.push({ idstr: b.id, host, filled });
  }
  if (cfg.memoryBackend === undefined && cfg.ramSizeGiven && cfg.ramSize > 0n) {
    ram.push({ idstr: 'ram', host: Buffer.alloc(Number(cfg.ramSize)), filled: false });
  }
  return { ram, backings };
}

/**
 * A destination touches all of its RAM once the stream arrives. Mapping it before the
 * monitors open (as QEMU's prealloc=on would) keeps those page faults out of the migration
 * window instead of competing with the loader. Pages already holding content are skipped.
 */
function prefault(vm: Vm): void {
  for (const b of vm.ram.blocks) {
    // Writing one byte per page maps it; the byte is zero already, so content is unchanged.
    for (let p = 0; p < b.length; p += 4096) if (!b.mayBeWritten(p / 4096)) b.host[p] = 0;
  }
}

/** Builds and starts the VM of a parsed configuration. Exported for tests. */
export async function startVm(
  cfg: VmConfig,
  fatal: (msg: string) => void = () => {},
): Promise<{ vm: Vm; backings: Backing[] }> {
  const { ram, backings } = buildRam(cfg);
  const vm = new Vm({ incoming: cfg.incoming, startPaused: cfg.startPaused, ram, fatal });
  if (cfg.incoming !== undefined) prefault(vm);
  for (const a of cfg.addFds) {
    vm.fdsets.set(a.set, [...(vm.fdsets.get(a.set) ?? []), a.fd]);
    if (a.opaque) vm.fds.set(a.opaque, a.fd);
  }
  if (cfg.workload) {
    const block = vm.ram.blocks[0];
    if (!block) throw new UsageError('-object qmigrate-workload: the guest has no RAM');
    const w = new Workload(block, cfg.workload.rate);
    vm.onRunning = (running) => (running ? w.start() : w.stop());
  }
  for (const m of cfg.monitors) {
    try {
      await openChardev(m.dev, (stream, name) => {
        if (m.mode === 'control') vm.server.attach(stream, name);
        else serveHmp(stream, vm.hmp, { version: QEMU_VERSION_TEXT });
      });
    } catch (e) {
      if (e instanceof ChardevError) throw new UsageError(`${m.spec}: ${e.message}`);
      throw e;
    }
  }
  if (cfg.incoming !== undefined && cfg.incoming !== 'defer') {
    try {
      await vm.migration.migrateIncoming({ uri: cfg.incoming });
    } catch (e) {
      if (e instanceof QapiError) {
        // On the command line QEMU prints a socket error's hint line under the message.
        const hint = e.cause instanceof SocketError && e.cause.hint ? `\n${e.cause.hint}` : '';
        throw new UsageError(`-incoming ${cfg.incoming}: ${e.message}${hint}`);
      }
      throw e;
    }
  }
  return { vm, backings };
}

/** Runs `qmigrate vm ARGS`; resolves with the exit code when the VM quits. */
export async function vmMain(argv: readonly string[]): Promise<number> {
  let exitFatal: ((msg: string) => void) | undefined;
  let started: { vm: Vm; backings: Backing[] };
  try {
    started = await startVm(parseVmArgs(argv), (msg) => exitFatal?.(msg));
  } catch (e) {
    if (e instanceof UsageError || e instanceof QapiError) {
      process.stderr.write(`qmigrate: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const { vm, backings } = started;
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = (code: number, write: boolean) => {
      if (done) return;
      done = true;
      // A shared memory-backend-file holds the guest's RAM once the process is gone.
      if (write) for (const b of backings) writeBack(b.path, b.host);
      void vm.close().finally(() => resolve(code));
    };
    exitFatal = (msg) => {
      process.stderr.write(`qmigrate: ${msg}\n`);
      finish(1, false);
    };
    vm.onQuit = () => finish(0, true);
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.once(sig, () => {
        process.stderr.write(
          `qmigrate: terminating on signal ${sig === 'SIGTERM' ? 15 : sig === 'SIGINT' ? 2 : 1}\n`,
        );
        finish(0, true);
      });
    }
  });
}
