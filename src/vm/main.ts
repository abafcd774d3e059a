/**
 * `qmigrate vm`: a VM host process built from QEMU's command line. It creates the guest RAM
 * (from -m or memory backends, opened as system/physmem.c opens them), the run state, the
 * migration engine and the optional workload, serves the monitors (QMP and HMP) on the
 * chardevs given, and runs until `quit` or a signal, like qemu-system-x86_64 -machine none.
 */
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { serveHmp } from '../hmp/index.js';
import { Workload } from '../machine/workload.js';
import { QapiError } from '../qapi/errors.js';
import type { Memdev } from '../qapi/types.js';
import { strerror } from '../util/errno.js';
import { SocketError } from '../util/sockets.js';
import { ChardevError, openChardev } from './chardev.js';
import {
  helpText,
  MACHINES_TEXT,
  type MemoryBackend,
  NONE_MACHINE_TEXT,
  parseVmArgs,
  UsageError,
  type VmConfig,
  versionText,
} from './cmdline.js';
import { VmObjects } from './objects.js';
import { QEMU_VERSION_TEXT, VERSION_INFO, Vm } from './vm.js';

/** A share=on memory-backend-file: the guest's RAM goes back into it when the process ends. */
interface Backing {
  path: string;
  fd: number;
  host: Buffer;
}

/** Guest RAM of `size` bytes, or QEMU's error when the host cannot give it. */
function allocRam(name: string, size: number): Buffer {
  try {
    return Buffer.alloc(size);
  } catch {
    // Beyond Node's Buffer limit, or more than the host will hand out.
    throw new UsageError(`cannot set up guest memory '${name}': Cannot allocate memory`);
  }
}

/**
 * Opens a memory-backend-file as QEMU's file_ram_open does (system/physmem.c): an existing
 * file read-write, a missing one created (its directory must exist), a directory taken as
 * "a fresh unlinked file in there", i.e. RAM that nothing keeps. A non-empty file smaller
 * than the backend is refused; an empty one is grown to the backend's size.
 * @throws {UsageError} with QEMU's text when the file cannot be used.
 */
function openBackendFile(
  b: MemoryBackend & { memPath: string },
  size: number,
): { host: Buffer; filled: boolean; backing?: Backing } {
  const path = b.memPath;
  const cannot = (e: unknown) =>
    new UsageError(`can't open backing store ${path} for guest RAM: ${strerror(e)}`);
  let fd: number;
  let created = false;
  try {
    fd = openSync(path, 'r+');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') {
      try {
        accessSync(path, constants.W_OK);
      } catch (e2) {
        throw cannot(e2);
      }
      return { host: allocRam(b.id, size), filled: false };
    }
    if (code !== 'ENOENT') throw cannot(e);
    try {
      // The owner's only: QEMU creates it 0644, readable by anyone, with the guest's RAM in it.
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
      created = true;
    } catch (e2) {
      throw cannot(e2);
    }
  }
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize > 0 && fileSize < size) {
      throw new UsageError(
        `${b.id} backing store size 0x${fileSize.toString(16)} is too small for 'size' option 0x${size.toString(16)} plus 'offset' option 0x0`,
      );
    }
    const host = allocRam(b.id, size);
    if (fileSize === 0) ftruncateSync(fd, size);
    else {
      for (let at = 0; at < size; ) {
        const n = readSync(fd, host, at, Math.min(size - at, 64 << 20), at);
        if (n === 0) break;
        at += n;
      }
    }
    if (!b.share) {
      closeSync(fd);
      return { host, filled: fileSize > 0 };
    }
    return { host, filled: fileSize > 0, backing: { path, fd, host } };
  } catch (e) {
    closeSync(fd);
    if (created) unlinkSync(path);
    if (e instanceof UsageError) throw e;
    throw cannot(e);
  }
}

