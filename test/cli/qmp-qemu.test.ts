// `qmigrate qmp` against a real QEMU 10.0 monitor: Tab completion from QEMU's own
// query-commands and query-qmp-schema (a nested argument down to an enum value) and from its
// HMP `help`, a piped command and `-H info status` with QEMU's replies, and a monitor busy
// with another client (QEMU serves one per socket) ending in exit 3 within --timeout.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startPty } from '../helpers/pty-session.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';
import { runQmigrate } from '../helpers/qmigrate.js';
import { MiniQmp } from '../helpers/qmp-mini.js';

const entry = fileURLToPath(new URL('../../src/cli/bin.ts', import.meta.url));
const qmigrate = (...args: string[]) => [process.execPath, '--import', 'tsx', entry, ...args];
const KEY_GAP_MS = 150;
/** Bounds generous enough for a loaded 2-core CI machine (a tsx start-up alone takes seconds there). */
const START_MS = 30_000;
const WAIT_MS = 15_000;

/** A QEMU 10.0 with its monitor free (the helper's own client gone); undefined if skipped. */
async function qemu(t: TestContext): Promise<string | undefined> {
  const bin = requireQemu(t, '10.0');
  if (!bin) return undefined;
  const q = await startQemu(bin);
  t.after(() => q.stop());
  q.qmp.close();
  return join(q.dir, 'qmp.sock');
}

function historyFile(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-qmp-qemu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'history');
}

/** Types `keys`, then Tab, and waits for what the completion adds (after the echoed keys). */
async function complete(p: ReturnType<typeof startPty>, keys: string, want: string): Promise<void> {
  const mark = p.out.length;
  p.type(keys);
  await sleep(KEY_GAP_MS);
  p.type('\t');
  await p.waitFor(want, WAIT_MS, mark);
  await sleep(KEY_GAP_MS);
}

test('QEMU 10.0: Tab completes from its schema; the completed line runs', async (t) => {
  const sock = await qemu(t);
  if (!sock) return;
  const p = startPty(t, qmigrate('qmp', '-v', '--history', historyFile(t), sock));
  await p.waitFor('Connected to QEMU 10.0.', START_MS);
  await p.waitFor('(QEMU) ', START_MS);
  await complete(p, 'query-migrate-capa', 'query-migrate-capabilities');
  p.type('\x03');
  await complete(p, 'migrate chan', 'channels.');
  await complete(p, '0.ad', '0.addr.');
  await complete(p, 'tr', 'transport=');
  await complete(p, 'f', 'file');
  const mark = p.out.length;
  p.type('\r');
  // QEMU checks the arguments the completed line became.
  await p.waitFor(
    '{"execute": "migrate", "arguments": {"channels": [{"addr": {"transport": "file"}}]}}',
    WAIT_MS,
    mark,
  );
  await p.waitFor("error: GenericError: Parameter 'channels[0].channel-type' is missing", WAIT_MS, mark);
  p.type('\x04');
  assert.equal(await p.exit(WAIT_MS), 0);
});

test('QEMU 10.0: -H completes from HMP help and shows `info status` as QEMU prints it', async (t) => {
  const sock = await qemu(t);
  if (!sock) return;
  const p = startPty(t, qmigrate('qmp', '-H', '--history', historyFile(t), sock));
  await p.waitFor('(qemu) ', START_MS);
  // QEMU 10.0 has both `info stats` and `info status`.
  await complete(p, 'info statu', 'info status');
  const mark = p.out.length;
  p.type('\r');
  await p.waitFor(/\r\nVM status: running\r\n.*\(qemu\) /, WAIT_MS, mark);
  p.type('\x04');
  assert.equal(await p.exit(WAIT_MS), 0);
});

test('QEMU 10.0 through a pipe: one reply per line, -H, and a busy monitor is exit 3', async (t) => {
  const sock = await qemu(t);
  if (!sock) return;
  const r = await runQmigrate(
    ['qmp', sock],
    'query-status\n{"execute": "query-name", "id": "k"}\nnope\n{"exec-oob": "migrate-pause", "id": 1}\n',
  );
  assert.equal(r.code, 1, r.stderr);
  assert.deepEqual(r.stdout.trimEnd().split('\n'), [
    '{"return": {"status": "running", "running": true}}',
    '{"return": {}, "id": "k"}',
    '{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}',
    // Out of band (the shell negotiates oob): QEMU's own answer to a pause with no migration.
    '{"id": 1, "error": {"class": "GenericError", "desc": "migrate-pause is currently only supported during postcopy-active or postcopy-recover state"}}',
  ]);
  const h = await runQmigrate(['qmp', '-H', sock], 'info status\n');
  assert.equal(h.code, 0, h.stderr);
  assert.equal(h.stdout, '{"return": "VM status: running\\r\\n"}\n');
  // Past 2 Mi tokens QEMU 10.0 reads the rest of a line as messages of their own and aborts
  // (monitor/qmp.c, its request queue assertion); 1e999 would go out as `inf`. Both refused.
  const big = await runQmigrate(
    ['qmp', sock],
    `query-status l=[${'1,'.repeat(1_100_000)}1]\nquery-status n=1e999\nquery-status\n`,
  );
  assert.equal(big.code, 2, big.stderr);
  assert.match(big.stderr, /line 1: the request is \d+ JSON tokens, more than the 2097152 tokens QEMU reads/);
  assert.match(big.stderr, /line 2: the value of 'n' is not a finite number \(not sent\)/);
  assert.equal(big.stdout, '{"return": {"status": "running", "running": true}}\n');
  // QEMU greets one client per monitor socket; a second one waits unanswered.
  const holder = await MiniQmp.connect(sock, WAIT_MS);
  t.after(() => holder.close());
  const busy = await runQmigrate(['qmp', '--timeout', '1', sock], 'query-status\n');
  assert.equal(busy.code, 3);
  assert.match(busy.stderr, /no QMP session within 1000 ms \(a QEMU monitor serves one client at a time/);
});
