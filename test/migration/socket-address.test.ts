// A socket address is used exactly as given, or refused as QEMU 10.0 refuses it: a unix path
// longer than sun_path (the kernel would cut it, and two long paths would reach the same
// listener), abstract names in their tight (QEMU's default) or padded form with
// query-migrate reporting `abstract`/`tight`, and a host that does not resolve. Each case is
// checked against QEMU 10.0 itself, over migration, -qmp/-chardev and the QMP classes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { schema } from '../../src/qapi/schema.js';
import type { MigrationAddress, SocketAddress } from '../../src/qapi/types.js';
import { QmpClient } from '../../src/qmp/client.js';
import { Dispatcher } from '../../src/qmp/dispatch.js';
import { ConnectError } from '../../src/qmp/errors.js';
import { QmpServer } from '../../src/qmp/server.js';
import { SocketError } from '../../src/util/sockets.js';
import { VERSION_INFO } from '../../src/vm/vm.js';
import { writeMixedImage } from '../helpers/guest.js';
import { type Peer, type PeerKind, startPeer, waitMigration } from '../helpers/peers.js';
import { qemuStderr, requireQemu } from '../helpers/qemu.js';
import { runQmigrate, spawnQmigrate } from '../helpers/qmigrate.js';

const MiB = 16;

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-addr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A path of exactly `bytes` bytes inside `dir`. */
function pathOf(dir: string, bytes: number, fill = 'p'): string {
  return join(dir, fill.repeat(bytes - dir.length - 1));
}

/** A fresh abstract name (the namespace is shared by the whole machine). */
const abstractName = (tag: string) =>
  `qmigrate-test-${tag}-${process.pid}-${Math.random().toString(36).slice(2)}`;

const unix = (path: string, extra: Partial<SocketAddress> = {}): MigrationAddress =>
  ({ transport: 'socket', type: 'unix', path, ...extra }) as MigrationAddress;

async function peer(t: TestContext, kind: PeerKind, dir: string, name: string, extra: string[] = []) {
  const image = join(dir, `${name}.img`);
  if (extra.length === 0) writeMixedImage(image, MiB << 20, 2);
  else writeFileSync(image, '');
  return startPeer(t, kind, dir, name, image, MiB, extra);
}

test('an over-long unix path fails migrate and migrate-incoming with QEMU 10.0 words', async (t) => {
  const dir = tmp(t);
  const results: Record<string, unknown>[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const src = await peer(t, kind, dir, `src-${kind}`);
    if (!src) return;
    const r: Record<string, unknown> = {};
    for (const [name, path, abstract] of [
      ['path', pathOf(dir, 200), false],
      ['path 109', pathOf(dir, 109), false],
      ['abstract 108', 'a'.repeat(108), true],
    ] as const) {
      await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr: unix(path, { abstract }) }] });
      const info = await waitMigration(src.qmp, 10_000);
      r[name] = [info.status, info['error-desc']];
    }
    const dst = (await peer(t, kind, dir, `dst-${kind}`, ['-incoming', 'defer']))!;
    const err = await dst.qmp
      .migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix(pathOf(dir, 150)) }] })
      .then(
        () => 'accepted',
        (e: Error) => e.message,
      );
    r.incoming = [err, (await dst.qmp.queryMigrate()).status];
    results.push(r);
  }
  const long = pathOf(dir, 200);
  assert.deepEqual(results[1]!.path, ['failed', `UNIX socket path '${long}' is too long`]);
  assert.deepEqual(results[1]!.incoming, [`UNIX socket path '${pathOf(dir, 150)}' is too long`, 'setup']);
  assert.deepEqual(results[1], results[0]);
});

test('a 108-byte unix path (all of sun_path) works and is reported whole, as by QEMU 10.0', async (t) => {
  const dir = tmp(t);
  const shown: unknown[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const dst = await peer(t, kind, dir, `dst-${kind}`, ['-incoming', 'defer']);
    if (!dst) return;
    const path = pathOf(dir, 108, kind === 'qmigrate' ? 'q' : 'Q');
    await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix(path) }] });
    const sa = (await dst.qmp.queryMigrate())['socket-address'];
    assert.deepEqual(sa, [{ type: 'unix', path }]);
    shown.push(sa?.map((a) => ({ ...a, path: (a as { path: string }).path.length })));
    // And the source reaches exactly that path.
    const src = (await peer(t, 'qmigrate', dir, `src-${kind}`))!;
    await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr: unix(path) }] });
    assert.equal((await waitMigration(src.qmp)).status, 'completed');
  }
  assert.deepEqual(shown[1], shown[0]);
});

