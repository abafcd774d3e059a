// A multifd destination's connections before the load starts (src/migration/channel.ts
// IncomingChannels). A connection that is not a migration channel fails the incoming
// migration at once with QEMU 10.0's text, as QEMU does (checked against a real QEMU 10.0,
// with both exit-on-error values); where QEMU crashes or waits forever on a peer that is
// gone, qmigrate fails with a clear error; a source that cancels during setup, or drops a
// channel during the load, leaves the destination failed, never waiting.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { guestArgs, writeMixedImage } from '../helpers/guest.js';
import { startPeer, waitMigration, waitRunstate } from '../helpers/peers.js';
import { findQemu, requireQemu, untilIncludes } from '../helpers/qemu.js';
import { MiniQmp } from '../helpers/qmp-mini.js';

const CHANNELS = 2;
/** SETUP_GRACE_MS in src/migration/channel.ts: how long the rest may come after a close. */
const SETUP_GRACE_MS = 2000;
const MiB = 16;
const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

interface Dest {
  qmp: MiniQmp;
  child: ChildProcess;
  /** The migration socket. */
  path: string;
  stderr(): string;
  exited: Promise<number | null>;
}

/** A destination (QEMU 10.0 or qmigrate) listening with multifd on, its stderr kept. */
async function destination(t: TestContext, kind: 'qmigrate' | '10.0', exitOnError: boolean): Promise<Dest> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-setup-'));
  writeFileSync(join(dir, 'dst.img'), '');
  let cmd: string;
  let pre: string[];
  let env = process.env;
  if (kind === '10.0') {
    const q = findQemu('10.0');
    assert.ok('path' in q);
    cmd = q.path;
    pre = q.args;
    env = q.env;
  } else {
    cmd = process.execPath;
    pre = ['--import', 'tsx', entry, 'vm'];
  }
  const sock = join(dir, 'qmp.sock');
  const child = spawn(
    cmd,
    [
      ...pre,
      ...guestArgs(join(dir, 'dst.img'), MiB),
      '-display',
      'none',
      '-nodefaults',
      '-incoming',
      'defer',
      '-qmp',
      `unix:${sock},server=on,wait=off`,
    ],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const qmp = await MiniQmp.connect(
    sock,
    20_000,
    exited.then(() => {}),
  );
  t.after(() => qmp.close());
  await qmp.execute('qmp_capabilities');
  await qmp.execute('migrate-set-capabilities', {
    capabilities: [{ capability: 'multifd', state: true }],
  });
  await qmp.execute('migrate-set-parameters', { 'multifd-channels': CHANNELS });
  const path = join(dir, 'm.sock');
  const r = await qmp.execute('migrate-incoming', { uri: `unix:${path}`, 'exit-on-error': exitOnError });
  assert.deepEqual(r, { return: {} });
  return { qmp, child, path, stderr: () => stderr, exited };
}

async function open(t: TestContext, path: string): Promise<Socket> {
  const s = await new Promise<Socket>((res, rej) => {
    const c = connect(path, () => res(c));
    c.once('error', rej);
  });
  s.on('error', () => {});
  t.after(() => s.destroy());
  return s;
}

function init(id: number, patch?: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x11223344, 0);
  b.writeUInt32BE(1, 4);
  b[24] = id;
  patch?.(b);
  return b;
}

const HEADER = Buffer.from('5145564d0000000307000000046e6f6e65', 'hex');

interface Info {
  status?: string;
  'error-desc'?: string;
}

async function queryMigrate(d: Dest): Promise<Info> {
  return ((await d.qmp.execute('query-migrate')) as { return: Info }).return;
}

/** Waits until the incoming migration is final; returns query-migrate's answer. */
async function waitFinal(d: Dest, ms = 10_000): Promise<Info> {
  const deadline = Date.now() + ms;
  for (;;) {
    const info = await queryMigrate(d);
    if (info.status === 'failed' || info.status === 'completed') return info;
    if (Date.now() > deadline) throw new Error(`incoming migration still ${info.status} after ${ms} ms`);
    await sleep(20);
  }
}

