// The stream writer must never report success for bytes that cannot reach the peer: a
// connection the peer closed first (so that Node ends and destroys our side without an
// 'error' event) fails the next write, wait or end with EPIPE.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { QemuFileWriter } from '../../src/migration/stream/qemu-file.js';

/** A loopback connection: our side (reading and discarding) and the server that accepted it. */
async function connected(onPeer: (peer: Socket) => void): Promise<{ s: Socket; server: Server }> {
  const server = createServer(onPeer);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  const s = connect(address.port, '127.0.0.1');
  s.resume();
  await once(s, 'connect');
  return { s, server };
}

async function closedByPeer(): Promise<Socket> {
  const { s, server } = await connected((peer) => peer.end());
  await once(s, 'close');
  server.close();
  return s;
}

for (const step of ['flush', 'drain', 'settled', 'end'] as const) {
  test(`a socket the peer closed first fails ${step}() with EPIPE`, async () => {
    const s = await closedByPeer();
    const w = new QemuFileWriter(s);
    w.view(Buffer.alloc(4096, 1));
    const run = async () => {
      if (step === 'flush') w.flush();
      else await w[step]();
    };
    await assert.rejects(run(), { code: 'EPIPE' });
  });
}

test('a writer made while the socket was open fails once the peer has closed it', async () => {
  let peer: Socket | undefined;
  const { s, server } = await connected((p) => {
    peer = p.resume();
  });
  const w = new QemuFileWriter(s);
  w.view(Buffer.alloc(4096, 2));
  await w.settled();
  while (!peer) await new Promise((r) => setImmediate(r));
  // A clean close (FIN, no reset): our side sees only an end of stream, no error.
  peer.end();
  await once(s, 'close');
  server.close();
  w.be64(1);
  await assert.rejects(w.settled(), { code: 'EPIPE' });
  assert.equal(w.error?.message, 'write EPIPE');
});

test('bytes handed over before the peer closed are not a failure', async () => {
  // A destination closes as soon as it has read the whole stream, possibly before the
  // source has looked at its writes: settled() and end() must still succeed.
  const size = 256 * 1024;
  const { s, server } = await connected((peer) => {
    let got = 0;
    peer.on('data', (d: Buffer) => {
      got += d.length;
      if (got === size) peer.end();
    });
  });
  const w = new QemuFileWriter(s);
  w.view(Buffer.alloc(size, 3));
  w.flush();
  await once(s, 'close');
  server.close();
  await w.settled();
  await w.end();
  assert.equal(w.error, undefined);
  assert.equal(w.transferred, size);
});
