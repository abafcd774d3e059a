/**
 * The QMP commands of a qmigrate VM: each handler is a thin call into the VM's parts (run
 * state, migration, RAM, fds), which already enforce QEMU's rules. HMP reaches the same
 * handlers through the dispatcher, so both monitors behave alike.
 */
import { type FileHandle, open } from 'node:fs/promises';
import type { GuestRam } from '../machine/ram.js';
import type { Migration } from '../migration/migration.js';
import { genericError } from '../qapi/errors.js';
import type { Commands, Memdev } from '../qapi/types.js';
import type { Dispatcher } from '../qmp/dispatch.js';
import { strerror } from '../util/errno.js';
import type { VmObjects } from './objects.js';
import type { RunStateMachine } from './runstate.js';

export interface MonitorVm {
  readonly runstate: RunStateMachine;
  readonly migration: Migration;
  readonly ram: GuestRam;
  /** The memory backend objects (query-memdev). */
  readonly memdevs: readonly Memdev[];
  /** Named fds from getfd/-add-fd: Node cannot receive SCM_RIGHTS, see migration/transport/fd.ts. */
  readonly fds: Map<string, number>;
  /** The user-creatable objects (object-add, object-del). */
  readonly objects: VmObjects;
  /** Runs an HMP command line (human-monitor-command). */
  hmp(commandLine: string): Promise<string>;
  /** Ends the process after the reply went out. */
  quit(): void;
  /** A line for stderr (the VM goes on). */
  warn(message: string): void;
}

/** migrate_cancel: the reply stays QEMU's `{}`; a cancel that cannot act is not passed over in silence. */
function migrateCancel(vm: MonitorVm): Record<string, never> {
  if (!vm.migration.cancel())
    vm.warn(
      'migrate_cancel: too late, the end of the stream is already with the peer; the migration ends as the peer decides (an exec child: when it exits)',
    );
  return {};
}

export function registerVmCommands(d: Dispatcher, vm: MonitorVm): void {
  const m = vm.migration;
  d.register('query-status', () => ({ status: vm.runstate.state, running: vm.runstate.running }));
  d.register('query-memdev', () => vm.memdevs.map((m) => ({ ...m, 'host-nodes': [...m['host-nodes']] })));
  d.register('stop', () => {
    vm.runstate.qmpStop();
    return {};
  });
  d.register('cont', () => {
    vm.runstate.qmpCont();
    return {};
  });
  d.register('quit', () => {
    vm.quit();
    return {};
  });
  d.register('query-migrate', () => m.info());
  d.register('query-migrate-capabilities', () => m.options.queryCapabilities());
  d.register('query-migrate-parameters', () => m.options.queryParameters());
  d.register('migrate-set-capabilities', (a) => {
    m.setCapabilities(a.capabilities);
    return {};
  });
  d.register('migrate-set-parameters', (a) => {
    m.options.setParameters(a);
    return {};
  });
  d.register('migrate', async (a) => {
    await m.migrate(a);
    return {};
  });
  d.register('migrate-incoming', async (a) => {
    await m.migrateIncoming(a);
    return {};
  });
  d.register('migrate_cancel', () => migrateCancel(vm));
  d.register('migrate-continue', (a) => {
    m.continue(a.state);
    return {};
  });
  d.register('migrate-pause', () => {
    m.pause();
    return {};
  });
  d.register('migrate-recover', async (a) => {
    await m.recover(a);
    return {};
  });
  d.register('migrate-start-postcopy', () => {
    m.startPostcopy();
    return {};
  });
  d.register('human-monitor-command', (a) => vm.hmp(a['command-line']));
  d.register('getfd', (_a, session) => {
    if (!session.fds.length) throw genericError('No file descriptor supplied via SCM_RIGHTS');
    vm.fds.set(_a.fdname, session.fds.shift()!);
    return {};
  });
  d.register('closefd', (a) => {
    if (!vm.fds.delete(a.fdname)) throw genericError(`File descriptor named '${a.fdname}' not found`);
    return {};
  });
  d.register('add-fd', () => {
    // Node never receives SCM_RIGHTS, so no descriptor ever comes with the command.
    throw genericError('No file descriptor supplied via SCM_RIGHTS');
  });
  d.register('pmemsave', (a) => pmemsave(vm.ram, a));
  d.register('object-add', (a) => {
    vm.objects.add(a);
    return {};
  });
  d.register('object-del', (a) => {
    vm.objects.del(a.id);
    return {};
  });
}

/**
 * `pmemsave` (system/cpus.c qmp_pmemsave): guest RAM from `val`, `size` bytes, into a file
 * created or truncated.
 * @throws {QapiError} for a range outside guest RAM, one with pages a postcopy has not brought
 *   yet, or a file that cannot be opened or written.
 */
async function pmemsave(ram: GuestRam, a: Commands['pmemsave']['args']): Promise<Record<string, never>> {
  const addr = BigInt(a.val);
  const size = BigInt(a.size);
  // QEMU reads past the end of RAM as zeros and would write 2^64 bytes for size -1;
  // qmigrate refuses ranges outside guest RAM instead.
  const data = ram.views(addr, size);
  if (!data) {
    throw genericError(
      `pmemsave: 0x${addr.toString(16)}+0x${size.toString(16)} is outside guest RAM (0x${ram.size.toString(16)} bytes)`,
    );
  }
  // A postcopy destination: pages still on the source would read as zeros, which QEMU's
  // pmemsave would write (or block on); a clear refusal instead.
  const missing = ram.missingIn(addr, size);
  if (missing > 0) {
    throw genericError(
      `pmemsave: ${missing} pages of the range are still on the migration source (postcopy); dump it once the migration has completed`,
    );
  }
  // As QEMU's fopen(filename, "wb"): created or truncated (a dump replaces the file). A new
  // file is the owner's only (QEMU's is 0666 less the umask): it holds guest memory.
  let fh: FileHandle;
  try {
    fh = await open(a.filename, 'w', 0o600);
  } catch (e) {
    throw genericError(`Could not open '${a.filename}': ${strerror(e)}`);
  }
  try {
    // Straight from guest RAM, in pieces: no second copy of a large guest.
    for (const v of data) {
      for (let at = 0; at < v.length; at += 64 << 20) await fh.write(v.subarray(at, at + (64 << 20)));
    }
  } catch {
    throw genericError(`writing memory to '${a.filename}' failed`);
  } finally {
    await fh.close();
  }
  return {};
}
