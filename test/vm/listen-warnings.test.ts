// A QMP, HMP or migration listener that other hosts can reach (not loopback, not a unix
// socket) and has no TLS makes qmigrate print one warning line on stderr (QEMU prints none);
// loopback, unix and TLS listeners print nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startBareVm } from '../helpers/peers.js';
import { untilIncludes } from '../helpers/qemu.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';

async function vm(t: import('node:test').TestContext, args: string[]) {
  const vm = await startBareVm(t, ['-incoming', 'defer', ...args]);
  const out = {
    get stderr() {
      return vm.stderr();
    },
  };
  return { q: vm.qmp, out };
}

const WARNING = /warning: .* without TLS/;

test('listeners on 0.0.0.0 without TLS warn once each; loopback and unix ones do not', async (t) => {
  const { q, out } = await vm(t, [
    '-qmp',
    'tcp:0.0.0.0:0,server=on,wait=off',
    '-monitor',
    'tcp:127.0.0.1:0,server=on,wait=off',
    '-monitor',
    'tcp:[::]:0,server=on,wait=off',
  ]);
  await q.migrateIncoming({ uri: 'tcp:0.0.0.0:0' });
  const bound = (await q.queryMigrate())['socket-address']?.[0];
  const port = bound?.type === 'inet' ? bound.port : undefined;
  const line = `qmigrate: warning: migration listener on 0.0.0.0:${port} without TLS`;
  await untilIncludes(() => out.stderr, line);
  const warnings = out.stderr.split('\n').filter((l) => WARNING.test(l));
  assert.equal(warnings.length, 3, out.stderr);
  assert.match(
    warnings[0]!,
    /^qmigrate: -qmp tcp:0\.0\.0\.0:0,server=on,wait=off: warning: listening on 0\.0\.0\.0:\d+ without TLS: /,
  );
  assert.match(
    warnings[1]!,
    /^qmigrate: -monitor tcp:\[::\]:0,server=on,wait=off: warning: listening on \[::\]:\d+ without TLS: /,
  );
  assert.ok(warnings[2]!.startsWith(line), warnings[2]);
});

test('loopback and unix migration listeners do not warn', async (t) => {
  const { q, out } = await vm(t, []);
  await q.migrateIncoming({ uri: 'tcp:127.0.0.1:0' });
  // A warning would be on stderr before the reply; give the pipe time to deliver it anyway.
  await q.queryStatus();
  await new Promise((r) => setTimeout(r, 300));
  assert.doesNotMatch(out.stderr, WARNING);
});

test('TLS listeners on 0.0.0.0 do not warn', async (t) => {
  const pki = makePki(pkiRoot(t));
  const { q, out } = await vm(t, [
    '-object',
    `tls-creds-x509,id=tls0,dir=${pki.server},endpoint=server`,
    '-qmp',
    'tcp:0.0.0.0:0,server=on,wait=off,tls-creds=tls0',
  ]);
  await q.migrateSetParameters({ 'tls-creds': 'tls0' });
  await q.migrateIncoming({ uri: 'tcp:0.0.0.0:0' });
  assert.ok((await q.queryMigrate())['socket-address']?.length);
  // A warning would be on stderr before the reply; give the pipe time to deliver it anyway.
  await q.queryStatus();
  await new Promise((r) => setTimeout(r, 300));
  assert.doesNotMatch(out.stderr, WARNING);
});