/** Builds the guest RAM blocks QEMU would create for this configuration. */
function buildRam(cfg: VmConfig): {
  ram: { idstr: string; host: Buffer; shared: boolean }[];
  backings: Backing[];
} {
  const ram: { idstr: string; host: Buffer; filled: boolean; shared: boolean }[] = [];
  const backings: Backing[] = [];
  if (cfg.memoryBackend !== undefined && !cfg.backends.some((b) => b.id === cfg.memoryBackend)) {
    throw new UsageError(`Memory backend '${cfg.memoryBackend}' not found`);
  }
  try {
    for (const b of cfg.backends) {
      if (b.id === cfg.memoryBackend && cfg.ramSizeGiven && b.size !== cfg.ramSize) {
        throw new UsageError('Machine memory size does not match the size of the memory backend');
      }
      if (b.size % 4096n !== 0n || b.size === 0n)
        throw new UsageError(`-object ${b.type},id=${b.id}: bad size ${b.size}`);
      const size = Number(b.size);
      if (b.memPath) {
        const { host, filled, backing } = openBackendFile({ ...b, memPath: b.memPath }, size);
        if (backing) backings.push(backing);
        ram.push({ idstr: b.id, host, filled, shared: b.share });
      } else ram.push({ idstr: b.id, host: allocRam(b.id, size), filled: false, shared: b.share });
    }
    if (cfg.memoryBackend === undefined && cfg.ramSizeGiven && cfg.ramSize > 0n) {
      ram.push({ idstr: 'ram', host: allocRam('ram', Number(cfg.ramSize)), filled: false, shared: false });
    }
  } catch (e) {
    for (const b of backings) closeSync(b.fd);
    throw e;
  }
  return { ram, backings };
}

/**
 * The memory backend objects QEMU 10.0 reports in query-memdev for this configuration: one per
 * `-object memory-backend-*`, and `ram` for a plain `-m` (QEMU creates that backend itself).
 * qmigrate binds no NUMA policy and always reserves swap, as QEMU does by default.
 */
