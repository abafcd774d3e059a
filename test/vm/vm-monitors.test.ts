// `qmigrate vm` takes QEMU's monitor options: -qmp unix/tcp/stdio, -chardev socket + -mon,
// -monitor for HMP; several QMP clients at once; QEMU's texts for bad command lines.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { QmpClient } from '../../src/qmp/client.js';
import { requireQemu } from '../helpers/qemu.js';
import { runQmigrate, spawnQmigrate } from '../helpers/qmigrate.js';

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-vm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function connectRetry(addr: Parameters<typeof QmpClient.connect>[0]): Promise<QmpClient> {
  for (let i = 0; ; i++) {
    try {
      return await QmpClient.connect(addr, { timeout: 500 });
    } catch (e) {
      if (i > 100) throw e;
      await sleep(50);
    }
  }
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('-qmp unix and tcp, -chardev/-mon, several clients at once, quit', async (t) => {
  const dir = tmp(t);
  const port = await freePort();
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none',
    '-display',
    'none',
    '-nodefaults',
    '-qmp',
    `unix:${join(dir, 'a.sock')},server=on,wait=off`,
    '-qmp',
    `tcp:127.0.0.1:${port},server=on,wait=off`,
    '-chardev',
    `socket,id=mon0,path=${join(dir, 'b.sock')},server=on,wait=off`,
    '-mon',
    'chardev=mon0,mode=control',
  ]);
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  t.after(() => child.kill('SIGKILL'));
  const a = await connectRetry(join(dir, 'a.sock'));
  const a2 = await connectRetry(join(dir, 'a.sock'));
  const b = await connectRetry({ host: '127.0.0.1', port });
  const c = await connectRetry(join(dir, 'b.sock'));
  const seen = b.listen('STOP');
  await a.stop();
  assert.equal((await seen.get())?.event, 'STOP', 'events reach every negotiated client');
  assert.deepEqual(await c.queryStatus(), { status: 'paused', running: false });
  assert.deepEqual(await a2.queryStatus(), { status: 'paused', running: false });
  assert.equal((await c.features()).channels, true, 'channels are detected as on QEMU 10.0');
  await a.quit();
  assert.equal(await exited, 0);
  for (const x of [a, a2, b, c]) await x.close().catch(() => {});
});

