// `qmigrate migrate --postcopy --tls-creds` between two qmigrate vms: the link cut in postcopy
// (exit 5) keeps the TLS objects, which the paused migration still needs, and the report says
// so; `--resume` then completes over TLS and removes what the first run left (tls-creds back
// to '' on both sides), so that nothing of qmigrate's stays behind; the source's transferred
// counts the bytes of both connections.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { cuttableSource } from '../helpers/cut-link.js';
import { waitMigrationStatus } from '../helpers/peers.js';
import { runQmigrate, startQmigrate } from '../helpers/qmigrate.js';
import { makePki, pkiRoot } from '../helpers/tls-certs.js';
import { startLab } from '../orchestrator/lab.js';

test('--postcopy over TLS: cut in postcopy (exit 5, TLS kept and said), --resume completes and removes it', async (t) => {
  const pki = makePki(pkiRoot(t));
  const lab = await startLab(t, 'qmigrate', 'qmigrate', {
    srcMiB: 16,
    // No workload on the destination: its page requests would pull the pages past
    // max-postcopy-bandwidth, and the postcopy phase would be over before the cut.
    workloadRate: 3000,
  });
  if (!lab) return;
  const path = (e: { kind: string; path?: string }) => e.path ?? '';
  const link = await cuttableSource(t, lab.dir, path(lab.plan.from));
  const tls = ['--tls-creds', pki.both, '--tls-hostname', 'localhost'];
  const run = startQmigrate(t, [
    'migrate',
    ...['--from', link.from, '--to', path(lab.plan.to), '--unix', join(lab.dir, 'm.sock')],
    ...['--max-bandwidth', '4M', '--parameter', 'max-postcopy-bandwidth=1M', '--postcopy', '--json'],
    ...tls,
  ]);
  await waitMigrationStatus(lab.src.qmp, 'postcopy-active', 30_000);
  await link.cut();
  const code = await run.exit(60_000);
  assert.equal(code, 5, run.stdout + run.stderr);
  const report = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.equal(report.status, 'postcopy-paused');
  assert.match((report.warnings ?? []).join('\n'), /TLS objects stay/);
  const creds = (await lab.src.qmp.queryMigrateParameters())['tls-creds'];
  assert.match(String(creds), /^qmigrate-tls-/, 'the paused migration keeps its TLS');
  await lab.src.qmp.migrateSetParameters({ 'max-postcopy-bandwidth': 0 });
  const back = ['migrate', '--from', path(lab.plan.from), '--to', path(lab.plan.to)];
  // --dry-run shows that removal among the commands, after migrate-recover and migrate.
  const dry = await runQmigrate([
    ...back,
    '--unix',
    join(lab.dir, 'dry.sock'),
    '--resume',
    '--dry-run',
    '--json',
  ]);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  const sent = dry.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    sent.map((c) => `${c.side} ${c.execute}`),
    [
      'destination migrate-recover',
      'source migrate',
      'source migrate-set-parameters',
      'source object-del',
      'destination migrate-set-parameters',
      'destination object-del',
    ],
  );
  const r = await runQmigrate([...back, '--unix', join(lab.dir, 'recover.sock'), '--resume', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const resumed = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}');
  assert.equal(resumed.status, 'completed');
  // transferred counts every connection's bytes, as QEMU's does across a recovery.
  const ram = resumed.source.ram;
  const parts = ram['precopy-bytes'] + ram['postcopy-bytes'] + ram['downtime-bytes'];
  assert.ok(ram.transferred >= parts, `transferred ${ram.transferred} < ${parts}, its parts`);
  assert.ok(resumed.transferred > report.transferred, 'the report counts what the resume sent');
  for (const peer of [lab.src, lab.dst])
    assert.equal((await peer.qmp.queryMigrateParameters())['tls-creds'], '', `${peer.kind}: tls-creds left`);
});
