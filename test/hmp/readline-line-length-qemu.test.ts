// HMP's line length, against QEMU 10.0's -monitor: readline keeps at most 4095 bytes of a line
// (util/readline.c, READLINE_CMD_BUF_SIZE with its NUL) and drops what is typed past that, so a
// longer line runs as its first 4095 bytes. qmigrate's monitor does the same.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMonitors } from '../helpers/monitors.js';

test('a 6000-byte HMP line runs as its first 4095 bytes, as in QEMU 10.0', {
  timeout: 120_000,
}, async (t) => {
  const answers: Record<string, string> = {};
  for (const kind of ['10.0', 'qmigrate'] as const) {
    const host = await startMonitors(t, kind, { h: 'hmp' });
    if (!host) return;
    const s = connect(host.path('h'));
    t.after(() => s.destroy());
    // The echo redraws the line for each byte (megabytes): keep chunks, look at the tail only.
    const chunks: Buffer[] = [];
    let tail = '';
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      tail = (tail + d.toString('latin1')).slice(-10_000);
    });
    s.write(`${'y'.repeat(6000)}\rinfo status\r`);
    const deadline = Date.now() + 60_000;
    while (!tail.includes('VM status')) {
      assert.ok(Date.now() < deadline, `${kind}: no answer to info status`);
      await sleep(20);
    }
    const text = Buffer.concat(chunks).toString('latin1');
    answers[kind] = /unknown command: '[^']*'\r\n/.exec(text)?.[0] ?? text.slice(-300);
  }
  assert.equal(answers['10.0'], `unknown command: '${'y'.repeat(4095)}'\r\n`);
  assert.equal(answers.qmigrate, answers['10.0']);
});
