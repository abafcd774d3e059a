// `qmigrate qmp ADDR` at a real terminal (a pty we type into, test/helpers/pty-session.ts):
// Tab completes command and argument names from a qmigrate vm's schema, Up recalls a previous
// session's line from the history file, an event prints while the shell is idle, Ctrl-C
// clears the line / stops a wait / quits, and a monitor that goes away ends the shell.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startBareVm } from '../helpers/peers.js';
import { startPty } from '../helpers/pty-session.js';
import { startFakeQmp } from '../helpers/qmp-fake-server.js';

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
const qmigrate = (...args: string[]) => [process.execPath, '--import', 'tsx', entry, ...args];
/** Readline takes a burst of bytes as pasted text (no completion): keys go one at a time. */
const KEY_GAP_MS = 150;
/** Bounds generous enough for a loaded 2-core CI machine (a tsx start-up alone takes seconds there). */
const START_MS = 30_000;
const WAIT_MS = 15_000;

function tempDir(t: import('node:test').TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-qmp-pty-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('Tab completes a command name and nested argument names from the monitor schema', async (t) => {
  const vm = await startBareVm(t);
  const p = startPty(t, qmigrate('qmp', '-v', '--history', join(tempDir(t), 'h'), join(vm.dir, 'q.sock')));
  await p.waitFor('(QEMU) ', START_MS);
  let mark = p.out.length;
  p.type('query-sta');
  await sleep(KEY_GAP_MS);
  p.type('\t');
  await p.waitFor('query-status', WAIT_MS, mark);
  p.type('\r');
  await p.waitFor('{"status": "running", "running": true}', WAIT_MS, mark);
  // Readline echoes the keys and then writes what the completion adds.
  for (const [keys, want] of [
    ['migrate chan', 'channels.'],
    ['0.ad', '0.addr.'],
    ['tr', 'transport='],
    ['s', 'socket'],
  ] as const) {
    mark = p.out.length;
    p.type(keys);
    await sleep(KEY_GAP_MS);
    p.type('\t');
    await p.waitFor(want, WAIT_MS, mark);
  }
  // -v shows the request the completed line became.
  mark = p.out.length;
  p.type('\r');
  await p.waitFor(
    '{"execute": "migrate", "arguments": {"channels": [{"addr": {"transport": "socket"}}]}}',
    WAIT_MS,
    mark,
  );
  await p.waitFor('(QEMU) ', WAIT_MS, mark);
  p.type('\x04');
  assert.equal(await p.exit(WAIT_MS), 0);
});

test("Up recalls the previous session's lines from the history file, which keeps the new ones (0600)", async (t) => {
  const vm = await startBareVm(t);
  const hist = join(tempDir(t), 'state', 'qmp_history');
  const first = startPty(t, qmigrate('qmp', '--history', hist, join(vm.dir, 'q.sock')));
  await first.waitFor('(QEMU) ', START_MS);
  first.type('query-version\r');
  await first.waitFor('"package"', WAIT_MS);
  first.type('\x04');
  assert.equal(await first.exit(WAIT_MS), 0);
  assert.equal(readFileSync(hist, 'utf8'), 'query-version\n');
  assert.equal(statSync(hist).mode & 0o777, 0o600);

  writeFileSync(hist, 'query-status\nquery-version\n');
  const p = startPty(t, qmigrate('qmp', '--history', hist, join(vm.dir, 'q.sock')));
  await p.waitFor('(QEMU) ', START_MS);
  const mark = p.out.length;
  p.type('\x1b[A');
  await p.waitFor('query-version', WAIT_MS, mark);
  await sleep(KEY_GAP_MS);
  p.type('\x1b[A');
  await p.waitFor('query-status', WAIT_MS, mark);
  await sleep(KEY_GAP_MS);
  p.type('\r');
  await p.waitFor('"running": true', WAIT_MS, mark);
  p.type('\x04');
  assert.equal(await p.exit(WAIT_MS), 0);
  assert.equal(readFileSync(hist, 'utf8'), 'query-version\nquery-status\n');
});

test('an event prints while idle, above a redrawn prompt and the line being typed', async (t) => {
  const vm = await startBareVm(t);
  const p = startPty(t, qmigrate('qmp', '--history', join(tempDir(t), 'h'), join(vm.dir, 'q.sock')));
  await p.waitFor('(QEMU) ', START_MS);
  p.type('query-st');
  await p.waitFor('query-st', WAIT_MS);
  const mark = p.out.length;
  await vm.qmp.execute('stop');
  const out = await p.waitFor(
    /event STOP at \d\d:\d\d:\d\d\.\d{3}\r\n[\s\S]*\(QEMU\) [\s\S]*query-st/,
    WAIT_MS,
    mark,
  );
  // The partly typed line was cleared before the event and drawn again after it.
  // (ECMA-48 EL 2, then CHA 1.)
  assert.ok(out.slice(mark).startsWith('\x1b[2K\x1b[1Gevent STOP'), JSON.stringify(out.slice(mark)));
  p.type('atus\r');
  await p.waitFor('"status": "paused"', WAIT_MS, mark);
  p.type('\x03');
  assert.equal(await p.exit(WAIT_MS), 0);
});

test('Ctrl-C stops waiting for a reply (saying the monitor may still run it), clears a line, quits', async (t) => {
  const fake = await startFakeQmp(t, { answer: (m) => (m.execute === 'hang' ? 'no reply' : { return: {} }) });
  const p = startPty(t, qmigrate('qmp', '--history', join(tempDir(t), 'h'), fake.path));
  await p.waitFor('(QEMU) ', START_MS);
  let mark = p.out.length;
  p.type('hang\r');
  await sleep(300);
  p.type('\x03');
  await p.waitFor("stopped waiting for 'hang'; the monitor may still run it", WAIT_MS, mark);
  await p.waitFor('(QEMU) ', WAIT_MS, mark);
  mark = p.out.length;
  p.type('query-status x=1');
  await sleep(KEY_GAP_MS);
  p.type('\x03');
  // The line stays on screen with ^C after it; a new, empty one starts below.
  await p.waitFor('query-status x=1^C\r\n', WAIT_MS, mark);
  await sleep(KEY_GAP_MS);
  p.type('query-version\r');
  await p.waitFor('{}', WAIT_MS, mark);
  p.type('\x03');
  assert.equal(await p.exit(WAIT_MS), 0);
  assert.deepEqual(
    fake.received.map(({ id, ...m }) => m),
    [
      { execute: 'qmp_capabilities' },
      { execute: 'query-commands' },
      { execute: 'query-qmp-schema' },
      { execute: 'hang' },
      { execute: 'query-version' },
    ],
  );
});

test('the monitor closing ends the shell with a clear line and exit 1', async (t) => {
  const fake = await startFakeQmp(t);
  const p = startPty(t, qmigrate('qmp', '--history', join(tempDir(t), 'h'), fake.path));
  await p.waitFor('(QEMU) ', START_MS);
  fake.dropClients();
  await p.waitFor('qmigrate: the monitor closed the connection', WAIT_MS);
  assert.equal(await p.exit(WAIT_MS), 1);
});

test('quit at the prompt: the monitor closing then ends the shell with exit 0', async (t) => {
  const fake = await startFakeQmp(t, {
    answer: (m) => {
      if (m.execute === 'quit') setImmediate(() => fake.dropClients());
      return { return: {} };
    },
  });
  const p = startPty(t, qmigrate('qmp', '--history', join(tempDir(t), 'h'), fake.path));
  await p.waitFor('(QEMU) ', START_MS);
  p.type('quit\r');
  await p.waitFor('The monitor quit.', WAIT_MS);
  assert.equal(await p.exit(WAIT_MS), 0);
  assert.doesNotMatch(p.out, /closed the connection/);
});

test('SIGTERM while a reply is awaited ends the shell (143) without a Ctrl-C notice or a new prompt', async (t) => {
  const fake = await startFakeQmp(t, { answer: (m) => (m.execute === 'hang' ? 'no reply' : { return: {} }) });
  const p = startPty(t, qmigrate('qmp', '--history', join(tempDir(t), 'h'), fake.path));
  await p.waitFor('(QEMU) ', START_MS);
  const mark = p.out.length;
  p.type('hang\r');
  while (!fake.received.some((m) => m.execute === 'hang')) await sleep(50);
  // The relay's child is the shell (python's pty.fork execs it); signal it, not the relay.
  const shell = execFileSync('pgrep', ['-P', String(p.child.pid)], { encoding: 'utf8' }).trim();
  process.kill(Number(shell), 'SIGTERM');
  assert.equal(await p.exit(WAIT_MS), 143);
  const after = p.out.slice(mark);
  assert.doesNotMatch(after, /stopped waiting/);
  assert.doesNotMatch(after.replace(/^hang\r\n/, ''), /\(QEMU\)/);
});
