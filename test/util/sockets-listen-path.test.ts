// What a unix listener does with what is already at its path (src/util/sockets.ts): a stale
// socket is replaced; a regular file, a directory or a socket something listens on stays as
// it was and the listen fails saying what is there. QEMU 10.0 deletes the file and takes the
// path from the live socket (checked below, as the difference README documents); a directory
// stops both, with QEMU's words.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { schema } from '../../src/qapi/schema.js';
import { Dispatcher } from '../../src/qmp/dispatch.js';
import { QmpServer } from '../../src/qmp/server.js';
import { SocketError } from '../../src/util/sockets.js';
import { VERSION_INFO } from '../../src/vm/vm.js';
import { qemuStderr, requireQemu } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-listen-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function qmpServer(t: TestContext): QmpServer {
  const server = new QmpServer({ dispatcher: new Dispatcher(schema), version: VERSION_INFO });
  t.after(() => server.close());
  return server;
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(path, () => res());
  });
}

/** The first line a unix socket sends (a QMP greeting), or the connect error's code. */
function firstLine(path: string): Promise<string> {
  return new Promise((res) => {
    const s = connect(path);
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.includes('\n')) {
        s.destroy();
        res(got.slice(0, got.indexOf('\n')));
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
  });
}

/** Asserts that `p` rejects with a SocketError of exactly `message`. */
async function refused(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof SocketError, String(e));
    assert.equal(e.code, 'SOCKET_BIND');
    assert.equal(e.message, message);
    return true;
  });
}

test('a regular file at the QMP path survives and the listen says what is there', async (t) => {
  const path = join(tmp(t), 'qmp.sock');
  writeFileSync(path, 'precious\n');
  await refused(
    qmpServer(t).listen({ kind: 'unix', path }),
    `Failed to bind socket to ${path}: a regular file is there, not a socket (only a stale socket is replaced)`,
  );
  assert.equal(readFileSync(path, 'utf8'), 'precious\n');
});

test('a symbolic link at the path is left alone', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'qmp.sock');
  writeFileSync(join(dir, 'target'), '');
  symlinkSync(join(dir, 'target'), path);
  await refused(
    qmpServer(t).listen({ kind: 'unix', path }),
    `Failed to bind socket to ${path}: a symbolic link is there, not a socket (only a stale socket is replaced)`,
  );
  assert.ok(lstatSync(path).isSymbolicLink());
});

test('a stale socket at the path (nothing listens) is replaced', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'qmp.sock');
  // A socket file whose listener is gone: Node removes its own path on close, so listen
  // elsewhere and move the file (the kernel finds a socket by inode, not by name).
  const old = createServer();
  await listen(old, join(dir, 'old.sock'));
  renameSync(join(dir, 'old.sock'), path);
  await new Promise((r) => old.close(r));
  assert.ok(lstatSync(path).isSocket());
  assert.equal(await firstLine(path), 'ECONNREFUSED');
  await qmpServer(t).listen({ kind: 'unix', path });
  assert.match(await firstLine(path), /^\{"QMP": \{"version"/);
});

test('a live socket at the path is refused: its listener keeps the path and gets no connection', async (t) => {
  const path = join(tmp(t), 'qmp.sock');
  const live = createServer((s) => s.end('live\n'));
  let connections = 0;
  live.on('connection', () => connections++);
  await listen(live, path);
  t.after(() => live.close());
  await refused(
    qmpServer(t).listen({ kind: 'unix', path }),
    `Failed to bind socket to ${path}: a live socket is there (something accepts connections on it)`,
  );
  assert.equal(connections, 0, 'the check must not connect to a listener the kernel lists');
  assert.equal(await firstLine(path), 'live');
});

test('a live socket bound under another name (relative) is refused too, by a probe connection', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'qmp.sock');
  // /proc/net/unix lists it as `qmp.sock`: the check falls back to connecting.
  const child = spawn(
    process.execPath,
    ['-e', "require('net').createServer((s) => s.end()).listen('qmp.sock', () => console.log('ready'))"],
    { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((r) => child.once('exit', r));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  await new Promise((r) => child.stdout.once('data', r));
  await refused(
    qmpServer(t).listen({ kind: 'unix', path }),
    `Failed to bind socket to ${path}: a live socket is there (something accepts connections on it)`,
  );
  assert.ok(lstatSync(path).isSocket());
});

for (const args of [
  (p: string) => ['-qmp', `unix:${p},server=on,wait=off`],
  (p: string) => ['-incoming', `unix:${p}`],
]) {
  test(`qmigrate vm ${args('DIR').join(' ')}: QEMU 10.0's words for a directory`, {
    timeout: 30_000,
  }, async (t) => {
    const path = join(tmp(t), 'dir');
    mkdirSync(path);
    const want = await qemuStderr(t, args(path));
    if (want === undefined) return;
    assert.equal(want, `${args(path).join(' ')}: Failed to unlink socket ${path}: Is a directory\n`);
    const r = await runQmigrate(['vm', '-machine', 'none', ...args(path)]);
    assert.deepEqual([r.code, r.stderr.replaceAll('qmigrate: ', '')], [1, want]);
    assert.ok(lstatSync(path).isDirectory());
  });

  test(`qmigrate vm ${args('FILE').join(' ')}: refused, the file kept (QEMU 10.0 deletes it)`, {
    timeout: 30_000,
  }, async (t) => {
    const dir = tmp(t);
    const path = join(dir, 'file');
    writeFileSync(path, 'precious\n');
    const r = await runQmigrate(['vm', '-machine', 'none', ...args(path)]);
    assert.deepEqual(
      [r.code, r.stderr],
      [
        1,
        `qmigrate: ${args(path).join(' ')}: Failed to bind socket to ${path}: a regular file is there, not a socket (only a stale socket is replaced)\n`,
      ],
    );
    assert.equal(readFileSync(path, 'utf8'), 'precious\n');

    // QEMU 10.0 unlinks the file and listens there: the difference README states.
    const bin = requireQemu(t, '10.0');
    if (!bin) return;
    const q = join(dir, 'qemu-file');
    writeFileSync(q, 'precious\n');
    const child = spawn(
      bin.path,
      [...bin.args, '-machine', 'none', '-display', 'none', '-nodefaults', ...args(q)],
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
    const until = Date.now() + 10_000;
    const isSocket = () => lstatSync(q, { throwIfNoEntry: false })?.isSocket() === true;
    while (!isSocket() && Date.now() < until) await sleep(50);
    assert.ok(isSocket(), 'QEMU 10.0 replaced the regular file by its socket');
  });
}
