/**
 * A deliberately minimal QMP client for tests: one command at a time, replies matched in
 * order, events kept aside. It is independent of src/qmp so that tests of the real client
 * and server are not checked against themselves.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type QmpReply = { return: unknown } | { error: { class: string; desc: string } };

export class MiniQmp {
  readonly greeting: Record<string, unknown>;
  readonly events: Record<string, unknown>[] = [];
  readonly #sock: Socket;
  readonly #lines: string[] = [];
  #waiter: (() => void) | undefined;
  #closed = false;

  private constructor(sock: Socket, greeting: Record<string, unknown>, buffered: string[]) {
    this.#sock = sock;
    this.greeting = greeting;
    this.#lines.push(...buffered);
  }

  static async connect(path: string, timeoutMs: number, exited?: Promise<void>): Promise<MiniQmp> {
    const deadline = Date.now() + timeoutMs;
    let dead = false;
    exited?.then(() => {
      dead = true;
    });
    for (;;) {
      if (dead) throw new Error('process exited');
      try {
        const sock = await new Promise<Socket>((res, rej) => {
          const s = connect(path, () => res(s));
          s.once('error', rej);
        });
        const lines: string[] = [];
        let buf = '';
        const first = await new Promise<string>((res, rej) => {
          const onData = (d: Buffer) => {
            buf += d.toString('utf8');
            let i = buf.indexOf('\n');
            while (i >= 0) {
              lines.push(buf.slice(0, i));
              buf = buf.slice(i + 1);
              i = buf.indexOf('\n');
            }
            if (lines.length) {
              sock.off('data', onData);
              res(lines.shift()!);
            }
          };
          sock.on('data', onData);
          sock.once('error', rej);
        });
        const q = new MiniQmp(sock, JSON.parse(first), lines);
        q.#pending = buf;
        sock.on('data', (d) => q.#onData(d));
        sock.on('close', () => {
          q.#closed = true;
          q.#waiter?.();
        });
        return q;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(50);
      }
    }
  }

  #pending = '';
  #onData(d: Buffer): void {
    this.#pending += d.toString('utf8');
    let i = this.#pending.indexOf('\n');
    while (i >= 0) {
      this.#lines.push(this.#pending.slice(0, i));
      this.#pending = this.#pending.slice(i + 1);
      i = this.#pending.indexOf('\n');
    }
    this.#waiter?.();
  }

  /** Sends raw text (a line is appended) and returns the next non-event message as text. */
  async sendRaw(text: string, timeoutMs = 10_000): Promise<string> {
    this.#sock.write(`${text}\n`);
    return this.nextReply(timeoutMs);
  }

  async nextReply(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.#lines.length) {
        const line = this.#lines.shift()!;
        const msg = JSON.parse(line);
        if ('event' in msg) this.events.push(msg);
        else return line;
      }
      if (this.#closed) throw new Error('QMP connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('QMP reply timed out');
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.#waiter = () => {
          clearTimeout(t);
          res();
        };
      });
      this.#waiter = undefined;
    }
  }

  async execute(command: string, args?: unknown): Promise<QmpReply> {
    const msg = args === undefined ? { execute: command } : { execute: command, arguments: args };
    return JSON.parse(await this.sendRaw(JSON.stringify(msg)));
  }

  close(): void {
    this.#sock.destroy();
  }
}
