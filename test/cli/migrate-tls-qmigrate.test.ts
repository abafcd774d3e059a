// `qmigrate migrate --tls-creds` with qmigrate vm ends (helper A's TLS objects and monitors,
// helper B's TLS channels), every monitor reached over TLS: qmigrate vm -> qmigrate vm,
// qmigrate vm -> QEMU 10.0 and QEMU 10.0 -> qmigrate vm, each on one channel and with multifd
// 4, complete with the RAM equal and no tls-creds (nor, on QEMU, object) left; a destination
// certificate from another CA fails with one line, exit 1, the source's guest running and its
// tls-creds back to ''.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import type { PeerKind } from '../helpers/peers.js';
import { runQmigrate } from '../helpers/qmigrate.js';
import { makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';
import { freePort, tlsMonitorArgs } from '../helpers/tls-monitor.js';
import { type Lab, ramEqual, startLab } from '../orchestrator/lab.js';

async function tlsLab(
  t: TestContext,
  from: PeerKind,
  to: PeerKind,
  monitorDir: string,
): Promise<{ lab: Lab; monitors: string[] } | undefined> {
  const [a, b] = [await freePort(), await freePort()];
  const lab = await startLab(t, from, to, {
    srcExtra: tlsMonitorArgs(monitorDir, true, 'montls', a),
    dstExtra: tlsMonitorArgs(monitorDir, true, 'montls', b),
  });
  if (!lab) return undefined;
  return { lab, monitors: ['--from', `127.0.0.1:${a}`, '--to', `127.0.0.1:${b}`] };
}

async function objectsLeft(lab: Lab): Promise<string[]> {
  const out: string[] = [];
  for (const peer of [lab.src, lab.dst]) {
    if (peer.qmp.isClosed) continue;
    // qmigrate vm has no qom-list: there tls-creds back at '' is what shows.
    if (peer.kind !== 'qmigrate') {
      const list = (await peer.qmp.executeRaw('qom-list', { path: '/objects' })) as { name: string }[];
      out.push(...list.map((o) => o.name).filter((n) => n.startsWith('qmigrate-tls')));
    }
    const creds = (await peer.qmp.queryMigrateParameters())['tls-creds'];
    if (creds) out.push(`tls-creds=${creds}`);
  }
  return out;
}

for (const [from, to, extra] of [
  ['qmigrate', 'qmigrate', []],
  ['qmigrate', 'qmigrate', ['--multifd', '4']],
  ['qmigrate', '10.0', []],
  ['qmigrate', '10.0', ['--multifd', '4']],
  ['10.0', 'qmigrate', []],
  ['10.0', 'qmigrate', ['--multifd', '4']],
] as const) {
  test(`${from} -> ${to} over TLS${extra.length ? ' (multifd 4)' : ''}, monitors over TLS: completed, RAM equal, nothing left`, async (t) => {
    const pki = makePki(pkiRoot(t));
    const env = await tlsLab(t, from, to, pki.server);
    if (!env) return;
    const r = await runQmigrate([
      'migrate',
      ...env.monitors,
      ...['--from-qmp-tls', pki.client, '--to-qmp-tls', pki.client, '--tcp', '127.0.0.1:0'],
      ...['--from-tls-creds', pki.client, '--to-tls-creds', pki.server, '--json', ...extra],
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '');
    assert.equal(report.status, 'completed');
    assert.equal(report.warnings, undefined);
    assert.ok(await ramEqual(env.lab));
    assert.deepEqual(await objectsLeft(env.lab), []);
  });
}

test('qmigrate vm -> qmigrate vm, the destination certificate from another CA: exit 1, one line, the source runs on', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const otherServer = makeCredsDir(makeCa(root, 'other'), join(root, 'other-server'), 'server');
  const env = await tlsLab(t, 'qmigrate', 'qmigrate', pki.server);
  if (!env) return;
  const r = await runQmigrate([
    'migrate',
    ...env.monitors,
    ...['--from-qmp-tls', pki.client, '--to-qmp-tls', pki.client, '--tcp', '127.0.0.1:0'],
    ...['--from-tls-creds', pki.client, '--to-tls-creds', otherServer],
  ]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const failed = r.stdout.split('\n').filter((l) => l.startsWith('migration failed'));
  assert.equal(failed.length, 1, r.stdout);
  assert.match(failed[0] ?? '', /certificate/i);
  assert.equal((await env.lab.src.qmp.queryStatus()).status, 'running');
  assert.deepEqual(await objectsLeft(env.lab), []);
});
