// qmigrate as a postcopy source to a real QEMU 10.0 destination (-machine none, RAM on
// memory-backend-ram so userfaultfd can serve it): a guest dirtying faster than max-bandwidth,
// migrate-start-postcopy during precopy, QEMU's states and events, the postcopy counters, RAM
// equal to the source's at the stop and consistent for the workload's check.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkGuestRam } from '../../src/machine/workload.js';
import type { MigrationAddress } from '../../src/qapi/types.js';
import { writeWorkloadImage } from '../helpers/guest.js';
import { type Peer, qemuPeer, startPeer, waitMigration, waitMigrationStatus } from '../helpers/peers.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';

const MiB = 32;

/** QEMU 10.0 waiting for a postcopy migration, its RAM anonymous (id m0, as the source's). */
async function qemuDestination(t: TestContext): Promise<Peer | undefined> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const machine = [
    '-object',
    `memory-backend-ram,id=m0,size=${MiB}M`,
    '-machine',
    'none,memory-backend=m0',
    '-m',
    `${MiB}M`,
  ];
  return qemuPeer(t, '10.0', await startQemu(bin, ['-incoming', 'defer'], machine));
}

async function postcopySetup(t: TestContext, name: string) {
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-pc-${name}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeWorkloadImage(join(dir, 'src.img'), MiB << 20);
  // Dirtying 20 MB/s against 4 MB/s of link: precopy alone never converges.
  const w = ['-object', 'qmigrate-workload,id=w0,rate=5000'];
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), MiB, w))!;
  const dst = await qemuDestination(t);
  if (!dst) return undefined;
  const caps = [
    { capability: 'postcopy-ram' as const, state: true },
    { capability: 'events' as const, state: true },
  ];
  await src.qmp.migrateSetCapabilities({ capabilities: caps });
  await dst.qmp.migrateSetCapabilities({ capabilities: caps });
  await src.qmp.migrateSetParameters({ 'max-bandwidth': 4 << 20 });
  return { dir, src, dst };
}

test('qmigrate -> QEMU 10.0: postcopy after a non-converging precopy completes with RAM equal', async (t) => {
  const s = await postcopySetup(t, 'qemu');
  if (!s) return;
  const { dir, src, dst } = s;
  const listener = src.qmp.listen('MIGRATION', 'STOP', 'RESUME');
  const addr: MigrationAddress = { transport: 'socket', type: 'unix', path: join(dir, 'm.sock') };
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] });
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
  await waitMigrationStatus(src.qmp, 'active');
  await sleep(700);
  assert.equal((await src.qmp.queryMigrate()).status, 'active', 'precopy has not converged');
  // The postcopy phase at 8 MiB/s lasts seconds; the downtime is the switch only.
  await src.qmp.migrateSetParameters({ 'max-postcopy-bandwidth': 8 << 20 });
  const switchAt = Date.now();
  await src.qmp.migrateStartPostcopy();
  const info = await waitMigration(src.qmp, 60_000);
  const postcopyMs = Date.now() - switchAt;
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal((await src.qmp.queryStatus()).status, 'postmigrate');
  const events = listener
    .drain()
    .map((e) => (e.event === 'MIGRATION' ? (e.data as { status: string }).status : e.event));
  listener.close();
  // QEMU 10.0's order as its own source shows it: STOP, device, postcopy-active, completed.
  assert.deepEqual(events, ['setup', 'active', 'STOP', 'device', 'postcopy-active', 'completed']);
  const ram = info.ram!;
  assert.ok(Number(ram['postcopy-bytes']) > 1 << 20, `postcopy bytes ${ram['postcopy-bytes']}`);
  assert.ok(Number(ram['precopy-bytes']) > 0);
  assert.equal(ram['postcopy-requests'], 0, 'a -machine none QEMU touches no page');
  // QEMU's postcopy_start ends the downtime once the package is out (QEMU 10.0 itself reported
  // 1 ms in one run and the whole postcopy phase in another: migration_downtime_end races it).
  assert.ok(postcopyMs > 1500, `the postcopy phase took ${postcopyMs} ms`);
  assert.ok(
    Number(info.downtime) >= 0 && Number(info.downtime) < postcopyMs / 2,
    `downtime ${info.downtime} ms of a ${postcopyMs} ms postcopy`,
  );
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'src.dump') });
  await dst.qmp.stop();
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'dst.dump') });
  const srcRam = readFileSync(join(dir, 'src.dump'));
  const dstRam = readFileSync(join(dir, 'dst.dump'));
  assert.ok(dstRam.equals(srcRam), 'destination RAM equals the source RAM at the stop');
  assert.equal(checkGuestRam(dstRam), 0, 'the workload check passes on the destination');
});

