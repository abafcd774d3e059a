/**
 * A monitor over TLS on loopback for tests, as QEMU takes one: a tls-creds-x509 server object
 * and a `-chardev socket,...,tls-creds=ID` for `-mon mode=control`. On QEMU the port is 0 and
 * read back from query-chardev (its filename is `tcp:HOST:PORT,server=on`); qmigrate vm gets
 * a port that was free.
 */
import { type AddressInfo, createServer } from 'node:net';
import type { QmpClient } from '../../src/qmp/client.js';
import type { MiniQmp } from './qmp-mini.js';

/** The extra arguments for a TLS QMP monitor whose credentials are in `dir` (server endpoint). */
export function tlsMonitorArgs(dir: string, verifyPeer: boolean, id = 'montls', port = 0): string[] {
  return [
    ...[
      '-object',
      `tls-creds-x509,id=${id}-creds,dir=${dir},endpoint=server,verify-peer=${verifyPeer ? 'on' : 'off'}`,
    ],
    ...['-chardev', `socket,id=${id},host=127.0.0.1,port=${port},server=on,wait=off,tls-creds=${id}-creds`],
    ...['-mon', `chardev=${id},mode=control`],
  ];
}

/**
 * A loopback port free a moment ago, for a peer that cannot tell which port 0 gave it
 * (qmigrate vm has no query-chardev); another process could take it meanwhile, which on a
 * test machine does not happen in practice.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** The tcp port the chardev `id` listens on, from query-chardev (QEMU's). */
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
