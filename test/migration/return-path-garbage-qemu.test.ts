// What a source does with return-path messages it cannot take: QEMU 10.0's checks and texts
// in its error-desc (an invalid type, a wrong length, a REQ_PAGES_ID too short), the
// migration failed and the guest still running. A fake destination reads the stream and
// answers with the message.
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { type TestContext, test } from 'node:test';
import { startBareVm } from '../helpers/peers.js';
import { requireQemu, startQemu } from '../helpers/qemu.js';

const msg = (type: number, payload: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(payload.length, 2);
  return Buffer.concat([h, payload]);
};
/** A header alone, claiming a length that never comes. */
const header = (type: number, len: number) => {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(len, 2);
  return h;
};

const CASES: [string, Buffer][] = [
  ['an unknown type', msg(0x99, Buffer.alloc(4))],
  ['type 0 (INVALID)', msg(0, Buffer.alloc(4))],
  ['a PONG of 0xffff bytes', header(2, 0xffff)],
  ['a SHUT of 2 bytes', msg(1, Buffer.alloc(2))],
  ['a REQ_PAGES_ID without its block name', msg(3, Buffer.alloc(12))],
];

/** A destination that reads everything and sends `reply` on the return path once data comes. */
async function fakeDestination(t: TestContext, reply: Buffer): Promise<number> {
  const conns: Socket[] = [];
  const server = createServer((s) => {
    conns.push(s);
    s.on('error', () => {});
    s.once('data', () => s.write(reply));
    s.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  return (server.address() as { port: number }).port;
}

type Run = (port: number) => Promise<{ status?: string; error?: string; runstate: string }>;

/** Migrates with return-path (slowly: the reply comes while the stream flows) and waits for the end. */
function runner(exec: (cmd: string, args?: unknown) => Promise<unknown>): Run {
  return async (port) => {
    await exec('migrate', { uri: `tcp:127.0.0.1:${port}` });
    let info: { status?: string; 'error-desc'?: string } = {};
    for (let i = 0; i < 400; i++) {
      info = (await exec('query-migrate')) as typeof info;
      if (info.status === 'failed' || info.status === 'completed') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const st = (await exec('query-status')) as { status: string };
    return { status: info.status, error: info['error-desc'], runstate: st.status };
  };
}

const SETUP: [string, unknown][] = [
  ['migrate-set-capabilities', { capabilities: [{ capability: 'return-path', state: true }] }],
  ['migrate-set-parameters', { 'max-bandwidth': 1_000_000 }],
];

test("a source fails on the return path's bad messages with QEMU 10.0's texts, guest running", async (t) => {
  const bin = requireQemu(t, '10.0');
  if (!bin) return;
  const qemu = await startQemu(bin, ['-m', '16M']);
  t.after(() => qemu.stop());
  const qemuExec = async (cmd: string, args?: unknown) => {
    const r = await qemu.qmp.execute(cmd, args);
    if (!('return' in r)) throw new Error(`${cmd}: ${JSON.stringify(r)}`);
    return r.return;
  };
  const { qmp: q } = await startBareVm(t);
  const oursExec = (cmd: string, args?: unknown) => q.executeRaw(cmd, args as Record<string, unknown>);
  for (const [cmd, args] of SETUP) {
    await qemuExec(cmd, args);
    await oursExec(cmd, args);
  }
  for (const [name, reply] of CASES) {
    const theirs = await runner(qemuExec)(await fakeDestination(t, reply));
    const ours = await runner(oursExec)(await fakeDestination(t, reply));
    assert.equal(theirs.status, 'failed', name);
    assert.equal(theirs.runstate, 'running', name);
    assert.deepEqual(ours, theirs, name);
  }
});
