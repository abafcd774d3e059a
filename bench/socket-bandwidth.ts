/**
 * The machine's socket bandwidth, the ceiling a migration over that socket can approach: a
 * child process writes `bytes` over `streams` connections from a 256 MiB buffer, this process
 * reads them straight into another 256 MiB buffer (no copy in JavaScript, as qmigrate's
 * multifd receive). Node on both ends, so it is the ceiling for Node, with its syscalls.
 */
import { fork } from 'node:child_process';
import { createServer, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readInto } from '../src/migration/transport/socket.js';

const SPAN = 256 << 20;

export interface Bandwidth {
  ms: number;
  mibps: number;
  /** CPU seconds of the sender and the receiver. */
  cpuSend: number;
  cpuRecv: number;
}

export async function socketBandwidth(
  transport: 'unix' | 'tcp',
  streams: number,
  bytes: number,
  dir: string,
): Promise<Bandwidth> {
  const ram = Buffer.alloc(SPAN, 1);
  const per = Math.floor(bytes / streams);
  let got = 0;
  let started = 0;
  let cpu0 = process.cpuUsage();
  let resolveDone!: (t: number) => void;
  let rejectDone!: (e: Error) => void;
  const done = new Promise<number>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  const server = createServer({ pauseOnConnect: true }, (s) => {
    if (started === 0) {
      started = performance.now();
      cpu0 = process.cpuUsage();
    }
    let at = 0;
    readInto(s, {
      target: () => ram.subarray(at, Math.min(SPAN, at + (4 << 20))),
      filled: (n) => {
        at = (at + n) % SPAN;
        got += n;
        if (got >= per * streams) resolveDone(performance.now());
        return true;
      },
    }).on('error', (e) => rejectDone(e));
  });
  const path = join(dir, 'bw.sock');
  await new Promise<void>((r) =>
    transport === 'unix' ? server.listen(path, r) : server.listen(0, '127.0.0.1', r),
  );
  const address = server.address();
  const target = typeof address === 'string' || !address ? path : String(address.port);
  const child = fork(
    fileURLToPath(import.meta.url),
    ['send', transport, target, String(streams), String(per)],
    {
      execArgv: ['--import', 'tsx'],
    },
  );
  const sendCpu = new Promise<number>((r) => child.once('message', (m) => r(Number(m))));
  const end = await done;
  const u = process.cpuUsage(cpu0);
  const cpuSend = await sendCpu;
  server.close();
  child.kill();
  const ms = end - started;
  return { ms, mibps: (per * streams) / 1048576 / (ms / 1000), cpuSend, cpuRecv: (u.user + u.system) / 1e6 };
}

/** The sending child: `send unix|tcp PATH|PORT STREAMS BYTES-PER-STREAM`. */
async function send(transport: string, target: string, streams: number, per: number): Promise<void> {
  const src = Buffer.alloc(SPAN, 7);
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from(
      { length: streams },
      () =>
        new Promise<void>((resolve, reject) => {
          const s = transport === 'unix' ? netConnect(target) : netConnect(Number(target), '127.0.0.1');
          s.on('error', reject);
          s.on('connect', async () => {
            for (let at = 0; at < per; ) {
              const n = Math.min(4 << 20, per - at);
              const off = at % SPAN;
              const ok = s.write(src.subarray(off, Math.min(SPAN, off + n)));
              at += Math.min(n, SPAN - off);
              if (!ok) await new Promise((r) => s.once('drain', r));
            }
            s.end(resolve);
          });
        }),
    ),
  );
  const u = process.cpuUsage(cpu0);
  process.send?.((u.user + u.system) / 1e6);
}

if (process.argv[2] === 'send') {
  const [, , , transport, target, streams, per] = process.argv;
  await send(transport!, target!, Number(streams), Number(per));
}
