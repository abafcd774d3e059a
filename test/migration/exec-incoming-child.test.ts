// An `exec:` incoming migration's child does not outlive the load: one that keeps writing
// garbage while ignoring SIGPIPE (and SIGTERM), and one that sends a whole stream and then
// never exits, are gone once the load has failed or completed, with no `quit` needed.
// (QEMU 10.0 waits for such a child without end.)
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connectRetry, waitMigrationStatus } from '../helpers/peers.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

const sample = fileURLToPath(new URL('../fixtures/samples/qemu10-none-16M-pattern.mig', import.meta.url));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

for (const c of [
  {
    name: 'a child writing garbage forever, deaf to SIGPIPE and SIGTERM, after a failed load',
    cmd: (pidFile: string) =>
      `trap "" PIPE TERM; echo $$ > ${pidFile}; while :; do echo garbage; done 2>/dev/null`,
    status: 'failed' as const,
  },
  {
    name: 'a child that never exits after a whole stream, after a completed load',
    cmd: (pidFile: string) => `echo $$ > ${pidFile}; cat ${sample}; exec sleep 600`,
    status: 'completed' as const,
  },
]) {
  test(`exec incoming: ${c.name} is ended`, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'qmigrate-execin-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const pidFile = join(dir, 'pid');
    const qmp = join(dir, 'q.sock');
    const vm = spawnQmigrate(
      [
        'vm',
        '-machine',
        'none,memory-backend=m0',
        '-object',
        'memory-backend-ram,id=m0,size=16M',
        '-incoming',
        'defer',
        '-qmp',
        `unix:${qmp},server=on,wait=off`,
      ],
      { stdio: 'inherit' },
    );
    t.after(() => vm.kill('SIGKILL'));
    const q = await connectRetry(qmp);
    t.after(() => q.close());
    await q.migrateIncoming({ uri: `exec:${c.cmd(pidFile)}`, 'exit-on-error': false });
    await waitMigrationStatus(q, c.status);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    t.after(() => {
      if (alive(pid)) process.kill(pid, 'SIGKILL');
    });
    const deadline = Date.now() + 5000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(pid), false, `the exec child ${pid} still runs after the load ${c.status}`);
    assert.equal((await q.queryStatus()).status, c.status === 'failed' ? 'inmigrate' : 'running');
  });
}
