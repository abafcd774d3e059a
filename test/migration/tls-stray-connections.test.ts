// A TLS destination (tls-creds set, listening on tcp) that connections which never speak TLS
// reach first: a port scan's connect-and-close, a clear-text HTTP probe, a clear-text
// migration stream. QEMU 10.0 prints each and listens on; so does qmigrate vm (it used to fail
// the migration and, with exit-on-error, exit): the real TLS source then migrates, RAM equal.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitMigration } from '../helpers/peers.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';
import { ramEqual, startLab } from '../orchestrator/lab.js';

/** Connects to `port`, sends `data` (if any) and waits until the peer closes or 2 s passed. */
function stray(port: number, data?: Buffer | string): Promise<void> {
  return new Promise<void>((resolve) => {
    const c = connect(port, '127.0.0.1', () => (data === undefined ? c.end() : c.write(data)));
    const timer = setTimeout(() => c.destroy(), 2000);
    c.on('error', () => {});
    c.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

for (const to of ['10.0', 'qmigrate'] as const) {
  test(`stray clear-text connections to a TLS ${to} destination: it listens on, the TLS source migrates`, async (t) => {
    const pki = makePki(pkiRoot(t));
    const obj = (dir: string, ep: string) => ['-object', `tls-creds-x509,id=tls0,dir=${dir},endpoint=${ep}`];
    const lab = await startLab(t, 'qmigrate', to, {
      srcExtra: obj(pki.client, 'client'),
      dstExtra: obj(pki.server, 'server'),
    });
    if (!lab) return;
    const { src, dst } = lab;
    for (const p of [src, dst]) await p.qmp.migrateSetParameters({ 'tls-creds': 'tls0', 'max-bandwidth': 0 });
    await dst.qmp.migrateIncoming({ uri: 'tcp:127.0.0.1:0' });
    const sa = (await dst.qmp.queryMigrate())['socket-address']?.[0];
    assert.ok(sa?.type === 'inet');
    const port = Number(sa.port);
    for (let i = 0; i < 3; i++) {
      await stray(port);
      await stray(port, 'GET / HTTP/1.0\r\n\r\n');
      await stray(port, Buffer.from('5145564d00000003', 'hex')); // QEMU_VM_FILE_MAGIC, version 3
    }
    await sleep(200);
    assert.ok(!dst.qmp.isClosed, 'the destination process is still there');
    assert.equal((await dst.qmp.queryMigrate()).status, 'setup');
    await src.qmp.migrate({ uri: `tcp:127.0.0.1:${port}` });
    const s = await waitMigration(src.qmp, 30_000);
    assert.equal(s.status, 'completed', JSON.stringify(s));
    assert.equal((await waitMigration(dst.qmp, 10_000)).status, 'completed');
    assert.ok(await ramEqual(lab));
  });
}