test('-qmp stdio speaks QMP on standard input and output', async () => {
  const r = await runQmigrate(
    ['vm', '-machine', 'none', '-qmp', 'stdio'],
    '{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n{"execute":"quit"}\n',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout.split('\r\n').slice(1).join('\r\n'),
    '{"return": {}}\r\n{"return": {"status": "running", "running": true}}\r\n{"return": {}}\r\n',
  );
  assert.match(r.stdout, /^\{"QMP": \{"version": \{"qemu": \{"micro": 2, "minor": 0, "major": 10\}/);
});

test('wait=on holds start-up until the first client connects', async (t) => {
  const dir = tmp(t);
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none',
    '-qmp',
    `unix:${join(dir, 'w.sock')},server=on,wait=on`,
  ]);
  t.after(() => child.kill('SIGKILL'));
  const c = await connectRetry(join(dir, 'w.sock'));
  assert.deepEqual(await c.queryStatus(), { status: 'running', running: true });
  await c.close();
});

for (const end of ['quit', 'SIGTERM'] as const) {
  test(`monitor sockets (one on an empty path: a temporary one) are gone after ${end}, as in QEMU 10.0`, async (t) => {
    const dir = tmp(t);
    const bin = requireQemu(t, '10.0');
    if (!bin) return;
    const seen: Record<string, unknown> = {};
    for (const kind of ['10.0', 'qmigrate'] as const) {
      const own = join(dir, kind);
      mkdirSync(own);
      // TMPDIR is where QEMU (g_get_tmp_dir) and qmigrate (os.tmpdir) put the temporary one.
      const env = { ...process.env, TMPDIR: own };
      const args = [
        '-machine',
        'none',
        '-display',
        'none',
        '-nodefaults',
        '-qmp',
        `unix:${join(own, 'q.sock')},server=on,wait=off`,
        '-chardev',
        'socket,id=c0,path=,server=on,wait=off',
        '-mon',
        'chardev=c0,mode=control',
        '-monitor',
        `unix:${join(own, 'h.sock')},server=on,wait=off`,
      ];
      const child =
        kind === 'qmigrate'
          ? spawnQmigrate(['vm', ...args], { stdio: 'ignore', env })
          : spawn(bin.path, [...bin.args, ...args], { env: { ...bin.env, TMPDIR: own }, stdio: 'ignore' });
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      t.after(() => child.kill('SIGKILL'));
      const q = await connectRetry(join(own, 'q.sock'));
      const temp = readdirSync(own).filter((f) => /^qemu-socket-[A-Za-z0-9]{6}$/.test(f));
      assert.equal(temp.length, 1, `${kind}: one temporary socket in TMPDIR`);
      const c = await connectRetry(join(own, temp[0]!));
      assert.equal((await c.queryStatus()).status, 'running');
      await c.close();
      if (end === 'quit') await q.quit();
      else child.kill('SIGTERM');
      await exited;
      await q.close().catch(() => {});
      // (tsx, which runs qmigrate from source here, keeps a cache directory in TMPDIR.)
      seen[kind] = readdirSync(own).filter((f) => statSync(join(own, f)).isSocket());
    }
    assert.deepEqual(seen, { '10.0': [], qmigrate: [] });
  });
}

const BAD: [string[], RegExp][] = [
  [['-bogus'], /^qmigrate: -bogus: invalid option$/m],
  [['-incoming'], /^qmigrate: -incoming: requires an argument$/m],
  [['-m', 'foo'], /^qmigrate: -m foo: Parameter 'size' expects a non-negative number below 2\^64$/m],
  [
    ['-machine', 'pc'],
    /^qmigrate: unsupported machine type: "pc"\nUse -machine help to list supported machines$/m,
  ],
  [
    ['-qmp', 'foo'],
    /^qmigrate: -qmp foo: 'foo' is not a valid char driver\nqmigrate: -qmp foo: parse error: foo$/m,
  ],
  [
    ['-qmp', 'unix:/x.sock,server=maybe'],
    /-qmp unix:\/x.sock,server=maybe: Parameter 'server' expects 'on' or 'off'/,
  ],
  [
    ['-qmp', 'unix:/nonexistent/dir/q.sock,server=on,wait=off'],
    /Failed to bind socket to \/nonexistent\/dir\/q.sock: No such file or directory/,
  ],
  [
    ['-qmp', 'unix:/nonexistent/q.sock'],
    /Failed to connect to '\/nonexistent\/q.sock': No such file or directory/,
  ],
  [['-mon', 'chardev=nope'], /^qmigrate: -mon chardev=nope: chardev "nope" not found$/m],
  [['-chardev', 'bogus,id=c0'], /^qmigrate: -chardev bogus,id=c0: 'bogus' is not a valid char driver name$/m],
];

for (const [args, want] of BAD) {
  test(`qmigrate vm ${args.join(' ')} exits 1 with QEMU's message`, async () => {
    const r = await runQmigrate(['vm', ...args]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, want);
  });
}

test('-monitor unix: serves the human monitor (banner, prompt, commands, quit)', async (t) => {
  const dir = tmp(t);
  const sock = join(dir, 'hmp.sock');
  const child = spawnQmigrate([
    'vm',
    '-machine',
    'none',
    '-S',
    '-monitor',
    `unix:${sock},server=on,wait=off`,
  ]);
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  t.after(() => child.kill('SIGKILL'));
  const { connect } = await import('node:net');
  let s: import('node:net').Socket | undefined;
  for (let i = 0; !s; i++) {
    s = await new Promise((res) => {
      const c = connect(sock, () => res(c));
      c.once('error', () => res(undefined));
    });
    if (!s) await sleep(50);
    if (i > 100) throw new Error('no monitor socket');
  }
  let out = '';
  s.on('data', (d) => {
    out += d.toString('latin1');
  });
  const waitFor = async (text: string) => {
    for (let i = 0; i < 200 && !out.includes(text); i++) await sleep(25);
    assert.ok(out.includes(text), `monitor never printed ${JSON.stringify(text)}: ${JSON.stringify(out)}`);
  };
  await waitFor('(qemu) ');
  assert.match(out, /^QEMU 10\.0\.2 monitor - type 'help' for more information\r\n/);
  s.write('info status\r');
  await waitFor('VM status: paused (prelaunch)\r\n');
  s.write('quit\r');
  assert.equal(await exited, 0);
  s.destroy();
});
