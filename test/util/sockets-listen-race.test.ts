// Two listeners that start at once on the path of a stale socket (src/util/sockets.ts): one
// takes the path, the other is refused. Checking that the socket is stale and removing it
// are two steps; a listener that removes what the other one has just bound in between would
// leave that one running with a path nobody can reach.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { SocketError, socketListen } from '../../src/util/sockets.js';

function tmp(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-listen-race-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A socket file at `path` whose listener is gone (bound elsewhere, moved, closed). */
async function staleSocket(dir: string, path: string): Promise<void> {
  const old = createServer();
  await new Promise<void>((r) => old.listen(join(dir, 'old.sock'), r));
  renameSync(join(dir, 'old.sock'), path);
  await new Promise((r) => old.close(r));
}

/** Which of the named servers a connection to `path` reaches, or the connect error's code. */
function whoAnswers(path: string): Promise<string> {
  return new Promise((res) => {
    const s = connect(path);
    s.once('data', (d) => {
      s.destroy();
      res(String(d));
    });
    s.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? e.message));
  });
}

for (const round of [1, 2, 3]) {
  test(`two listeners at once on a stale socket: one takes the path, the other is refused (round ${round})`, async (t) => {
    const dir = tmp(t);
    const path = join(dir, 'qmp.sock');
    await staleSocket(dir, path);
    const servers: Server[] = ['a', 'b'].map((name) => createServer((s) => s.end(name)));
    t.after(() => {
      for (const s of servers) s.close();
    });
    const results = await Promise.allSettled(servers.map((s) => socketListen(s, { type: 'unix', path })));
    const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
    assert.equal(won.length, 1, `exactly one listener may hold ${path}, got ${won.length}`);
    const lost = results[1 - won[0]!]!;
    assert.equal(lost.status, 'rejected');
    assert.ok(lost.reason instanceof SocketError, String(lost.reason));
    assert.equal(lost.reason.code, 'SOCKET_BIND');
    assert.equal(await whoAnswers(path), ['a', 'b'][won[0]!]);
  });
}