/** The connections each case makes, and what QEMU 10.0 says about them. */
const CASES: {
  name: string;
  act: (t: TestContext, path: string) => Promise<void>;
  desc?: string;
  report: string;
}[] = [
  {
    name: 'a connection closed without a byte',
    act: async (t, p) => void (await open(t, p)).end(),
    // QEMU prints it and sets no error-desc; qmigrate sets this one.
    report: 'Failed to peek at channel',
  },
  {
    name: '64 bytes of zeros',
    act: async (t, p) => void (await open(t, p)).write(Buffer.alloc(64)),
    desc: 'multifd: received packet magic 0 expected 11223344',
    report:
      'failed to receive packet via multifd channel 0: multifd: received packet magic 0 expected 11223344',
  },
  {
    name: '10 bytes, then the end',
    act: async (t, p) => void (await open(t, p)).end(Buffer.alloc(10, 0x41)),
    desc: 'Unexpected end-of-file before all data were read',
    report:
      'failed to receive packet via multifd channel 0: Unexpected end-of-file before all data were read',
  },
  {
    name: 'an init packet of another version',
    act: async (t, p) => void (await open(t, p)).write(init(0, (b) => b.writeUInt32BE(2, 4))),
    desc: 'multifd: received packet version 2 expected 1',
    report: 'failed to receive packet via multifd channel 0: multifd: received packet version 2 expected 1',
  },
  {
    name: 'an init packet with a uuid this side does not have',
    act: async (t, p) => void (await open(t, p)).write(init(0, (b) => b.fill(7, 8, 24))),
    desc: "multifd: received uuid '07070707-0707-0707-0707-070707070707' and expected uuid '00000000-0000-0000-0000-000000000000' for channel 0",
    report:
      "failed to receive packet via multifd channel 0: multifd: received uuid '07070707-0707-0707-0707-070707070707' and expected uuid '00000000-0000-0000-0000-000000000000' for channel 0",
  },
  {
    name: 'a channel id out of range',
    act: async (t, p) => void (await open(t, p)).write(init(5)),
    desc: 'multifd: received channel id 5 is greater than number of channels 2',
    report:
      'failed to receive packet via multifd channel 0: multifd: received channel id 5 is greater than number of channels 2',
  },
  {
    name: 'a channel id twice',
    act: async (t, p) => {
      (await open(t, p)).write(init(0));
      await sleep(100);
      (await open(t, p)).write(init(0));
    },
    desc: "multifd: received id '0' already setup'",
    report: "multifd: received id '0' already setup'",
  },
];

for (const c of CASES) {
  for (const kind of ['10.0', 'qmigrate'] as const) {
    test(`${kind} destination, ${c.name}: failed at once, exit-on-error off`, async (t) => {
      if (kind === '10.0' && !requireQemu(t, '10.0')) return;
      const d = await destination(t, kind, false);
      await c.act(t, d.path);
      const info = await waitFinal(d);
      assert.equal(info.status, 'failed');
      assert.equal(info['error-desc'], kind === '10.0' ? c.desc : (c.desc ?? c.report));
      if (kind === '10.0')
        assert.ok((await untilIncludes(d.stderr, `${c.report}\n`)).includes(`${c.report}\n`));
      // Still answering, the guest not started.
      assert.equal(
        ((await d.qmp.execute('query-status')) as { return: { status: string } }).return.status,
        'inmigrate',
      );
    });
    test(`${kind} destination, ${c.name}: exit-on-error exits 1 saying why`, async (t) => {
      if (kind === '10.0' && !requireQemu(t, '10.0')) return;
      const d = await destination(t, kind, true);
      await c.act(t, d.path);
      const code = await Promise.race([d.exited, sleep(10_000).then(() => 'still running')]);
      assert.equal(code, 1);
      const program = kind === '10.0' ? 'qemu-system-x86_64' : 'qmigrate';
      const text = `${program}: ${c.report}\n`;
      assert.ok((await untilIncludes(d.stderr, text)).includes(text), d.stderr());
    });
  }
}

test('a channel id equal to the channel count (QEMU 10.0 crashes): failed, saying why', async (t) => {
  const d = await destination(t, 'qmigrate', false);
  (await open(t, d.path)).write(init(CHANNELS));
  const info = await waitFinal(d);
  assert.equal(info.status, 'failed');
  assert.equal(info['error-desc'], 'multifd: received channel id 2, but channel ids go from 0 to 1');
});

test('a multifd channel closed before the main channel came (QEMU waits forever): failed', async (t) => {
  const d = await destination(t, 'qmigrate', false);
  const s = await open(t, d.path);
  s.write(init(0));
  await sleep(100);
  s.end();
  const info = await waitFinal(d);
  assert.equal(info.status, 'failed');
  assert.equal(info['error-desc'], 'multifd channel 0 closed before the migration started');
});

test('the main channel closed before the multifd channels came (QEMU waits forever): failed', async (t) => {
  const d = await destination(t, 'qmigrate', false);
  const main = await open(t, d.path);
  (await open(t, d.path)).write(init(1));
  main.end(HEADER);
  const started = Date.now();
  const info = await waitFinal(d, SETUP_GRACE_MS + 10_000);
  assert.ok(Date.now() - started >= SETUP_GRACE_MS - 100, 'failed before the other channels had a chance');
  assert.equal(info.status, 'failed');
  assert.equal(info['error-desc'], 'the main channel closed before all multifd channels connected (1 of 2)');
});