for (const args of [
  (long: string) => ['-incoming', `unix:${long}`],
  (long: string) => ['-qmp', `unix:${long},server=on,wait=off`],
  (long: string) => ['-qmp', `unix:${long}`],
  (long: string) => ['-chardev', `socket,id=c0,path=${long},server=on,wait=off`, '-mon', 'chardev=c0'],
  (long: string) => ['-qmp', `unix:${long.slice(-108)},abstract=on,server=on,wait=off`],
]) {
  // Bounded: a qmigrate that took the cut path would listen and never exit.
  test(`qmigrate vm ${args('LONG').join(' ')}: exits 1 with QEMU 10.0's two lines`, {
    timeout: 30_000,
  }, async (t) => {
    const dir = tmp(t);
    const long = pathOf(dir, 200);
    const want = await qemuStderr(t, args(long));
    if (want === undefined) return;
    assert.match(want, /UNIX socket path '.*' is too long\nPath must be less than 10[78] bytes\n$/);
    const r = await runQmigrate(['vm', '-machine', 'none', ...args(long)]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.replaceAll('qmigrate: ', ''), want);
  });
}

test('QmpServer.listen and QmpClient.connect refuse an over-long unix path', async (t) => {
  const dir = tmp(t);
  const long = pathOf(dir, 109);
  const server = new QmpServer({ dispatcher: new Dispatcher(schema), version: VERSION_INFO });
  t.after(() => server.close());
  await assert.rejects(server.listen({ kind: 'unix', path: long }), (e: unknown) => {
    assert.ok(e instanceof SocketError);
    assert.equal(e.message, `UNIX socket path '${long}' is too long`);
    return true;
  });
  // The first 108 bytes name a real listener: the long path must still not reach it.
  await server.listen({ kind: 'unix', path: long.slice(0, 108) });
  await assert.rejects(QmpClient.connect(long, { timeout: 2000 }), (e: unknown) => {
    assert.ok(e instanceof ConnectError);
    assert.equal(e.message, `cannot open a QMP session with ${long}: UNIX socket path '${long}' is too long`);
    return true;
  });
});

test('a listener on an unresolvable host fails as QEMU 10.0 says: address resolution failed', async (t) => {
  const dir = tmp(t);
  const results: unknown[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const dst = await peer(t, kind, dir, `dst-${kind}`, ['-incoming', 'defer']);
    if (!dst) return;
    const addr = { transport: 'socket', type: 'inet', host: 'nonexistent.invalid', port: '0' } as const;
    results.push(
      await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr }] }).then(
        () => 'accepted',
        (e: Error) => e.message,
      ),
    );
  }
  assert.match(String(results[1]), /^address resolution failed for nonexistent\.invalid:0: /);
  assert.equal(results[1], results[0]);
  // And a monitor listening there, on the command line.
  const spec = 'tcp:nonexistent.invalid:0,server=on,wait=off';
  const want = await qemuStderr(t, ['-qmp', spec]);
  assert.match(want ?? '', /^-qmp \S+: address resolution failed for nonexistent\.invalid:0: /);
  const r = await runQmigrate(['vm', '-machine', 'none', '-qmp', spec]);
  assert.deepEqual([r.code, r.stderr.replaceAll('qmigrate: ', '')], [1, want]);
});

test('a unix listener where no socket can be made says ENOENT as QEMU 10.0, not libuv’s EACCES', async (t) => {
  const dir = tmp(t);
  // /proc takes no new files: bind(2) fails with ENOENT there.
  const path = `/proc/qmigrate-${process.pid}.sock`;
  const results: unknown[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const dst = await peer(t, kind, dir, `dst-${kind}`, ['-incoming', 'defer']);
    if (!dst) return;
    results.push(
      await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix(path) }] }).then(
        () => 'accepted',
        (e: Error) => e.message,
      ),
    );
  }
  assert.deepEqual(results, [
    `Failed to bind socket to ${path}: No such file or directory`,
    `Failed to bind socket to ${path}: No such file or directory`,
  ]);
});

