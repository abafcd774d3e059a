/**
 * A qmigrate VM: guest RAM, run state, migration state and its monitors, wired together as
 * QEMU's system/vl.c wires a machine (`qmigrate vm` builds one from QEMU's command line).
 */
import { readFileSync } from 'node:fs';
import { Hmp } from '../hmp/index.js';
import { GuestRam } from '../machine/ram.js';
import { Engine } from '../migration/engine.js';
import { Migration, type MigrationEngine } from '../migration/migration.js';
import { schema } from '../qapi/schema.js';
import type { EventName, Events, Memdev, RunState, VersionInfo } from '../qapi/types.js';
import { Dispatcher } from '../qmp/dispatch.js';
import { QmpServer } from '../qmp/server.js';
import { registerVmCommands } from './monitor.js';
import { VmObjects } from './objects.js';
import { RunStateMachine } from './runstate.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** The QEMU version whose interface qmigrate implements, reported in greetings. */
export const QEMU_VERSION = { major: 10, minor: 0, micro: 2 };
export const QEMU_VERSION_TEXT = `${QEMU_VERSION.major}.${QEMU_VERSION.minor}.${QEMU_VERSION.micro}`;
export const VERSION_INFO: VersionInfo = { qemu: QEMU_VERSION, package: `qmigrate ${pkg.version}` };

export interface VmOptions {
  /** Called when an incoming migration fails with exit-on-error (default: nothing). */
  fatal?: (message: string) => void;
  /** Called with a line QEMU prints on stderr and goes on (default: nothing). */
  warn?: (message: string) => void;
  /** `-incoming` value: `defer`, or a URI started at once. */
  incoming?: string;
  /** `-S`: start paused (prelaunch). */
  startPaused?: boolean;
  /** RAM blocks by id. */
  ram?: { idstr: string; host: Buffer; filled?: boolean; shared?: boolean }[];
  /** The memory backend objects, as query-memdev reports them (default: none). */
  memdevs?: Memdev[];
  engine?: MigrationEngine;
}

export class Vm {
  readonly ram = new GuestRam();
  readonly fds = new Map<string, number>();
  readonly fdsets = new Map<number, number[]>();
  /** The user-creatable objects (-object, object-add), also the migration's TLS objects. */
  readonly objects = new VmObjects();
  readonly runstate: RunStateMachine;
  readonly migration: Migration;
  readonly dispatcher = new Dispatcher(schema);
  readonly server: QmpServer;
  /** The human monitor, over the same commands QMP runs. */
  readonly hmp: Hmp;
  readonly memdevs: readonly Memdev[];
  #onQuit: () => void = () => {};
  #onRunning: ((running: boolean) => void) | undefined;

  constructor(opts: VmOptions = {}) {
    this.memdevs = opts.memdevs ?? [];
    // The machine's RAM backends are objects too (`ram` for -m, as QEMU's default backend).
    for (const m of this.memdevs) if (m.id !== undefined) this.objects.reserve(m.id, 'memory-backend');
    for (const r of opts.ram ?? []) {
      const b = this.ram.add(r.idstr, r.host, r.filled ?? true);
      // Knowing which loaded pages are zero spares reading them again at migration time.
      if (r.filled) b.scanWritten();
    }
    const initial: RunState =
      opts.incoming !== undefined ? 'inmigrate' : opts.startPaused ? 'prelaunch' : 'running';
    this.runstate = new RunStateMachine(initial, !opts.startPaused, {
      emit: (e) => this.emit(e),
      onRunning: (running) => this.#onRunning?.(running),
    });
    this.migration = new Migration(
      {
        runstate: () => this.runstate.state,
        emit: (e, d) => this.emit(e, d),
        unsharedRam: () => (opts.ram ?? []).filter((r) => !r.shared).map((r) => r.idstr),
      },
      opts.engine ??
        new Engine({
          ram: this.ram,
          runstate: this.runstate,
          fds: this.fds,
          fdsets: this.fdsets,
          fatal: (msg) => opts.fatal?.(msg),
          warn: (msg) => opts.warn?.(msg),
          tls: this.objects,
        }),
    );
    this.server = new QmpServer({ dispatcher: this.dispatcher, version: VERSION_INFO });
    this.hmp = new Hmp({ execute: (cmd, args) => this.execute(cmd, args) }, { version: QEMU_VERSION_TEXT });
    registerVmCommands(this.dispatcher, {
      runstate: this.runstate,
      migration: this.migration,
      ram: this.ram,
      memdevs: this.memdevs,
      fds: this.fds,
      objects: this.objects,
      hmp: (line) => this.hmp.run(line),
      quit: () => setImmediate(() => this.#onQuit()),
      warn: (msg) => opts.warn?.(msg),
    });
  }

  /** Called whenever the guest starts or stops running (drives the workload). */
  set onRunning(fn: (running: boolean) => void) {
    this.#onRunning = fn;
    fn(this.runstate.running);
  }

  /** What `quit` does (the process entry point sets this; default: nothing). */
  set onQuit(fn: () => void) {
    this.#onQuit = fn;
  }

  emit<N extends EventName>(event: N, data?: Events[N]): void {
    this.server.emit(event, data);
  }

  /** Runs a QMP command in-process, as HMP does. @throws {QapiError} */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    return this.dispatcher.run(command, args, false, { name: 'hmp', fds: [] });
  }

  async close(): Promise<void> {
    this.migration.shutdown();
    await this.server.close();
  }
}