/** A unix-socket relay whose connections can be cut at will (the link breaking). */
async function cuttableRelay(t: TestContext, listen: string, target: string) {
  const pairs: Socket[] = [];
  const server = createServer((c) => {
    const u = connect(target);
    pairs.push(c, u);
    c.pipe(u);
    u.pipe(c);
    c.on('error', () => u.destroy());
    u.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(listen, r));
  t.after(() => server.close());
  return {
    cut() {
      for (const s of pairs) s.destroy();
    },
  };
}

test('qmigrate -> QEMU 10.0: a link cut in postcopy pauses both sides; migrate resume:true finishes it', async (t) => {
  const s = await postcopySetup(t, 'recover');
  if (!s) return;
  const { dir, src, dst } = s;
  // Slow enough to be cut in the middle.
  await src.qmp.migrateSetParameters({ 'max-postcopy-bandwidth': 2 << 20 });
  const relay = await cuttableRelay(t, join(dir, 'relay.sock'), join(dir, 'm.sock'));
  await dst.qmp.migrateIncoming({ uri: `unix:${join(dir, 'm.sock')}` });
  await src.qmp.migrate({ uri: `unix:${join(dir, 'relay.sock')}` });
  await waitMigrationStatus(src.qmp, 'active');
  await src.qmp.migrateStartPostcopy();
  await waitMigrationStatus(src.qmp, 'postcopy-active');
  await sleep(500);
  const during = await src.qmp.queryMigrate();
  // As QEMU 10.0 reports it in postcopy-active: downtime (0 until the end), no expected-downtime.
  assert.equal(during.downtime, 0);
  assert.equal(during['expected-downtime'], undefined);
  const before = during.ram!;
  assert.ok(Number(before.remaining) > 8 << 20, 'the cut comes with much left to send');
  relay.cut();
  await waitMigrationStatus(src.qmp, 'postcopy-paused').catch(async (e) => {
    throw new Error(`${e.message}: ${JSON.stringify(await src.qmp.queryMigrate())}`);
  });
  await waitMigrationStatus(dst.qmp, 'postcopy-paused');
  // Paused is still in postcopy (migration_in_postcopy): downtime, no expected-downtime.
  const paused = await src.qmp.queryMigrate();
  assert.equal(paused.downtime, 0);
  assert.equal(paused['expected-downtime'], undefined);
  assert.equal((await src.qmp.queryStatus()).status, 'finish-migrate', 'the source guest stays stopped');
  await assert.rejects(src.qmp.migrateCancel(), /Postcopy migration in progress, cannot cancel/);
  // Recovery: a new address on the destination, resume on the source.
  await dst.qmp.migrateRecover({ uri: `unix:${join(dir, 'r.sock')}` });
  await src.qmp.migrateSetParameters({ 'max-postcopy-bandwidth': 0 });
  const states = src.qmp.listen('MIGRATION');
  await src.qmp.migrate({ uri: `unix:${join(dir, 'r.sock')}`, resume: true });
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  const seen = states.drain().map((e) => e.data.status);
  states.close();
  assert.deepEqual(seen, ['postcopy-recover-setup', 'postcopy-recover', 'postcopy-active', 'completed']);
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  await src.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'src.dump') });
  await dst.qmp.stop();
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'dst.dump') });
  const dstRam = readFileSync(join(dir, 'dst.dump'));
  assert.ok(dstRam.equals(readFileSync(join(dir, 'src.dump'))), 'destination RAM equals the source RAM');
  assert.equal(checkGuestRam(dstRam), 0);
});

test('qmigrate -> QEMU 10.0: postcopy-ram on but never started: ADVISE, then an ordinary precopy completes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-pc-advise-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeWorkloadImage(join(dir, 'src.img'), MiB << 20);
  const src = (await startPeer(t, 'qmigrate', dir, 'src', join(dir, 'src.img'), MiB))!;
  const dst = await qemuDestination(t);
  if (!dst) return;
  const caps = [{ capability: 'postcopy-ram' as const, state: true }];
  await src.qmp.migrateSetCapabilities({ capabilities: caps });
  await dst.qmp.migrateSetCapabilities({ capabilities: caps });
  const uri = `unix:${join(dir, 'm.sock')}`;
  await dst.qmp.migrateIncoming({ uri });
  await src.qmp.migrate({ uri });
  const info = await waitMigration(src.qmp, 60_000);
  assert.equal(info.status, 'completed', JSON.stringify(info));
  assert.equal(info.ram?.['postcopy-bytes'], 0);
  assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  // migrate-start-postcopy once it is over: taken without a word, as QEMU takes it.
  assert.deepEqual(await src.qmp.migrateStartPostcopy(), {});
  await dst.qmp.stop();
  await dst.qmp.pmemsave({ val: 0, size: MiB << 20, filename: join(dir, 'dst.dump') });
  assert.ok(readFileSync(join(dir, 'dst.dump')).equals(readFileSync(join(dir, 'src.img'))));
});
