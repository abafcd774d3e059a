// QmpClient over TLS to qmigrate vm's TLS monitor (helper A's `-chardev socket,...,tls-creds=`
// with a tls-creds-x509 server object, verify-peer=on): the greeting and commands work; a
// wrong CA, a wrong name, a missing and a foreign client certificate fail with
// TlsHandshakeError naming the check, as against QEMU 10.0 (client-tls-qemu.test.ts).
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { QmpClient, readX509CredsDir } from '../../src/qmp/client.js';
import { TlsHandshakeError } from '../../src/qmp/errors.js';
import { connectRetry } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';
import { makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';
import { freePort, tlsMonitorArgs } from '../helpers/tls-monitor.js';

async function tlsVm(t: TestContext, root: string, serverDir: string): Promise<number> {
  const port = await freePort();
  const sock = join(root, 'vm.qmp');
  const child = spawnQmigrate(
    [
      'vm',
      '-machine',
      'none',
      '-m',
      '64M',
      '-qmp',
      `unix:${sock},server=on,wait=off`,
      ...tlsMonitorArgs(serverDir, true, 'montls', port),
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  // The unix monitor answers once the VM is up, and with it the TLS one.
  await (await connectRetry(sock)).close();
  return port;
}

async function refusal(p: Promise<QmpClient>): Promise<TlsHandshakeError> {
  const e = await p.then(
    async (c) => {
      await c.close();
      assert.fail('connected');
    },
    (err: unknown) => err,
  );
  assert.ok(e instanceof TlsHandshakeError, String(e));
  assert.equal(e.code, 'QMP_TLS');
  return e;
}

test('qmigrate vm TLS monitor: commands over TLS; wrong CA, wrong name, missing and foreign client certificates refused', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const other = makeCa(root, 'other');
  const foreign = makeCredsDir(other, join(root, 'foreign'), 'client');
  const caOnly = join(root, 'ca-only');
  mkdirSync(caOnly);
  const good = readX509CredsDir(pki.client);
  writeFileSync(join(caOnly, 'ca-cert.pem'), good.ca as Buffer);
  const at = { host: '127.0.0.1', port: await tlsVm(t, root, pki.server) };

  const qmp = await QmpClient.connect(at, { tls: good, timeout: 5000 });
  assert.match(qmp.greeting.QMP.version.package, /qmigrate/);
  assert.equal((await qmp.queryStatus()).status, 'running');
  await qmp.close();

  const ca = await refusal(
    QmpClient.connect(at, { tls: { ...good, ca: readX509CredsDir(foreign).ca }, timeout: 5000 }),
  );
  assert.equal(ca.check, 'unknown-ca');
  const name = await refusal(
    QmpClient.connect(at, { tls: { ...good, serverName: 'wronghost' }, timeout: 5000 }),
  );
  assert.equal(name.check, 'hostname');
  assert.match(name.message, /does not match the name 'wronghost'/);
  const started = Date.now();
  const none = await refusal(QmpClient.connect(at, { tls: readX509CredsDir(caOnly), timeout: 5000 }));
  assert.equal(none.check, 'client-certificate');
  assert.match(none.message, /requires a client certificate .* none was given/);
  assert.ok(Date.now() - started < 4000, 'refused at once, not at the timeout');
  const theirs = await refusal(
    QmpClient.connect(at, { tls: { ...readX509CredsDir(foreign), ca: good.ca }, timeout: 5000 }),
  );
  assert.equal(theirs.check, 'client-certificate');
  assert.match(theirs.message, /refused our client certificate/);
});
