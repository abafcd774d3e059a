/**
 * Plays raw QMP bytes at a server and collects its reply lines, for conformance tests that
 * compare two servers. After each step it sends a marker command with a unique id and reads
 * until that marker's reply, so every reply is attributed to its step without timing guesses.
 */
import { connect, type Socket } from 'node:net';

export class RawSession {
  readonly #sock: Socket;
  #buf = '';
  readonly #lines: string[] = [];
  #wake: (() => void) | undefined;
  #closed = false;
  #marker = 0;

  private constructor(sock: Socket) {
    this.#sock = sock;
    sock.on('data', (d) => {
      this.#buf += d.toString('utf8');
      for (let i = this.#buf.indexOf('\n'); i >= 0; i = this.#buf.indexOf('\n')) {
        this.#lines.push(this.#buf.slice(0, i + 1));
        this.#buf = this.#buf.slice(i + 1);
      }
      this.#wake?.();
    });
    sock.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
    sock.on('error', () => {});
  }

  static async open(path: string): Promise<RawSession> {
    const sock = await new Promise<Socket>((res, rej) => {
      const s = connect(path, () => res(s));
      s.once('error', rej);
    });
    return new RawSession(sock);
  }

  async #line(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = this.#lines.shift();
      if (l !== undefined) return l;
      if (this.#closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no reply in time');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.#wake = () => {
          clearTimeout(t);
          r();
        };
      });
      this.#wake = undefined;
    }
  }

  /** The greeting line. */
  greeting(): Promise<string> {
    return this.#line(10_000);
  }

  /**
   * Sends `bytes`, then a marker, and returns every line that came before the marker's reply
   * (CRLF kept). The marker is `query-version`, harmless in every state.
   */
  async step(bytes: string | Buffer, timeoutMs = 10_000): Promise<string[]> {
    const id = `__marker${++this.#marker}`;
    this.#sock.write(bytes);
    this.#sock.write(`{"execute": "query-version", "id": "${id}"}\n`);
    const out: string[] = [];
    for (;;) {
      const l = await this.#line(timeoutMs);
      if (l.includes(`"id": "${id}"`)) return out;
      out.push(l);
    }
  }

  close(): void {
    this.#sock.destroy();
  }
}
