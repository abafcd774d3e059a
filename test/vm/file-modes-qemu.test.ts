// The modes of the sockets and files a VM creates, against QEMU 10.0's under two umasks.
// Unix sockets (QMP, HMP, migration listener) are as QEMU leaves them: 0777 less the umask
// (connecting needs write permission, so umask 022 already keeps others out). The file
// transport's output is 0600 whatever the umask, as QEMU's. Stricter than QEMU, qmigrate
// creates a memory-backend-file's mem-path and a pmemsave dump 0600 (QEMU: 0644 and 0666
// less the umask): both hold guest memory.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type QemuBinary, requireQemu } from '../helpers/qemu.js';
import { MiniQmp } from '../helpers/qmp-mini.js';

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));

type Modes = Record<string, number>;

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Spawns QEMU 10.0 or qmigrate with `args` under `umask`, connected to `qmp`. */
async function start(
  t: TestContext,
  bin: QemuBinary | 'qmigrate',
  umask: number,
  args: string[],
  qmp: string,
): Promise<MiniQmp> {
  const old = process.umask(umask);
  let child: ChildProcess;
  try {
    child =
      bin === 'qmigrate'
        ? spawn(process.execPath, ['--import', 'tsx', entry, 'vm', ...args], { stdio: 'ignore' })
        : spawn(bin.path, [...bin.args, '-display', 'none', '-nodefaults', ...args], {
            env: bin.env,
            stdio: 'ignore',
          });
  } finally {
    process.umask(old);
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const q = await MiniQmp.connect(qmp, 20_000, exited);
  t.after(() => q.close());
  await q.execute('qmp_capabilities');
  return q;
}

/** What one VM creates under `umask`: its sockets, RAM file, a dump, a migration file, a listener. */
async function observe(t: TestContext, bin: QemuBinary | 'qmigrate', umask: number): Promise<Modes> {
  const d = mkdtempSync(join(tmpdir(), 'qmigrate-modes-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  const mon = (name: string) => `unix:${join(d, name)},server=on,wait=off`;
  const q = await start(
    t,
    bin,
    umask,
    [
      '-machine',
      'none,memory-backend=m0',
      '-object',
      `memory-backend-file,id=m0,size=16M,mem-path=${join(d, 'ram.img')},share=on`,
      '-qmp',
      mon('qmp.sock'),
      '-monitor',
      mon('hmp.sock'),
    ],
    join(d, 'qmp.sock'),
  );
  assert.deepEqual(await q.execute('pmemsave', { val: 0, size: 4096, filename: join(d, 'dump') }), {
    return: {},
  });
  assert.deepEqual(await q.execute('migrate', { uri: `file:${join(d, 'out.mig')}` }), { return: {} });
  const q2 = await start(
    t,
    bin,
    umask,
    ['-machine', 'none', '-m', '16M', '-qmp', mon('qmp2.sock'), '-incoming', `unix:${join(d, 'mig.sock')}`],
    join(d, 'qmp2.sock'),
  );
  await q2.execute('query-status');
  const names = ['qmp.sock', 'hmp.sock', 'mig.sock', 'out.mig', 'ram.img', 'dump'];
  return Object.fromEntries(names.map((n) => [n, mode(join(d, n))]));
}

for (const umask of [0o022, 0o077]) {
  test(`modes under umask ${umask.toString(8).padStart(3, '0')}: QEMU 10.0's, or 0600 for guest memory`, async (t) => {
    const bin = requireQemu(t, '10.0');
    if (!bin) return;
    const theirs = await observe(t, bin, umask);
    const ours = await observe(t, 'qmigrate', umask);
    const sockets = 0o777 & ~umask;
    assert.deepEqual(theirs, {
      'qmp.sock': sockets,
      'hmp.sock': sockets,
      'mig.sock': sockets,
      'out.mig': 0o600,
      'ram.img': 0o644 & ~umask,
      dump: 0o666 & ~umask,
    });
    assert.deepEqual(ours, { ...theirs, 'ram.img': 0o600, dump: 0o600 });
  });
}
