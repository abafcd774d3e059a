// `qmigrate migrate --tls-creds` between two QEMU 10.0 peers, their monitors reached over TLS
// too (--from-qmp-tls / --to-qmp-tls): the migration completes with the RAM equal, and the
// credentials objects and tls-creds are gone from both sides afterwards; --dry-run lists the
// objects, the parameters and the clean-up and changes nothing. That the stream is TLS shows
// in the failure: a destination whose certificate another CA signed fails the migration (exit
// 1, QEMU's one line), the source's guest running, its object gone. A monitor's CA mismatch
// is exit 3 with one line naming the monitor and the check.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { QmpClient } from '../../src/qmp/client.js';
import { makeCa, makeCredsDir, makePki, pkiRoot } from '../helpers/tls-certs.js';
import { chardevPort, tlsMonitorArgs } from '../helpers/tls-monitor.js';
import { type Lab, ramEqual, startLab } from '../orchestrator/lab.js';

const bin = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

function qmigrate(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Two QEMU 10.0 peers, each with a TLS monitor (verify-peer=on) besides the lab's own. */
async function tlsLab(
  t: TestContext,
  serverDir: string,
): Promise<{ lab: Lab; from: string; to: string } | undefined> {
  const mon = tlsMonitorArgs(serverDir, true);
  const lab = await startLab(t, '10.0', '10.0', { srcExtra: mon, dstExtra: mon });
  if (!lab) return undefined;
  const from = `127.0.0.1:${await chardevPort(lab.src.qmp)}`;
  const to = `127.0.0.1:${await chardevPort(lab.dst.qmp)}`;
  return { lab, from, to };
}

/** The ids of the user-creatable objects of a peer that qmigrate made. */
async function qmigrateObjects(qmp: QmpClient): Promise<string[]> {
  const list = (await qmp.executeRaw('qom-list', { path: '/objects' })) as { name: string }[];
  return list.map((o) => o.name).filter((n) => n.startsWith('qmigrate-tls'));
}

test('QEMU 10.0 -> QEMU 10.0 over TLS, monitors over TLS: completed, RAM equal, objects gone after', async (t) => {
  const pki = makePki(pkiRoot(t));
  const env = await tlsLab(t, pki.server);
  if (!env) return;
  const { lab, from, to } = env;
  const r = await qmigrate([
    'migrate',
    ...['--from', from, '--to', to, '--from-qmp-tls', pki.client, '--to-qmp-tls', pki.client],
    ...['--tcp', '127.0.0.1:0', '--from-tls-creds', pki.client, '--to-tls-creds', pki.server, '--json'],
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const last = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '');
  assert.equal(last.type, 'report');
  assert.equal(last.status, 'completed');
  assert.equal(last.warnings, undefined);
  assert.ok(await ramEqual(lab));
  for (const peer of [lab.src, lab.dst]) {
    assert.deepEqual(await qmigrateObjects(peer.qmp), []);
    assert.equal((await peer.qmp.queryMigrateParameters())['tls-creds'], '');
  }
});

test('--dry-run with --tls-creds: the objects first, tls-creds on both, the clean-up listed; nothing changed', async (t) => {
  const pki = makePki(pkiRoot(t));
  const env = await tlsLab(t, pki.server);
  if (!env) return;
  const { lab, from, to } = env;
  const r = await qmigrate([
    'migrate',
    ...['--from', from, '--to', to, '--from-qmp-tls', pki.client, '--to-qmp-tls', pki.client],
    ...['--tcp', '127.0.0.1:0', '--tls-creds', pki.both, '--tls-hostname', 'localhost', '--dry-run'],
  ]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  const id = /"id":"(qmigrate-tls-[0-9a-f]{8})"/.exec(lines[0] ?? '')?.[1];
  assert.ok(id, r.stdout);
  assert.equal(
    lines[0],
    `destination object-add {"qom-type":"tls-creds-x509","id":"${id}","dir":"${pki.both}","endpoint":"server","verify-peer":true}`,
  );
  assert.equal(
    lines[1],
    `source      object-add {"qom-type":"tls-creds-x509","id":"${id}","dir":"${pki.both}","endpoint":"client","verify-peer":true}`,
  );
  assert.ok(lines.includes(`destination migrate-set-parameters {"tls-creds":"${id}"}`), r.stdout);
  assert.ok(
    lines.includes(`source      migrate-set-parameters {"tls-creds":"${id}","tls-hostname":"localhost"}`),
    r.stdout,
  );
  assert.deepEqual(lines.slice(-4), [
    'source      migrate-set-parameters {"tls-creds":"","tls-hostname":""}  (once the migration has ended)',
    `source      object-del {"id":"${id}"}  (once the migration has ended)`,
    'destination migrate-set-parameters {"tls-creds":""}  (once the migration has ended)',
    `destination object-del {"id":"${id}"}  (once the migration has ended)`,
  ]);
  for (const peer of [lab.src, lab.dst]) assert.deepEqual(await qmigrateObjects(peer.qmp), []);
  assert.equal((await lab.dst.qmp.queryStatus()).status, 'inmigrate');
});

test('a destination certificate from another CA: exit 1, one line saying why, the source runs on, no object left', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const other = makeCa(root, 'other');
  const otherServer = makeCredsDir(other, join(root, 'other-server'), 'server');
  const env = await tlsLab(t, pki.server);
  if (!env) return;
  const { lab, from, to } = env;
  const started = Date.now();
  const r = await qmigrate([
    'migrate',
    ...['--from', from, '--to', to, '--from-qmp-tls', pki.client, '--to-qmp-tls', pki.client],
    ...['--tcp', '127.0.0.1:0', '--from-tls-creds', pki.client, '--to-tls-creds', otherServer],
  ]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.ok(Date.now() - started < 30_000);
  const failed = r.stdout.split('\n').filter((l) => /^migration failed/.test(l));
  assert.equal(failed.length, 1, r.stdout);
  // QEMU 10.0's own text (GnuTLS's verdict on the server's certificate), as its error-desc.
  assert.equal(failed[0], "migration failed: The certificate hasn't got a known issuer");
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
  assert.deepEqual(await qmigrateObjects(lab.src.qmp), []);
  assert.equal((await lab.src.qmp.queryMigrateParameters())['tls-creds'], '');
});

test('a monitor over TLS with the wrong CA: exit 3, one line naming the monitor and the check', async (t) => {
  const root = pkiRoot(t);
  const pki = makePki(root);
  const other = makeCa(root, 'other');
  const otherClient = makeCredsDir(other, join(root, 'other-client'), 'client');
  const env = await tlsLab(t, pki.server);
  if (!env) return;
  const { from, to } = env;
  const r = await qmigrate([
    'migrate',
    ...['--from', from, '--to', to, '--from-qmp-tls', otherClient, '--to-qmp-tls', pki.client],
    ...['--tcp', '127.0.0.1:0', '--tls-creds', pki.both],
  ]);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  assert.match(
    r.stderr,
    /^qmigrate: cannot reach the source's monitor at tcp:127\.0\.0\.1:\d+: TLS: the server's certificate is not signed by a CA we trust/m,
  );
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

test('Ctrl-C during a TLS migration: cancelled, exit 130, the source runs on without the object', async (t) => {
  const pki = makePki(pkiRoot(t));
  const env = await tlsLab(t, pki.server);
  if (!env) return;
  const { lab, from, to } = env;
  const child = spawn(
    process.execPath,
    [
      ...['--import', 'tsx', bin, 'migrate', '--from', from, '--to', to],
      ...['--from-qmp-tls', pki.client, '--to-qmp-tls', pki.client, '--tcp', '127.0.0.1:0'],
      ...['--tls-creds', pki.both, '--max-bandwidth', '1M', '--json'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  const active = new Promise<void>((resolve) =>
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('"status":"active"')) resolve();
    }),
  );
  const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  t.after(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  // A run that ends before it is active (refused) must fail here, not wait forever.
  const first = await Promise.race([active.then(() => 'active'), closed.then(() => 'ended')]);
  assert.equal(first, 'active', stdout + stderr);
  child.kill('SIGINT');
  assert.equal(await closed, 130, stdout);
  const report = JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
  assert.equal(report.status, 'cancelled');
  assert.equal((await lab.src.qmp.queryStatus()).status, 'running');
  assert.deepEqual(await qmigrateObjects(lab.src.qmp), []);
  assert.equal((await lab.src.qmp.queryMigrateParameters())['tls-creds'], '');
});