test('an unresolvable host fails as QEMU 10.0 says: address resolution failed for HOST:PORT', async (t) => {
  const dir = tmp(t);
  const descs: (string | undefined)[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const src = await peer(t, kind, dir, `src-${kind}`);
    if (!src) return;
    const addr = { transport: 'socket', type: 'inet', host: 'nonexistent.invalid', port: '4444' } as const;
    await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr }] });
    const info = await waitMigration(src.qmp, 60_000);
    assert.equal(info.status, 'failed');
    descs.push(info['error-desc']);
  }
  assert.match(descs[1] ?? '', /^address resolution failed for nonexistent\.invalid:4444: /);
  assert.equal(descs[1], descs[0]);
});

test('a connect is refused where QEMU 10.0 cannot resolve: an empty host, IPv6 with ipv4 only', async (t) => {
  // A listener on every local address: taking '' for localhost, or ignoring the family of an
  // address, would reach it and migrate the guest there.
  const sink = createServer((s) => s.resume().on('error', () => {}));
  await new Promise<void>((r) => sink.listen({ host: '::', port: 0 }, r));
  t.after(() => sink.close());
  const port = String((sink.address() as { port: number }).port);
  const dir = tmp(t);
  const results: Record<string, unknown>[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const src = await peer(t, kind, dir, `src-${kind}`);
    if (!src) return;
    const r: Record<string, unknown> = {};
    for (const [name, addr] of [
      ['empty host', { host: '', port }],
      ['::1, ipv4 only', { host: '::1', port, ipv4: true, ipv6: false }],
    ] as const) {
      await src.qmp.migrate({
        channels: [{ 'channel-type': 'main', addr: { transport: 'socket', type: 'inet', ...addr } }],
      });
      const info = await waitMigration(src.qmp, 20_000);
      r[name] = [info.status, info['error-desc'], (await src.qmp.queryStatus()).status];
    }
    results.push(r);
  }
  assert.deepEqual(results[1], {
    'empty host': ['failed', `address resolution failed for :${port}: Name or service not known`, 'running'],
    '::1, ipv4 only': [
      'failed',
      `address resolution failed for ::1:${port}: Address family for hostname not supported`,
      'running',
    ],
  });
  assert.deepEqual(results[1], results[0]);
  // The same rule for a QMP client and a client chardev.
  await assert.rejects(
    QmpClient.connect({ host: '', port: Number(port) }, { timeout: 2000 }),
    (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.match(e.message, /address resolution failed for :\d+: Name or service not known$/);
      return true;
    },
  );
  const want = await qemuStderr(t, ['-qmp', `tcp::${port}`]);
  assert.equal(
    want,
    `-qmp tcp::${port}: address resolution failed for :${port}: Name or service not known\n`,
  );
  const r = await runQmigrate(['vm', '-machine', 'none', '-qmp', `tcp::${port}`]);
  assert.deepEqual([r.code, r.stderr.replaceAll('qmigrate: ', '')], [1, want]);
});

test('an empty unix path listens on a fresh temporary socket, as QEMU 10.0 makes one', async (t) => {
  const dir = tmp(t);
  const shown: unknown[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const dst = await peer(t, kind, dir, `dst-${kind}`, ['-incoming', 'defer']);
    if (!dst) return;
    await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix('') }] });
    const sa = (await dst.qmp.queryMigrate())['socket-address'] as { type: string; path: string }[];
    assert.equal(sa.length, 1);
    const path = sa[0]!.path;
    t.after(() => rmSync(path, { force: true }));
    assert.match(path, /\/qemu-socket-[A-Za-z0-9]{6}$/);
    shown.push({ ...sa[0], path: path.replace(/-[A-Za-z0-9]{6}$/, '-XXXXXX') });
    // The source reaches the destination there.
    const src = (await peer(t, 'qmigrate', dir, `src-${kind}`))!;
    await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr: unix(path) }] });
    assert.equal((await waitMigration(src.qmp)).status, 'completed');
    assert.equal((await waitMigration(dst.qmp)).status, 'completed');
  }
  assert.deepEqual(shown[1], shown[0]);
});

