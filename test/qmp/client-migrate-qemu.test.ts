// The client drives real migrations: QEMU 10.0 -> QEMU 10.0 with `channels` over tcp, unix,
// exec and file, and QEMU 7.2 -> QEMU 7.2 with the same channel objects, which the client
// turns into `uri` because 7.2 has no channels. RAM is compared byte for byte with pmemsave.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MigrationAddress, MigrationChannel, MigrationInfo } from '../../src/qapi/types.js';
import { QmpClient } from '../../src/qmp/client.js';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { type QemuVersion, requireQemu, startQemu } from '../helpers/qemu.js';

const MiB = 32;

async function until(c: QmpClient, done: (i: MigrationInfo) => boolean, ms = 60_000): Promise<MigrationInfo> {
  const deadline = Date.now() + ms;
  for (;;) {
    const info = await c.queryMigrate();
    if (done(info)) return info;
    if (Date.now() > deadline) throw new Error(`migration did not finish: ${JSON.stringify(info)}`);
    await sleep(25);
  }
}

async function vm(
  t: TestContext,
  version: QemuVersion,
  dir: string,
  name: string,
  image: string,
  extra: string[] = [],
) {
  const bin = requireQemu(t, version)!;
  const q = await startQemu(bin, extra, guestArgs(image, MiB));
  t.after(() => q.stop());
  q.qmp.close();
  const c = await QmpClient.connect(join(q.dir, 'qmp.sock'));
  t.after(() => c.close());
  return { c, dump: join(dir, `${name}.dump`) };
}

type Plan = (dir: string) => { out: MigrationAddress; in: MigrationAddress; incomingFirst: boolean };

const plans: Record<string, Plan> = {
  tcp: () => ({
    out: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: 'PORT' },
    in: { transport: 'socket', type: 'inet', host: '127.0.0.1', port: '0' },
    incomingFirst: true,
  }),
  unix: (dir) => ({
    out: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
    in: { transport: 'socket', type: 'unix', path: join(dir, 'mig.sock') },
    incomingFirst: true,
  }),
  exec: (dir) => ({
    out: { transport: 'exec', args: ['/bin/dd', `of=${join(dir, 'exec.mig')}`, 'status=none'] },
    in: { transport: 'exec', args: ['/bin/cat', join(dir, 'exec.mig')] },
    incomingFirst: false,
  }),
  file: (dir) => ({
    out: { transport: 'file', filename: join(dir, 'file.mig'), offset: 4096 },
    in: { transport: 'file', filename: join(dir, 'file.mig'), offset: 4096 },
    incomingFirst: false,
  }),
};

async function migrate(t: TestContext, version: QemuVersion, transport: string): Promise<void> {
  if (!requireQemu(t, version)) return;
  const dir = mkdtempSync(join(tmpdir(), `qmigrate-mig-${transport}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const srcImage = join(dir, 'src.img');
  const dstImage = join(dir, 'dst.img');
  writeMixedImage(srcImage, MiB << 20, 7);
  writeFileSync(dstImage, Buffer.alloc(0));
  const src = await vm(t, version, dir, 'src', srcImage);
  const dst = await vm(t, version, dir, 'dst', dstImage, ['-incoming', 'defer']);
  assert.equal((await src.c.features()).channels, version === '10.0');
  const plan = plans[transport]!(dir);
  const ch = (addr: MigrationAddress): MigrationChannel[] => [{ 'channel-type': 'main', addr }];

  if (plan.incomingFirst) {
    await dst.c.migrateIncoming({ channels: ch(plan.in) });
    if (plan.out.transport === 'socket' && plan.out.type === 'inet') {
      const listening = await dst.c.queryMigrate();
      const addr = listening['socket-address']?.[0];
      assert.ok(addr && addr.type === 'inet', `socket-address: ${JSON.stringify(listening)}`);
      plan.out.port = addr.port;
    }
  }
  await src.c.migrate({ channels: ch(plan.out) });
  const done = await until(src.c, (i) => i.status === 'completed' || i.status === 'failed');
  assert.equal(done.status, 'completed', JSON.stringify(done));
  if (!plan.incomingFirst) await dst.c.migrateIncoming({ channels: ch(plan.in) });
  await until(dst.c, (i) => i.status === 'completed' || i.status === 'failed');
  const deadline = Date.now() + 10_000;
  while ((await dst.c.queryStatus()).status !== 'running' && Date.now() < deadline) await sleep(25);
  assert.deepEqual(await dst.c.queryStatus(), {
    status: 'running',
    running: true,
    ...(version === '7.2' ? { singlestep: false } : {}),
  });
  assert.equal((await dst.c.queryMigrate()).status, 'completed');

  await src.c.pmemsave({ val: 0, size: MiB << 20, filename: src.dump });
  await dst.c.pmemsave({ val: 0, size: MiB << 20, filename: dst.dump });
  const a = readFileSync(src.dump);
  const b = readFileSync(dst.dump);
  assert.equal(b.length, MiB << 20);
  assert.ok(a.equals(readFileSync(srcImage)), 'source RAM is its image');
  assert.ok(a.equals(b), 'destination RAM equals the source RAM byte for byte');
}

for (const transport of ['tcp', 'unix', 'exec', 'file']) {
  test(`QEMU 10.0 -> QEMU 10.0 over ${transport}, driven with channels`, (t) =>
    migrate(t, '10.0', transport));
}
for (const transport of ['tcp', 'unix', 'exec']) {
  test(`QEMU 7.2 -> QEMU 7.2 over ${transport}, channels sent as uri`, (t) => migrate(t, '7.2', transport));
}