function memdevsOf(cfg: VmConfig): Memdev[] {
  const memdev = (id: string, size: bigint, b?: MemoryBackend): Memdev => ({
    id,
    size: Number(size),
    merge: b?.merge ?? true,
    dump: b?.dump ?? true,
    prealloc: b?.prealloc ?? false,
    share: b?.share ?? false,
    reserve: true,
    'host-nodes': [],
    policy: 'default',
  });
  const list = cfg.backends.map((b) => memdev(b.id, b.size, b));
  if (cfg.memoryBackend === undefined && cfg.ramSizeGiven && cfg.ramSize > 0n)
    list.push(memdev('ram', cfg.ramSize));
  return list;
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

/** The id of the RAM backend QEMU creates itself for a plain `-m` (hw/core/machine.c default_ram_id). */
const DEFAULT_RAM_ID = 'ram';

/**
 * The -object objects of object-add's types, in order, after the machine's own (its RAM
 * backends and the workload, which object-del refuses). With a plain `-m`, an object of its
 * own named `ram` is refused once created, as QEMU's vl.c refuses it (two lines).
 * @throws {UsageError} QEMU's text, without the option: QEMU creates objects after parsing.
 */
function createObjects(vm: Vm, cfg: VmConfig): void {
  if (cfg.workload?.id !== undefined) vm.objects.reserve(cfg.workload.id, 'qmigrate-workload');
  const defaultRam = cfg.memoryBackend === undefined && cfg.ramSizeGiven && cfg.ramSize > 0n;
  for (const o of cfg.objects) {
    try {
      // The default backend holds the id already: create the object aside, for its own errors.
      if (defaultRam && o.id === DEFAULT_RAM_ID) new VmObjects().add(o);
      else vm.objects.add(o);
    } catch (e) {
      if (e instanceof QapiError) throw new UsageError(e.message);
      throw e;
    }
  }
  const ids = [...cfg.backends.map((b) => b.id), cfg.workload?.id, ...cfg.objects.map((o) => o.id)];
  if (defaultRam && ids.includes(DEFAULT_RAM_ID)) {
    throw new UsageError(
      `object's id '${DEFAULT_RAM_ID}' is reserved for the default RAM backend, it can't be used for any other purposes\n` +
        `Change the object's 'id' to something else or disable automatic creation of the default RAM backend by setting 'memory-backend=${DEFAULT_RAM_ID}' with '-machine'.`,
    );
  }
}

/** Builds and starts the VM of a parsed configuration. */
async function startVm(
  cfg: VmConfig,
  fatal: (msg: string) => void = () => {},
): Promise<{ vm: Vm; backings: Backing[]; closeMonitors: () => void }> {
  const { ram, backings } = buildRam(cfg);
  // A listening monitor's unix socket file goes with it, as QEMU removes it when it ends.
  const stops: (() => void)[] = [];
  const closeMonitors = () => {
    for (const stop of stops.splice(0)) stop();
  };
  try {
    const vm = new Vm({
      incoming: cfg.incoming,
      startPaused: cfg.startPaused,
      ram,
      memdevs: memdevsOf(cfg),
      fatal,
      warn: (msg) => process.stderr.write(`qmigrate: ${msg}\n`),
    });
    if (cfg.incoming !== undefined) prefault(vm);
    createObjects(vm, cfg);
    for (const a of cfg.addFds) {
      vm.fdsets.set(a.set, [...(vm.fdsets.get(a.set) ?? []), a.fd]);
      if (a.opaque) vm.fds.set(a.opaque, a.fd);
    }
    if (cfg.workload) {
      const block = vm.ram.blocks[0];
      if (!block) throw new UsageError('-object qmigrate-workload: the guest has no RAM');
      let w: Workload;
      try {
        w = new Workload(block, cfg.workload.rate, vm.ram);
      } catch (e) {
        throw new UsageError(`-object qmigrate-workload: ${(e as Error).message}`);
      }
      vm.onRunning = (running) => (running ? w.start() : w.stop());
    }
    for (const m of cfg.monitors) {
      try {
        const tls = {
          objects: vm.objects,
          log: (line: string) => process.stderr.write(`qmigrate: ${m.spec}: ${line}\n`),
        };
        const stop = await openChardev(
          m.dev,
          (stream, name) => {
            if (m.mode === 'control') vm.server.attach(stream, name);
            else serveHmp(stream, vm.hmp, { version: QEMU_VERSION_TEXT });
          },
          tls,
        );
        // Only listeners: a monitor connected out ends with the VM, its last reply sent.
        if (m.dev.backend === 'socket' && m.dev.server) stops.push(stop);
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
    return { vm, backings, closeMonitors };
  } catch (e) {
    closeMonitors();
    for (const b of backings) closeSync(b.fd);
    throw e;
  }
}

/**
 * Whether the guest's RAM is a whole guest that may reach its backing file: QEMU maps the
 * file, so a failed or unfinished incoming migration leaves partial RAM in it; qmigrate
 * keeps the file as it was until the guest has left `inmigrate` (the load completed) or
 * never was in it (no -incoming).
 */
function ramIsWhole(vm: Vm): boolean {
  return vm.runstate.state !== 'inmigrate';
}

/** Writes the guest's RAM over the start of its file, leaving the file's size alone. */
function writeBack(b: Backing): void {
  for (let at = 0; at < b.host.length; ) {
    at += writeSync(b.fd, b.host, at, Math.min(b.host.length - at, 64 << 20), at);
  }
}

/** How often `-run-with exit-with-parent=on` looks at the parent pid (ms). */
const PARENT_POLL_MS = 200;

/**
 * The command line, or the exit code when there is nothing to run: 0 after printing what
 * -h, -version or -machine help ask for, 1 after a usage error.
 */
function readCommandLine(argv: readonly string[]): VmConfig | number {
  let cfg: VmConfig;
  try {
    cfg = parseVmArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`qmigrate: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  if (!cfg.info) return cfg;
  const pkg = VERSION_INFO.package.replace(/^qmigrate /, '');
  process.stdout.write(
    cfg.info === 'help'
      ? helpText(QEMU_VERSION_TEXT, pkg)
      : cfg.info === 'version'
        ? versionText(QEMU_VERSION_TEXT, pkg)
        : cfg.info === 'machines'
          ? MACHINES_TEXT
          : NONE_MACHINE_TEXT,
  );
  return 0;
}

type Started = Awaited<ReturnType<typeof startVm>>;

/**
 * A `qmigrate vm` process from start to exit: it stays alive until `quit`, a signal, a fatal
 * error or (with exit-with-parent) its parent's end, and ends only once, writing a shared
 * backing file's RAM back when the guest in it is whole.
 */
class VmLifetime {
  #started: Started | undefined;
  #done = false;
  /** A fatal error reported while the VM was being built, acted on once it is. */
  #startFatal: string | undefined;
  // Nothing else may hold the event loop (no monitor at all): QEMU runs until a signal.
  readonly #keepAlive = setInterval(() => {}, 1 << 30);
  #parentWatch: NodeJS.Timeout | undefined;
  #resolveExit: (code: number) => void = () => {};
  /** Resolves with the exit code once the VM has ended. */
  readonly #exited = new Promise<number>((r) => {
    this.#resolveExit = r;
  });

  /**
   * Builds and starts the VM; resolves with the exit code when it ends (1 at once for a
   * configuration QEMU would refuse).
   */
  async run(cfg: VmConfig): Promise<number> {
    try {
      this.#started = await startVm(cfg, this.fatal);
    } catch (e) {
      clearInterval(this.#keepAlive);
      clearInterval(this.#parentWatch);
      if (e instanceof UsageError || e instanceof QapiError) {
        process.stderr.write(`qmigrate: ${e.message}\n`);
        return 1;
      }
      throw e;
    }
    const vm = this.#started.vm;
    vm.onQuit = () => this.#finish(0, ramIsWhole(vm));
    if (this.#startFatal !== undefined) this.fatal(this.#startFatal);
    return this.#exited;
  }

  /** A fatal error (an incoming migration that failed): exit 1, the backing file untouched. */
  readonly fatal = (msg: string): void => {
    if (!this.#started) {
      this.#startFatal ??= msg;
      return;
    }
    process.stderr.write(`qmigrate: ${msg}\n`);
    this.#finish(1, false);
  };

  /** SIGHUP, SIGINT, SIGTERM: exit 0, as QEMU does. */
  terminate(signo: number): void {
    process.stderr.write(`qmigrate: terminating on signal ${signo}\n`);
    // Before the VM is built there is no guest whose RAM could be kept: just go.
    if (!this.#started) process.exit(0);
    this.#finish(0, ramIsWhole(this.#started.vm));
  }

  /** `-run-with exit-with-parent=on`: ends as on SIGTERM once the parent is no longer `parent`. */
  watchParent(parent: number, sigterm: number): void {
    const parentGone = () => process.ppid !== parent;
    this.#parentWatch = setInterval(() => {
      if (parentGone()) this.terminate(sigterm);
    }, PARENT_POLL_MS);
    this.#parentWatch.unref();
  }

  #finish(code: number, writeBackRam: boolean): void {
    if (this.#done || !this.#started) return;
    this.#done = true;
    clearInterval(this.#keepAlive);
    clearInterval(this.#parentWatch);
    const { vm, backings, closeMonitors } = this.#started;
    closeMonitors();
    for (const b of backings) {
      try {
        if (writeBackRam) writeBack(b);
      } catch (e) {
        process.stderr.write(`qmigrate: cannot write guest RAM back to ${b.path}: ${strerror(e)}\n`);
        code = 1;
      } finally {
        closeSync(b.fd);
      }
    }
    void vm.close().finally(() => this.#resolveExit(code));
  }
}

/**
 * Runs `qmigrate vm ARGS`; resolves with the exit code when the VM quits, as QEMU's: 0 at
 * `quit` or on SIGTERM/SIGINT/SIGHUP, 1 for a bad command line or a fatal incoming failure.
 */
export async function vmMain(argv: readonly string[]): Promise<number> {
  // A reader of stderr that went away (a supervisor's log pipe) makes its writes fail with
  // EPIPE; QEMU ignores that, and an unhandled 'error' would end the VM with status 1.
  process.stderr.on('error', () => {});
  // The parent that asked for exit-with-parent may pass its pid, so that a parent which is
  // gone before this line runs is noticed too (the pid would already be the reaper's).
  const expectedParent = Number(process.env.QMIGRATE_PARENT_PID) || process.ppid;
  delete process.env.QMIGRATE_PARENT_PID;
  const cfg = readCommandLine(argv);
  if (typeof cfg === 'number') return cfg;
  const life = new VmLifetime();
  const signals = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
  for (const [sig, signo] of Object.entries(signals)) process.on(sig, () => life.terminate(signo));
  if (cfg.exitWithParent) life.watchParent(expectedParent, signals.SIGTERM);
  return life.run(cfg);
}