test('a unix path with a NUL is refused, never cut where the kernel would end it', async (t) => {
  const dir = tmp(t);
  // A destination listening on the path up to the NUL: the cut path must not reach it.
  const cut = join(dir, 'u');
  const withNul = `${cut}\u0000v`;
  const dst = (await peer(t, 'qmigrate', dir, 'dst', ['-incoming', 'defer']))!;
  await dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix(cut) }] });
  const refused = `UNIX socket path '${withNul}' has a NUL character, where the kernel would cut it`;
  const results: unknown[] = [];
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const src = await peer(t, kind, dir, `src-${kind}`);
    if (!src) return;
    await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr: unix(withNul) }] });
    const info = await waitMigration(src.qmp, 20_000);
    results.push([info.status, info['error-desc']]);
  }
  // QEMU 10.0 makes U+0000 the bytes C0 80, a path that does not exist.
  assert.deepEqual(results, [
    ['failed', `Failed to connect to '${withNul}': No such file or directory`],
    ['failed', refused],
  ]);
  assert.equal((await dst.qmp.queryMigrate()).status, 'setup', 'the cut path was reached');
  // A listener: the command is refused.
  const dst2 = (await peer(t, 'qmigrate', dir, 'dst2', ['-incoming', 'defer']))!;
  await assert.rejects(
    dst2.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix(withNul) }] }),
    (e: Error) => e.message === refused,
  );
});

test('an abstract name with a NUL is refused: QEMU names it by the bytes C0 80, Node cannot', async (t) => {
  const dir = tmp(t);
  const name = `${abstractName('nul')}\u0000x`;
  const refused = `UNIX socket name '${name}' has a NUL character, which QEMU names by the bytes C0 80 and qmigrate cannot`;
  const src = (await peer(t, 'qmigrate', dir, 'src'))!;
  await src.qmp.migrate({ channels: [{ 'channel-type': 'main', addr: unix(name, { abstract: true }) }] });
  const info = await waitMigration(src.qmp, 20_000);
  assert.deepEqual([info.status, info['error-desc']], ['failed', refused]);
  const dst = (await peer(t, 'qmigrate', dir, 'dst', ['-incoming', 'defer']))!;
  await assert.rejects(
    dst.qmp.migrateIncoming({ channels: [{ 'channel-type': 'main', addr: unix(name, { abstract: true }) }] }),
    (e: Error) => e.message === refused,
  );
});

/** Migrates `src` to `dst` over an abstract name; returns the source's end state. */
async function migrateAbstract(
  src: Peer,
  dst: Peer,
  name: string,
  listen: { tight?: boolean },
  dial: { tight?: boolean },
): Promise<{ status?: string; error?: string; socketAddress?: SocketAddress[] }> {
  await dst.qmp.migrateIncoming({
    channels: [{ 'channel-type': 'main', addr: unix(name, { abstract: true, ...listen }) }],
  });
  const socketAddress = (await dst.qmp.queryMigrate())['socket-address'];
  await src.qmp.migrate({
    channels: [{ 'channel-type': 'main', addr: unix(name, { abstract: true, ...dial }) }],
  });
  const info = await waitMigration(src.qmp);
  return { status: info.status, error: info['error-desc'], socketAddress };
}

