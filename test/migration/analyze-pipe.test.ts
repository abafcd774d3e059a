// A stream read from a pipe cannot be searched from its end for the VM description, which
// comes last; at its first device section the analyser buffers the rest (device sections
// follow RAM's last part: small) and reads ahead to it, so a pipe decodes every device as a
// file does. Before, any device section but timer and globalstate failed from a pipe.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { analyzeBuffer, analyzeStream } from '../../src/migration/stream/analyze.js';
import { analyzeBases } from '../fuzz/targets/migration-analyze.js';

/** The bytes as a pipe gives them: small chunks, nothing known of the end beforehand. */
function pipe(data: Buffer, chunk = 4093): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += chunk) parts.push(data.subarray(at, at + chunk));
  return Readable.from(parts, { objectMode: false });
}

test('from a pipe, devices described only by the VM description decode as from a file', async () => {
  for (const base of analyzeBases()) {
    const whole = await analyzeBuffer(base.bytes);
    const others = whole.devices.filter((d) => d.idstr !== 'timer' && d.idstr !== 'globalstate');
    const piped = await analyzeStream(pipe(base.bytes));
    assert.deepEqual(piped, whole);
    if (others.length) assert.ok(Object.keys(piped.devices[0]!.fields).length > 0);
  }
  // The small stream has a device that only its description describes.
  const dev = analyzeBases()[0]!;
  const whole = await analyzeBuffer(dev.bytes);
  assert.ok(
    whole.devices.some((d) => d.idstr !== 'timer' && d.idstr !== 'globalstate'),
    whole.devices.map((d) => d.idstr).join(),
  );
});
