/**
 * `qmigrate vm`: a VM host process built from QEMU's command line. It creates the guest RAM,
 * the run state and migration state, and serves the monitors (QMP and HMP) on the chardevs
 * given, like qemu-system-x86_64 -machine none.
 */
import { serveHmp } from '../hmp/index.js';
import { QapiError } from '../qapi/errors.js';
import { ChardevError, openChardev } from './chardev.js';
import { parseVmArgs, UsageError, type VmConfig } from './cmdline.js';
import { QEMU_VERSION_TEXT, Vm } from './vm.js';

/** Builds the VM of a parsed configuration (RAM, monitors). Exported for tests. */
export async function startVm(cfg: VmConfig): Promise<Vm> {
  const ram: { idstr: string; host: Buffer }[] = [];
  if (cfg.ramSize > 0n && !cfg.memoryBackend)
    ram.push({ idstr: 'ram', host: Buffer.alloc(Number(cfg.ramSize)) });
  const vm = new Vm({ incoming: cfg.incoming, startPaused: cfg.startPaused, ram });
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
  return vm;
}

/** Runs `qmigrate vm ARGS`; resolves when the VM quits. Returns the exit code. */
export async function vmMain(argv: readonly string[]): Promise<number> {
  let vm: Vm;
  try {
    vm = await startVm(parseVmArgs(argv));
  } catch (e) {
    if (e instanceof UsageError || e instanceof QapiError) {
      process.stderr.write(`qmigrate: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  return new Promise<number>((resolve) => {
    const finish = (code: number) => {
      void vm.close().finally(() => resolve(code));
    };
    vm.onQuit = () => finish(0);
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
      process.once(sig, () => {
        process.stderr.write(
          `qmigrate: terminating on signal ${sig === 'SIGTERM' ? 15 : sig === 'SIGINT' ? 2 : 1}\n`,
        );
        finish(0);
      });
    }
  });
}
