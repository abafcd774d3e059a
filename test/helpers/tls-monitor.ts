/**
 * A monitor over TLS on loopback for tests, as QEMU takes one: a tls-creds-x509 server object
 * and a `-chardev socket,...,tls-creds=ID` on port 0 for `-mon mode=control`. The port the
 * chardev got is read back from query-chardev (its filename is `tcp:HOST:PORT,server=on`).
 */
import type { QmpClient } from '../../src/qmp/client.js';
import type { MiniQmp } from './qmp-mini.js';

/** The extra arguments for a TLS QMP monitor whose credentials are in `dir` (server endpoint). */
export function tlsMonitorArgs(dir: string, verifyPeer: boolean, id = 'montls'): string[] {
  return [
    ...[
      '-object',
      `tls-creds-x509,id=${id}-creds,dir=${dir},endpoint=server,verify-peer=${verifyPeer ? 'on' : 'off'}`,
    ],
    ...['-chardev', `socket,id=${id},host=127.0.0.1,port=0,server=on,wait=off,tls-creds=${id}-creds`],
    ...['-mon', `chardev=${id},mode=control`],
  ];
}

/** The tcp port the chardev `id` listens on, from query-chardev. */
export async function chardevPort(qmp: MiniQmp | QmpClient, id = 'montls'): Promise<number> {
  const reply =
    'executeRaw' in qmp
      ? await qmp.executeRaw('query-chardev')
      : ((await qmp.execute('query-chardev')) as { return: unknown }).return;
  const list = reply as { label: string; filename: string }[];
  const c = list.find((x) => x.label === id);
  const m = /:(\d+)(,|$)/.exec(c?.filename ?? '');
  if (!m) throw new Error(`chardev ${id} has no tcp port: ${c?.filename}`);
  return Number(m[1]);
}
