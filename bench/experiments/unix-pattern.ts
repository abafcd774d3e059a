/**
 * The single-channel stream's write pattern (an 8-byte header buffer, then a view of the
 * 4 KiB page, corked into 1 MiB batches) from one Node process to another that only reads:
 * how fast the socket moves it when the receiver does no work.
 *
 *   node --import tsx bench/experiments/unix-pattern.ts [unix|tcp] [MiB] [batch KiB]
 */
import { fork } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PAGE = 4096;
const [role, transport = 'unix', mibArg = '1024', batchArg = '1024'] =
  process.argv[2] === 'receive' ? process.argv.slice(2) : ['send', ...process.argv.slice(2)];
const path = join(tmpdir(), `qmigrate-pattern-${process.env.PATTERN_ID ?? process.pid}.sock`);
const PORT = 45555;

if (role === 'receive') {
  const server = createServer((s) => {
    const c0 = process.cpuUsage();
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
    });
    s.on('end', () => {
      const c = process.cpuUsage(c0);
      process.send?.({ got, cpu: (c.user + c.system) / 1e6 });
      server.close();
    });
  });
  rmSync(path, { force: true });
  const ready = () => process.send?.('ready');
  if (transport === 'unix') server.listen(path, ready);
  else server.listen(PORT, '127.0.0.1', ready);
} else {
  const size = Number(mibArg) << 20;
  const batch = Number(batchArg) << 10;
  const host = Buffer.allocUnsafe(size);
  for (let o = 0; o < size; o += 1 << 24) randomFillSync(host, o, Math.min(1 << 24, size - o));
  const child = fork(fileURLToPath(import.meta.url), ['receive', transport], {
    execArgv: process.execArgv,
    env: { ...process.env, PATTERN_ID: String(process.pid) },
  });
  await new Promise((r) => child.once('message', r));
  const s: Socket = transport === 'unix' ? connect(path) : connect(PORT, '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let page = 0;
  const pump = (): void => {
    while (page < size / PAGE) {
      const headers = Buffer.allocUnsafe(8 * Math.ceil(batch / PAGE) + 8);
      let h = 0;
      let bytes = 0;
      s.cork();
      while (bytes < batch && page < size / PAGE) {
        headers.writeUInt32BE(0, h);
        headers.writeUInt32BE((page * PAGE) | 0x28, h + 4); // PAGE | CONTINUE, as QEMU writes it
        s.write(headers.subarray(h, h + 8));
        s.write(host.subarray(page * PAGE, (page + 1) * PAGE));
        h += 8;
        bytes += PAGE + 8;
        page++;
      }
      s.uncork();
      if (s.writableLength >= batch) {
        s.once('drain', pump);
        return;
      }
    }
    s.end();
  };
  pump();
  const r = (await new Promise((res) => child.on('message', res))) as { got: number; cpu: number };
  const c = process.cpuUsage(cpu0);
  console.log(
    `${transport}, ${batch >> 10} KiB batches: ${r.got} bytes in ${(performance.now() - t0).toFixed(0)} ms, ` +
      `CPU s sender ${((c.user + c.system) / 1e6).toFixed(2)} / receiver ${r.cpu.toFixed(2)}`,
  );
}
