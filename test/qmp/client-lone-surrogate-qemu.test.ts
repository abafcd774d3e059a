// A string with a lone UTF-16 surrogate cannot cross QMP: QEMU 10.0's parser refuses it and its
// error reply carries no id, so a client that sent it would wait for an answer that never
// comes, or take the id-less reply as a broken peer and close. QmpClient refuses such arguments
// before sending (ArgumentError, INVALID_ARGUMENT) and the session goes on.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { ArgumentError } from '../../src/errors.js';
import { type PeerKind, startPeer } from '../helpers/peers.js';

async function peer(t: TestContext, kind: PeerKind) {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-surrogate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'g.img'), '');
  return startPeer(t, kind, dir, 'g', join(dir, 'g.img'), 16, [
    '-qmp',
    `unix:${join(dir, 'raw.qmp')},server=on,wait=off`,
  ]).then((p) => p && { p, raw: join(dir, 'raw.qmp') });
}

/** What the peer answers a raw line with a lone surrogate (escaped, as JSON.stringify writes it). */
async function rawReply(path: string): Promise<string> {
  const s = connect(path);
  let buf = '';
  s.on('data', (d) => {
    buf += d;
  });
  s.write('{"execute":"qmp_capabilities"}\n');
  s.write('{"execute":"migrate-set-parameters","arguments":{"tls-hostname":"\\ud800"},"id":7}\n');
  for (let i = 0; i < 300 && buf.split('\n').length < 4; i++) await new Promise((r) => setTimeout(r, 10));
  s.destroy();
  return buf.split('\n')[2] ?? '';
}

for (const kind of ['10.0', 'qmigrate'] as const) {
  test(`${kind}: a lone surrogate gets a parse error with no id; QmpClient refuses it before sending`, async (t) => {
    const got = await peer(t, kind);
    if (!got) return;
    const reply = JSON.parse(await rawReply(got.raw));
    assert.equal(reply.error?.class, 'GenericError');
    assert.equal('id' in reply, false);
    await assert.rejects(
      got.p.qmp.migrateSetParameters({ 'tls-hostname': 'a\ud800b' }),
      (e) =>
        e instanceof ArgumentError &&
        e.code === 'INVALID_ARGUMENT' &&
        /arguments\.tls-hostname/.test(e.message),
    );
    // A well-formed pair is fine, and the session goes on.
    await got.p.qmp.migrateSetParameters({ 'tls-hostname': 'h\ud83d\ude00' });
    assert.equal((await got.p.qmp.queryMigrateParameters())['tls-hostname'], 'h\ud83d\ude00');
  });
}
