/**
 * A scripted postcopy destination for tests of a source: it reads the stream as QEMU's
 * loadvm does (header, commands, the package, RAM records), keeps a copy of the RAM it was
 * sent (discards zero it, as QEMU's do), and answers on the return path with whatever the
 * test's hooks write, SHUT 0 at EOF unless told otherwise.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { QemuFileReader } from '../../src/migration/stream/qemu-file.js';

export type StreamEvent =
  | { kind: 'cmd'; cmd: number; data: Buffer }
  | { kind: 'package'; events: StreamEvent[] }
  | { kind: 'section'; type: number; name?: string }
  | { kind: 'page'; block: string; offset: number; zero: boolean }
  | { kind: 'eof' };

export interface FakeDestHooks {
  /** Called for every event, in order; may write return-path messages with `send`. */
  onEvent?(ev: StreamEvent, send: (type: number, payload: Buffer, after?: Buffer) => void): void;
  /** Whether to answer EOF with SHUT 0 (default true). */
  shutAtEof?: boolean;
  /** A resumed postcopy's connection: no header, commands straight away. */
  resumed?: boolean;
  /** RAM to start from (a previous connection's), instead of zeros. */
  ram?: Map<string, Buffer>;
}

export interface FakeDest {
  server: Server;
  events: StreamEvent[];
  /** The RAM it holds, by block name. */
  ram: Map<string, Buffer>;
  /** Resolves when the stream ended (EOF read) or failed (with the error). */
  done: Promise<Error | undefined>;
  sockets: Socket[];
  close(): void;
}

export function rpMessage(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(payload.length, 2);
  return Buffer.concat([h, payload]);
}

/** Listens on `path` for one source, with `blocks` (name -> size) of RAM. */
export async function fakePostcopyDest(
  path: string,
  blocks: Record<string, number>,
  hooks: FakeDestHooks = {},
): Promise<FakeDest> {
  const events: StreamEvent[] = [];
  const ram = hooks.ram ?? new Map(Object.entries(blocks).map(([k, v]) => [k, Buffer.alloc(v)]));
  const sockets: Socket[] = [];
  let finish: (e: Error | undefined) => void = () => {};
  const done = new Promise<Error | undefined>((r) => {
    finish = r;
  });
  const server = createServer((sock) => {
    sockets.push(sock);
    sock.on('error', () => {});
    const send = (type: number, payload: Buffer, after?: Buffer) => {
      if (!sock.destroyed)
        sock.write(after ? Buffer.concat([rpMessage(type, payload), after]) : rpMessage(type, payload));
    };
    const r = new QemuFileReader(sock);
    const emit = (ev: StreamEvent) => {
      events.push(ev);
      hooks.onEvent?.(ev, send);
    };
    (hooks.resumed ? readBody(r, ram, emit) : readStream(r, ram, emit)).then(
      () => {
        if (hooks.shutAtEof !== false) send(1, Buffer.alloc(4));
        finish(undefined);
      },
      (e: Error) => finish(e),
    );
  });
  await new Promise<void>((res) => server.listen(path, res));
  return {
    server,
    events,
    ram,
    done,
    sockets,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

async function readStream(r: QemuFileReader, ram: Map<string, Buffer>, emit: (ev: StreamEvent) => void) {
  await r.need(13, 'header');
  r.skip(8);
  r.u8();
  const n = r.be32();
  await r.need(n, 'machine');
  r.skip(n);
  await readBody(r, ram, emit);
}

/** Commands and sections until EOF (or the end of a package's bytes). */
async function readBody(r: QemuFileReader, ram: Map<string, Buffer>, emit: (ev: StreamEvent) => void) {
  let last = '';
  for (;;) {
    if (!(await hasMore(r))) return;
    await r.need(1, 'type');
    const t = r.u8();
    if (t === 0x00) {
      emit({ kind: 'eof' });
      return;
    }
    if (t === 0x08) {
      await r.need(4, 'cmd');
      const cmd = r.be16();
      const len = r.be16();
      await r.need(len, 'cmd data');
      const data = r.bytes(len);
      emit({ kind: 'cmd', cmd, data });
      if (cmd === 6) discard(data, ram);
      if (cmd === 7) {
        const size = data.readUInt32BE(0);
        await r.need(size, 'package');
        const pkg = r.bytes(size);
        const inner: StreamEvent[] = [];
        const pr = new QemuFileReader({ resume() {} });
        pr.push(pkg);
        pr.end();
        await readBody(pr, ram, (ev) => inner.push(ev));
        emit({ kind: 'package', events: inner });
      }
      continue;
    }
    if (t === 0x01 || t === 0x04) {
      await r.need(4, 'section');
      r.be32();
      const name = await r.cstr('idstr');
      await r.need(8, 'section');
      r.skip(8);
      emit({ kind: 'section', type: t, name });
      if (name === 'ram') last = await ramRecords(r, ram, emit, last);
      else {
        const size = name === 'timer' ? 24 : 104;
        await r.need(size, name);
        r.skip(size);
      }
    } else if (t === 0x02 || t === 0x03) {
      await r.need(4, 'section');
      r.be32();
      emit({ kind: 'section', type: t });
      last = await ramRecords(r, ram, emit, last);
    } else throw new Error(`fake destination: unexpected byte 0x${t.toString(16)} at ${r.offset - 1}`);
    await r.need(5, 'footer');
    if (r.u8() !== 0x7e) throw new Error('fake destination: no footer');
    r.be32();
  }
}

async function hasMore(r: QemuFileReader): Promise<boolean> {
  if (r.available > 0) return true;
  return !(await r.atEnd());
}

async function ramRecords(
  r: QemuFileReader,
  ram: Map<string, Buffer>,
  emit: (ev: StreamEvent) => void,
  lastBlock: string,
): Promise<string> {
  let last = lastBlock;
  for (;;) {
    await r.need(8, 'ram record');
    const hi = r.be32();
    const lo = r.be32();
    const flags = lo & 0xfff;
    const addr = hi * 2 ** 32 + (lo - flags);
    if (flags & 0x10) return last;
    if (flags & 0x04) {
      let left = addr;
      while (left > 0) {
        await r.cstr('block');
        await r.need(8, 'len');
        left -= r.be64();
      }
      continue;
    }
    if (flags & 0x200) continue;
    if (!(flags & 0x20)) last = await r.cstr('block');
    const host = ram.get(last)!;
    if (flags & 0x02) {
      await r.need(1, 'zero');
      r.u8();
      host.fill(0, addr, addr + 4096);
      emit({ kind: 'page', block: last, offset: addr, zero: true });
    } else if (flags & 0x08) {
      await r.need(4096, 'page');
      r.copyTo(host, addr, 4096);
      emit({ kind: 'page', block: last, offset: addr, zero: false });
    } else throw new Error(`fake destination: ram flags 0x${flags.toString(16)}`);
  }
}

function discard(data: Buffer, ram: Map<string, Buffer>): void {
  const n = data[1]!;
  const host = ram.get(data.subarray(2, 2 + n).toString('latin1'))!;
  for (let at = 3 + n; at < data.length; at += 16) {
    const start = Number(data.readBigUInt64BE(at));
    const len = Number(data.readBigUInt64BE(at + 8));
    host.fill(0, start, start + len);
  }
}