test('silent connections are waited for, and the monitor answers meanwhile', async (t) => {
  const d = await destination(t, 'qmigrate', false);
  await open(t, d.path);
  (await open(t, d.path)).write(Buffer.alloc(10, 0x41));
  (await open(t, d.path)).write(HEADER);
  await sleep(SETUP_GRACE_MS + 500);
  const started = Date.now();
  assert.equal((await queryMigrate(d)).status, 'setup');
  assert.ok(Date.now() - started < 1000);
});

/** A source whose multifd-channels is one less than the destination's, cancelled in setup. */
for (const kind of ['qmigrate', '10.0'] as const) {
  test(`a ${kind} source cancelled while the destination waits for a channel: destination failed`, async (t) => {
    if (kind === '10.0' && !requireQemu(t, '10.0')) return;
    const dir = mkdtempSync(join(tmpdir(), 'qmigrate-setup-cancel-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    writeMixedImage(join(dir, 'src.img'), MiB << 20, 3);
    const src = (await startPeer(t, kind, dir, 'src', join(dir, 'src.img'), MiB))!;
    const d = await destination(t, 'qmigrate', false);
    await src.qmp.migrateSetCapabilities({ capabilities: [{ capability: 'multifd', state: true }] });
    await src.qmp.migrateSetParameters({ 'multifd-channels': CHANNELS - 1 });
    await src.qmp.migrate({ uri: `unix:${d.path}` });
    await sleep(500);
    assert.equal((await queryMigrate(d)).status, 'setup');
    await src.qmp.migrateCancel();
    assert.equal((await waitMigration(src.qmp)).status, 'cancelled');
    await waitRunstate(src.qmp, 'running');
    const info = await waitFinal(d, SETUP_GRACE_MS + 10_000);
    assert.equal(info.status, 'failed');
    assert.match(info['error-desc'] ?? '', /closed before/);
  });
}

test('a multifd channel closed while the main channel waits for its sync: failed, not waiting', async (t) => {
  const d = await destination(t, 'qmigrate', false);
  const main = await open(t, d.path);
  const ch0 = await open(t, d.path);
  const ch1 = await open(t, d.path);
  main.write(HEADER);
  ch0.write(init(0));
  ch1.write(init(1));
  await sleep(200);
  assert.equal((await queryMigrate(d)).status, 'active');
  ch0.end();
  await sleep(100);
  // The ram section's block list, then a MULTIFD_FLUSH: the load now waits for both SYNCs.
  const be64 = (v: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    return b;
  };
  main.write(
    Buffer.concat([
      Buffer.from([0x01, 0, 0, 0, 1, 3]),
      Buffer.from('ram', 'latin1'),
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 4]),
      be64((MiB << 20) | 0x04),
      Buffer.from([2]),
      Buffer.from('m0', 'latin1'),
      be64(MiB << 20),
      be64(0x200),
    ]),
  );
  const info = await waitFinal(d);
  assert.equal(info.status, 'failed');
  assert.match(info['error-desc'] ?? '', /multifd: channel 0 closed before its sync packet/);
});

/** A multifd packet header (1344 bytes) with `patch` applied. */
function badPacket(patch: (h: Buffer) => void): Buffer {
  const h = Buffer.alloc(1344);
  h.writeUInt32BE(0x11223344, 0);
  h.writeUInt32BE(1, 4);
  h.writeUInt32BE(128, 12);
  patch(h);
  return h;
}

for (const c of [
  {
    name: 'bad magic',
    patch: (h: Buffer) => h.writeUInt32BE(0, 0),
    want: 'multifd: received packet magic 0, expected 11223344',
  },
  {
    name: 'too many pages',
    patch: (h: Buffer) => h.writeUInt32BE(129, 12),
    want: 'multifd: received packet with 129 pages, expected 128',
  },
]) {
  for (const kind of ['10.0', 'qmigrate'] as const) {
    test(`${kind} destination, a packet with ${c.name} during the load: failed with QEMU's words`, async (t) => {
      if (kind === '10.0' && !requireQemu(t, '10.0')) return;
      const d = await destination(t, kind, false);
      const main = await open(t, d.path);
      main.write(HEADER);
      await sleep(50);
      (await open(t, d.path)).write(init(1));
      (await open(t, d.path)).write(Buffer.concat([init(0), badPacket(c.patch)]));
      if (kind === '10.0') {
        // QEMU records the channel's error and stays active until the main channel fails too.
        let info: Info = {};
        for (let i = 0; i < 250 && !info['error-desc']; i++) {
          info = await queryMigrate(d);
          await sleep(20);
        }
        assert.equal(info['error-desc'], c.want);
        main.destroy();
        const final = await waitFinal(d);
        assert.equal(final.status, 'failed');
        assert.equal(final['error-desc'], c.want);
      } else {
        // qmigrate fails the load at once; its error says what and where.
        const info = await waitFinal(d);
        assert.equal(info.status, 'failed');
        assert.equal(
          info['error-desc'],
          `load of migration failed: ${c.want} (at byte 64, section 'multifd channel 0')`,
        );
      }
    });
  }
}
