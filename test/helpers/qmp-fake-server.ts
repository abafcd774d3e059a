/**
 * A scripted QMP server on a unix socket for client-side tests: it greets (or, with
 * `greet: false`, stays silent), records every message a client sends, answers each request
 * through `answer` (default: `{"return": {}}`; `'no reply'`: none) with the request's id, and can send events or
 * drop its clients. Independent of src/qmp, so clients are not checked against our server.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export type FakeAnswer = { return: unknown } | { error: { class: string; desc: string } };

export interface FakeQmp {
  path: string;
  /** Every message received, parsed, in order (qmp_capabilities included). */
  received: Record<string, unknown>[];
  /** Sends an event to every client. */
  event(name: string, data?: Record<string, unknown>): void;
  /** Closes every client's connection. */
  dropClients(): void;
  /** Writes one raw line (a message the test makes, valid QMP or not) to every client. */
  sendRaw(line: string): void;
}

const GREETING = {
  QMP: { version: { qemu: { micro: 0, minor: 0, major: 10 }, package: 'fake' }, capabilities: [] },
};

/** Starts the server in a new temp dir; it and the dir are gone after the test. */
export async function startFakeQmp(
  t: TestContext,
  options: { greet?: boolean; answer?: (msg: Record<string, unknown>) => FakeAnswer | 'no reply' } = {},
): Promise<FakeQmp> {
  const dir = mkdtempSync(join(tmpdir(), 'qmigrate-fakeqmp-'));
  const path = join(dir, 'qmp.sock');
  const clients = new Set<Socket>();
  const received: Record<string, unknown>[] = [];
  const server = createServer((sock) => {
    clients.add(sock);
    sock.on('close', () => clients.delete(sock));
    sock.on('error', () => {});
    if (options.greet === false) return;
    sock.write(`${JSON.stringify(GREETING)}\r\n`);
    let buf = '';
    sock.on('data', (d) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        received.push(msg);
        const reply =
          msg.execute === 'qmp_capabilities' ? { return: {} } : (options.answer?.(msg) ?? { return: {} });
        if (reply === 'no reply') continue;
        sock.write(`${JSON.stringify({ ...reply, ...('id' in msg ? { id: msg.id } : {}) })}\r\n`);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(async () => {
    for (const c of clients) c.destroy();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    path,
    received,
    event(name, data) {
      const e = {
        event: name,
        ...(data ? { data } : {}),
        timestamp: { seconds: 1700000000, microseconds: 0 },
      };
      for (const c of clients) c.write(`${JSON.stringify(e)}\r\n`);
    },
    dropClients() {
      for (const c of clients) c.destroy();
    },
    sendRaw(line) {
      for (const c of clients) c.write(`${line}\r\n`);
    },
  };
}
