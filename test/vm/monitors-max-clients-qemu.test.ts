// How many clients a listening monitor serves at once. QEMU 10.0 serves one per chardev: the
// next connects (the kernel's backlog takes it) and gets its greeting only when the first
// leaves. qmigrate serves up to MONITOR_MAX_CLIENTS at once and closes a connection past that,
// saying so on stderr, so a client flood cannot hold more than that many sessions.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MONITOR_MAX_CLIENTS } from '../../src/vm/chardev.js';
import { LineClient, startMonitors } from '../helpers/monitors.js';
import { spawnQmigrate } from '../helpers/qmigrate.js';

test('QEMU 10.0 serves one QMP client at a time: the second is greeted once the first leaves', {
  timeout: 60_000,
}, async (t) => {
  const host = await startMonitors(t, '10.0', { a: 'qmp' });
  if (!host) return;
  const first = await LineClient.open(host.path('a'));
  t.after(() => first.destroy());
  await first.waitLines(1, 10_000);
  const second = await LineClient.open(host.path('a'));
  t.after(() => second.destroy());
  await sleep(1000);
  assert.equal(second.lines.length, 0, 'no greeting while the first client is there');
  first.destroy();
  await second.waitLines(1, 10_000);
  assert.match(second.lines[0]!, /"QMP"/);
});

test(`qmigrate serves ${MONITOR_MAX_CLIENTS} clients per monitor at once and refuses more, with a line on stderr`, {
  timeout: 60_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-maxcl-'));
  const qmp = join(dir, 'q.sock');
  const hmp = join(dir, 'h.sock');
  const child = spawnQmigrate(
    [
      'vm',
      '-machine',
      'none',
      '-qmp',
      `unix:${qmp},server=on,wait=off`,
      '-monitor',
      `unix:${hmp},server=on,wait=off`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const clients: LineClient[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    child.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  for (const [path, mode] of [
    [qmp, 'qmp'],
    [hmp, 'hmp'],
  ] as const) {
    const mine: LineClient[] = [];
    for (let i = 0; i < MONITOR_MAX_CLIENTS; i++) {
      const c = await LineClient.open(path);
      clients.push(c);
      mine.push(c);
      await c.waitLines(1, 10_000);
    }
    const extra = await LineClient.open(path);
    clients.push(extra);
    await assert.rejects(
      extra.waitLines(1, 5000),
      /connection closed after 0/,
      `${mode}: the extra client is closed`,
    );
    const line = `refused a client: ${MONITOR_MAX_CLIENTS} clients are connected already (the limit)`;
    assert.ok(stderr.includes(line), `${mode}: stderr says why: ${stderr}`);
    // One leaves: a new client is served, and those there all still answer.
    mine.shift()!.destroy();
    await sleep(200);
    const next = await LineClient.open(path);
    clients.push(next);
    await next.waitLines(1, 10_000);
    if (mode === 'qmp') {
      for (const c of [...mine, next]) {
        await c.negotiate();
        assert.match(c.lines[1]!, /"return": \{\}/);
      }
    } else {
      next.socket.write('info status\r');
      await next.waitLines(3, 10_000);
      assert.ok(next.lines.join('').includes('VM status: running'), next.lines.join(''));
    }
  }
});
