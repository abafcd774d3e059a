/**
 * The fault proxy of `npm run faults`: it sits between a migration source and its destination
 * (tcp or unix; every multifd channel is one more connection through it), counts the bytes the
 * source sent over all connections, and at a byte offset acts: closes both sides, resets them,
 * stops reading the source, or calls the row's hook (which kills a process). Nothing of QEMU's.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';

/** What happens once the source has sent `at` bytes. */
export type ProxyAction = 'close' | 'reset' | 'stall' | 'hook';

export interface ProxyPlan {
  /** Bytes from the source (all connections together) before the action; undefined: never. */
  at?: number;
  action?: ProxyAction;
  /** For `hook`: run once at the offset, after the proxy stopped forwarding. */
  hook?: () => void;
}

export type Where = { path: string } | { host: string; port: number };

interface Pair {
  client: Socket;
  upstream: Socket;
}

export class FaultProxy {
  /** Bytes forwarded from the source so far. */
  bytes = 0;
  fired = false;
  readonly #server: Server;
  readonly #pairs: Pair[] = [];
  readonly #plan: ProxyPlan;
  readonly #target: Where;
  #listen: Where;

  private constructor(target: Where, listen: Where, plan: ProxyPlan) {
    this.#target = target;
    this.#listen = listen;
    this.#plan = plan;
    this.#server = createServer({ pauseOnConnect: false }, (c) => this.#accept(c));
  }

  /** Listens on `listen` (tcp port 0: any) and forwards each connection to `target`. */
  static async start(target: Where, listen: Where, plan: ProxyPlan = {}): Promise<FaultProxy> {
    const p = new FaultProxy(target, listen, plan);
    await new Promise<void>((resolve, reject) => {
      p.#server.once('error', reject);
      if ('path' in listen) p.#server.listen(listen.path, resolve);
      else p.#server.listen(listen.port, listen.host, resolve);
    });
    const a = p.#server.address();
    if (a && typeof a === 'object') p.#listen = { host: a.address, port: a.port };
    return p;
  }

  /** Where the proxy listens (the real tcp port once listening). */
  get where(): Where {
    return this.#listen;
  }

  /** The migration URI of the proxy's end. */
  get uri(): string {
    const l = this.#listen;
    return 'path' in l ? `unix:${l.path}` : `tcp:${l.host}:${l.port}`;
  }

  #accept(client: Socket): void {
    const t = this.#target;
    const upstream = 'path' in t ? netConnect(t.path) : netConnect(t.port, t.host);
    const pair = { client, upstream };
    this.#pairs.push(pair);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    // An orderly end goes through 'end' (end() flushes what is queued); destroy() only after
    // an error, as it drops the bytes still queued for the other side.
    client.on('close', (hadError) => hadError && upstream.destroy());
    upstream.on('close', (hadError) => hadError && client.destroy());
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    upstream.on('data', (d) => {
      if (!this.fired || this.#plan.action !== 'close') client.write(d);
    });
    client.on('data', (d) => {
      if (this.fired) return; // after a close or a hook nothing more reaches the destination
      const plan = this.#plan;
      const at = plan.at ?? Number.POSITIVE_INFINITY;
      const room = at - this.bytes;
      this.bytes += d.length;
      if (room > d.length) {
        if (!upstream.write(d)) {
          client.pause();
          upstream.once('drain', () => client.resume());
        }
        return;
      }
      // Nothing more is forwarded from here on; the action waits until the bytes before the
      // offset left the process (destroying a socket drops its queued writes).
      this.fired = true;
      client.pause();
      if (room > 0) upstream.write(d.subarray(0, room), () => this.#fire());
      else this.#fire();
    });
    if (this.fired) this.#act(pair);
  }

  #fire(): void {
    for (const pair of this.#pairs) this.#act(pair);
    if (this.#plan.action === 'hook') this.#plan.hook?.();
  }

  /** The action on one connection (also on one that comes after the offset). */
  #act({ client, upstream }: Pair): void {
    const action = this.#plan.action;
    if (action === 'reset') {
      // RST on tcp; a unix socket has none, and is closed at once with its data unread.
      for (const sock of [client, upstream]) {
        try {
          sock.resetAndDestroy();
        } catch {
          sock.destroy();
        }
      }
    } else if (action === 'close') {
      // close(2) on both: the destination reads an end of stream; the source's next write
      // fails (the kernel answers it, or the unread bytes, with a reset).
      client.destroy();
      upstream.destroy();
    } else {
      // stall and hook: the source's bytes stay in its socket; nothing more is read.
      client.pause();
    }
  }

  /** Ends every connection (reset) and the listener. */
  async stop(): Promise<void> {
    for (const { client, upstream } of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

/**
 * A QMP relay in front of a source's monitor, for the orchestrator (runMigration) in the
 * stall rows: every command passes unchanged but `migrate`, whose address (uri or the main
 * channel) is handed to `redirect`, which returns the address to send instead (a FaultProxy's),
 * so the orchestrator's migration goes through a proxy it does not know of.
 */
export class QmpRelay {
  readonly path: string;
  readonly #server: Server;
  readonly #socks: Socket[] = [];

  private constructor(path: string, monitor: string, redirect: (to: Where) => Promise<Where>) {
    this.path = path;
    this.#server = createServer((client) => {
      const up = netConnect(monitor);
      this.#socks.push(client, up);
      for (const [a, b] of [
        [client, up],
        [up, client],
      ] as const) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
      up.pipe(client);
      let buf = '';
      let chain = Promise.resolve();
      client.on('data', (d) => {
        buf += d;
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          chain = chain.then(async () => {
            up.write(`${await rewrite(line, redirect)}\n`);
          });
        }
      });
    });
  }

  static async start(path: string, monitor: string, redirect: (to: Where) => Promise<Where>) {
    const r = new QmpRelay(path, monitor, redirect);
    await new Promise<void>((resolve) => r.#server.listen(path, resolve));
    return r;
  }

  async stop(): Promise<void> {
    for (const s of this.#socks) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

type Addr = { transport?: string; type?: string; path?: string; host?: string; port?: string };

/** One QMP line with a `migrate`'s address replaced; any other line as it came. */
async function rewrite(line: string, redirect: (to: Where) => Promise<Where>): Promise<string> {
  let msg: { execute?: string; arguments?: { uri?: string; channels?: { addr: Addr }[] } };
  try {
    msg = JSON.parse(line);
  } catch {
    return line;
  }
  const args = msg.arguments;
  if (msg.execute !== 'migrate' || !args) return line;
  const addr = args.channels?.[0]?.addr;
  let to: Where | undefined;
  if (addr?.type === 'unix' && addr.path) to = { path: addr.path };
  else if (addr?.type === 'inet' && addr.host) to = { host: addr.host, port: Number(addr.port) };
  else if (args.uri?.startsWith('unix:')) to = { path: args.uri.slice(5) };
  else if (args.uri?.startsWith('tcp:')) {
    const i = args.uri.lastIndexOf(':');
    to = { host: args.uri.slice(4, i), port: Number(args.uri.slice(i + 1)) };
  }
  if (!to) return line;
  const via = await redirect(to);
  if (addr) {
    const channel = args.channels![0]!;
    channel.addr =
      'path' in via
        ? { transport: 'socket', type: 'unix', path: via.path }
        : { transport: 'socket', type: 'inet', host: via.host, port: String(via.port) };
  } else args.uri = 'path' in via ? `unix:${via.path}` : `tcp:${via.host}:${via.port}`;
  return JSON.stringify(msg);
}
