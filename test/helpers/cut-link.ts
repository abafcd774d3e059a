/**
 * A source monitor whose `migrate` goes through a FaultProxy the test can cut (faults/proxy.ts:
 * QmpRelay rewrites the address `migrate` names): the CLI tests' way to break a migration's
 * link while it runs, e.g. to leave a postcopy migration paused.
 */
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { FaultProxy, QmpRelay, type Where } from '../../faults/proxy.js';

/**
 * @param dir where the relay's and the proxy's sockets go (relay.qmp, proxy.sock).
 * @param monitor the source's QMP socket path.
 * @returns `from`, the monitor path to give `qmigrate migrate --from`, and `cut`, which
 *   closes the migration's connection (a no-op before `migrate` went through).
 */
export async function cuttableSource(
  t: TestContext,
  dir: string,
  monitor: string,
): Promise<{ from: string; cut(): Promise<void> }> {
  let proxy: FaultProxy | undefined;
  const relay = await QmpRelay.start(join(dir, 'relay.qmp'), monitor, async (to: Where) => {
    proxy = await FaultProxy.start(to, { path: join(dir, 'proxy.sock') });
    return proxy.where;
  });
  t.after(async () => {
    await relay.stop();
    await proxy?.stop();
  });
  return { from: relay.path, cut: async () => await proxy?.stop() };
}