for (const tight of [undefined, true, false]) {
  for (const [from, to] of [
    ['qmigrate', '10.0'],
    ['10.0', 'qmigrate'],
  ] as const) {
    test(`abstract socket, tight=${tight ?? 'default'}: ${from} source reaches a ${to} destination`, async (t) => {
      const dir = tmp(t);
      const src = await peer(t, from, dir, 'src');
      const dst = await peer(t, to, dir, 'dst', ['-incoming', 'defer']);
      if (!src || !dst) return;
      const name = abstractName(`t${tight}`);
      const opt = tight === undefined ? {} : { tight };
      const r = await migrateAbstract(src, dst, name, opt, opt);
      assert.equal(r.status, 'completed', r.error);
      assert.equal((await waitMigration(dst.qmp)).status, 'completed');
      // QEMU 10.0 reports the listener with abstract and tight (true unless tight=off).
      assert.deepEqual(r.socketAddress, [
        { type: 'unix', path: name, abstract: true, tight: tight !== false },
      ]);
    });
  }
}

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind}: a tight abstract name and its padded form are different addresses`, async (t) => {
    const dir = tmp(t);
    const src = await peer(t, kind, dir, 'src');
    const dst = await peer(t, kind === 'qmigrate' ? '10.0' : 'qmigrate', dir, 'dst', ['-incoming', 'defer']);
    if (!src || !dst) return;
    const name = abstractName('mismatch');
    const r = await migrateAbstract(src, dst, name, { tight: false }, { tight: true });
    assert.deepEqual([r.status, r.error], ['failed', `Failed to connect to '${name}': Connection refused`]);
  });
}

test('-qmp unix:NAME,abstract=on: qmigrate vm and QEMU 10.0 both reachable by QmpClient, tight or not', async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  for (const tight of [true, false]) {
    for (const kind of ['qmigrate', '10.0'] as const) {
      const name = abstractName(`qmp-${kind}-${tight}`);
      const spec = `unix:${name},abstract=on${tight ? '' : ',tight=off'},server=on,wait=off`;
      const child =
        kind === 'qmigrate'
          ? spawnQmigrate(['vm', '-machine', 'none', '-qmp', spec], { stdio: 'ignore' })
          : spawn(
              bin.path,
              [...bin.args, '-machine', 'none', '-display', 'none', '-nodefaults', '-qmp', spec],
              {
                env: bin.env,
                stdio: 'ignore',
              },
            );
      const exited = new Promise((r) => child.once('exit', r));
      t.after(async () => {
        child.kill('SIGKILL');
        await exited;
      });
      let qmp: QmpClient | undefined;
      for (let i = 0; i < 200 && !qmp; i++) {
        qmp = await QmpClient.connect({ path: name, abstract: true, tight }, { timeout: 1000 }).catch(
          () => undefined,
        );
        if (!qmp) await sleep(50);
      }
      assert.ok(qmp, `${kind} -qmp ${spec} not reachable`);
      assert.equal((await qmp.queryStatus()).status, 'running');
      // The other form of the same name is another address.
      await assert.rejects(
        QmpClient.connect({ path: name, abstract: true, tight: !tight }, { timeout: 1000 }),
        /Connection refused/,
      );
      await qmp.close();
      child.kill('SIGKILL');
      await exited;
    }
  }
});

test('the same unix path is read back from /proc as the kernel got it (no cut, tight length)', async (t) => {
  const dir = tmp(t);
  const dst = (await peer(t, 'qmigrate', dir, 'dst', ['-incoming', 'defer']))!;
  const name = abstractName('proc');
  await dst.qmp.migrateIncoming({
    channels: [{ 'channel-type': 'main', addr: unix(name, { abstract: true }) }],
  });
  // /proc/net/unix shows an abstract name as '@' and its bytes, each NUL as '@'.
  const lines = readFileSync('/proc/net/unix', 'latin1').split('\n');
  assert.ok(
    lines.some((l) => l.endsWith(` @${name}`)),
    'the listener is bound to the bare name',
  );
});

/** The kind of timer of established tcp connections whose remote port is `port` (Linux). */
function timersTo(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((r) => r.trim().split(/\s+/))
    .filter((f) => f[2]?.endsWith(`:${hex}`) && f[3] === '01')
    .map((f) => f[5]!.split(':')[0]!);
}

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind}: keep-alive on the source's address arms the connection's keepalive timer`, async (t) => {
    const dir = tmp(t);
    const src = await peer(t, kind, dir, 'src');
    if (!src) return;
    // A destination that reads everything, and a source that then waits in pre-switchover:
    // the connection idles, and its only timer is keepalive's if it is on.
    const server = (await import('node:net')).createServer((s) => s.resume());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    await src.qmp.migrateSetCapabilities({
      capabilities: [{ capability: 'pause-before-switchover', state: true }],
    });
    const seen: Record<string, string[]> = {};
    for (const keepAlive of [false, true]) {
      await src.qmp.migrate({
        channels: [
          {
            'channel-type': 'main',
            addr: {
              transport: 'socket',
              type: 'inet',
              host: '127.0.0.1',
              port: String(port),
              'keep-alive': keepAlive,
            },
          },
        ],
      });
      for (let i = 0; i < 500 && (await src.qmp.queryMigrate()).status !== 'pre-switchover'; i++)
        await sleep(20);
      let timers: string[] = [];
      for (let i = 0; i < 100; i++) {
        await sleep(20);
        timers = timersTo(port);
        if (timers.length === 1 && timers[0] !== '01') break;
      }
      seen[String(keepAlive)] = timers;
      await src.qmp.migrateCancel();
      await waitMigration(src.qmp);
      // QEMU refuses a migrate right after a cancel while its cleanup runs: give it a moment.
      await sleep(500);
    }
    // "02": the keepalive timer; "00": none.
    assert.deepEqual(seen, { false: ['00'], true: ['02'] });
  });
}
