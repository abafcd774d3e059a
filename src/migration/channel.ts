/**
 * Incoming connections (migration/channel.c, migration.c's migration_ioc_process_incoming,
 * multifd.c multifd_recv_new_channel): an accepted socket is read into buffers we choose, and
 * with multifd its first bytes tell the main stream (the stream magic) from a multifd channel
 * (an init packet); IncomingChannels gathers them until the load can start, or fails setup.
 */
import type { Socket } from 'node:net';
import { MultifdReceiver } from './multifd.js';
import { MULTIFD_INIT_SIZE } from './stream/multifd-packet.js';
import { QemuFileReader, StreamError } from './stream/qemu-file.js';
import { QEMU_VM_FILE_MAGIC } from './stream/savevm.js';
import { isStrayConnection, SOURCE_CLOSED_FIRST } from './tls/tls.js';
import { type ReadSink, readInto } from './transport/socket.js';

/** Reads go to the free tail of a 1 MiB buffer, and a new one starts below 64 KiB of tail. */
const POOL = 1 << 20;
const MIN_READ = 64 << 10;
/**
 * How far the main stream is read ahead of the loader. Little: the loader copies each read's
 * pages while the kernel's copy is still in the CPU's cache; a backlog of many MiB (the
 * loader pauses for the monitors) was measured to cost a fifth more CPU on a 1 GiB stream.
 */
const READ_AHEAD = 2 << 20;
/**
 * What may be read ahead of the loader on a multifd main channel: with multifd, loading waits
 * for every channel and QEMU reads nothing of the main one meanwhile, so a source that never
 * opens them meets back-pressure and stays active. That channel carries headers only.
 */
const MULTIFD_MAIN_AHEAD = 256 << 10;

/**
 * Feeds a QemuFileReader with views of large buffers: no allocation or copy per read. A
 * buffer the reader has consumed entirely is used again (the reader copies out what it
 * keeps), so a long stream cycles through a few warm buffers instead of mapping fresh memory.
 */
class StreamSink implements ReadSink {
  #pool: Buffer = Buffer.allocUnsafe(POOL);
  #at = 0;
  /** Stream bytes pushed so far (counting any the reader was given before this sink). */
  #pushed: number;
  /** Full buffers, oldest first, with the stream offset their last byte ends at. */
  readonly #retired: { buf: Buffer; end: number }[] = [];
  constructor(readonly reader: QemuFileReader) {
    this.#pushed = reader.offset + reader.available;
  }

  target(): Buffer {
    if (this.#pool.length - this.#at < MIN_READ) {
      this.#retired.push({ buf: this.#pool, end: this.#pushed });
      const oldest = this.#retired[0]!;
      this.#pool = this.reader.offset >= oldest.end ? this.#retired.shift()!.buf : Buffer.allocUnsafe(POOL);
      this.#at = 0;
    }
    return this.#pool.subarray(this.#at);
  }

  filled(n: number): boolean {
    const chunk = this.#pool.subarray(this.#at, this.#at + n);
    this.#at += n;
    this.#pushed += n;
    return this.reader.push(chunk);
  }
}

export interface ChannelHandlers {
  /** The connection is the main stream; `socket` also carries the return path. */
  main(socket: Socket, reader: QemuFileReader): void;
  /** The connection is multifd channel `id` (its packets are being applied already). */
  multifd(id: number, socket: Socket): void;
  /**
   * The connection failed before or while being a multifd channel. `initial`: in its init
   * packet, which QEMU reports as `failed to receive packet via multifd channel N: ...`.
   */
  error(socket: Socket, e: Error, initial: boolean): void;
}

/** Idle time before TCP keepalive probes start on an incoming connection. */
export const KEEPALIVE_IDLE_MS = 60_000;

/** QEMU's texts for a connection that ends before it says what it is (channel.c, io/). */
const PEEK_FAILED = 'Failed to peek at channel';
const EARLY_EOF = 'Unexpected end-of-file before all data were read';

/**
 * Takes over an accepted connection. Without a multifd receiver it is the main stream;
 * with one, its first bytes decide, as QEMU decides: the stream magic makes it the main
 * channel, anything else must be a 64-byte multifd init packet.
 * @returns the socket, read from now on into the buffers the channel picks.
 */
export function acceptChannel(
  accepted: Socket,
  receiver: MultifdReceiver | undefined,
  count: number,
  on: ChannelHandlers,
): Socket {
  return new AcceptedChannel(receiver, count, on).take(accepted);
}

/** One accepted connection: its first bytes until it is known, then where its bytes go. */
class AcceptedChannel {
  readonly #receiver: MultifdReceiver | undefined;
  readonly #count: number;
  readonly #on: ChannelHandlers;
  #socket!: Socket;
  /** Where bytes go once the channel is known; until then they fill `#head`. */
  #sink: ReadSink | undefined;
  /** What the end of the connection means for what the channel became. */
  #ended: (() => void) | undefined;
  readonly #head = Buffer.allocUnsafe(MULTIFD_INIT_SIZE);
  #got = 0;
  #mainReader: QemuFileReader | undefined;

  constructor(receiver: MultifdReceiver | undefined, count: number, on: ChannelHandlers) {
    this.#receiver = receiver;
    this.#count = count;
    this.#on = on;
  }

  take(accepted: Socket): Socket {
    // Without multifd there is nothing to tell apart: read the stream from the first byte.
    if (!this.#receiver) this.#asMain(undefined, false);
    const socket = readInto(accepted, {
      target: () => this.#sink?.target() ?? this.#head.subarray(this.#got),
      filled: (n) => {
        if (this.#sink) return this.#sink.filled(n);
        this.#got += n;
        return this.#classify();
      },
    });
    this.#socket = socket;
    // QEMU's destination has no keepalive and waits forever on a source whose host died
    // without a FIN; with it, the kernel ends such a connection (ETIMEDOUT) after its probes.
    socket.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    socket.on('end', () => this.#finish());
    socket.on('close', () => this.#finish());
    socket.on('error', (e) =>
      this.#mainReader ? this.#mainReader.fail(e) : this.#on.error(socket, e, false),
    );
    if (this.#mainReader) this.#on.main(socket, this.#mainReader);
    socket.resume();
    return socket;
  }

  /** Makes this the main stream; `announce` once the socket exists. */
  #asMain(first: Buffer | undefined, announce = true): void {
    // With multifd, loading waits for every channel, and QEMU reads nothing of the main
    // channel meanwhile: a source that never opens them (no multifd on its side) must meet
    // back-pressure and stay active, not hand a whole stream to a read-ahead and complete.
    // That channel carries headers and flushes only, so a small read-ahead costs nothing.
    const reader = new QemuFileReader(
      { resume: () => this.#socket.resume() },
      this.#receiver ? MULTIFD_MAIN_AHEAD : READ_AHEAD,
    );
    if (first?.length) reader.push(first);
    this.#mainReader = reader;
    this.#ended = () => reader.end();
    this.#sink = new StreamSink(reader);
    if (announce) this.#on.main(this.#socket, reader);
  }

  /** Reads on while the head cannot tell yet; false when the connection failed. */
  #classify(): boolean {
    const head = this.#head;
    // Four bytes tell the main stream (QEMU peeks at as many), which may pause after them.
    if (this.#got >= 4 && head.readUInt32BE(0) === QEMU_VM_FILE_MAGIC) {
      this.#asMain(head.subarray(0, this.#got));
      return true;
    }
    if (this.#got < MULTIFD_INIT_SIZE) return true;
    let initial = true;
    try {
      const id = MultifdReceiver.parseInit(head, this.#count);
      initial = false;
      const ch = this.#receiver!.channel(
        id,
        () => this.#socket.resume(),
        (e) => this.#on.error(this.#socket, e, false),
      );
      this.#sink = ch;
      this.#ended = () => ch.end();
      this.#on.multifd(id, this.#socket);
      return true;
    } catch (e) {
      this.#ended = () => {};
      this.#on.error(this.#socket, e as Error, initial);
      return false;
    }
  }

  #finish(): void {
    if (this.#ended) {
      this.#ended();
      return;
    }
    this.#ended = () => {};
    // Fewer than 4 bytes cannot be told apart; between 4 and 64 it is a short init packet.
    if (this.#got < 4)
      this.#on.error(this.#socket, new StreamError(PEEK_FAILED, this.#got, 'multifd'), false);
    else this.#on.error(this.#socket, new StreamError(EARLY_EOF, this.#got, 'multifd'), true);
  }
}

/** How long the other channels may still come once a channel closed during setup. */
export const SETUP_GRACE_MS = 2000;

export interface IncomingEvents {
  /** The main channel and every multifd channel are there: load the stream. */
  start(main: Socket, reader: QemuFileReader): void;
  /**
   * Setup failed (the connections are closed): `desc` for query-migrate's error-desc, and
   * `report`, the line QEMU prints (on stderr, or as it exits with exit-on-error).
   */
  fail(desc: string, report: string): void;
  /** A connection was dropped before it spoke TLS; the migration still waits (QEMU prints it). */
  ignored?(report: string): void;
}

/**
 * The connections of one incoming socket migration until loading starts
 * (migration.c migration_ioc_process_incoming, multifd.c multifd_recv_new_channel): sorts
 * them into the main channel and `count` multifd channels, and fails the migration at once,
 * as QEMU does, on a connection that is neither. Where QEMU would wait forever on a peer that
 * is gone (the main channel or a multifd channel closed before the rest came), this fails
 * too; a peer that is there but silent is waited for, as QEMU waits.
 */
export class IncomingChannels {
  readonly #receiver: MultifdReceiver | undefined;
  readonly #count: number;
  readonly #on: IncomingEvents;
  readonly #secure: ((s: Socket) => Promise<Socket>) | undefined;
  readonly #conns = new Set<Socket>();
  #closed = false;
  #main: Socket | undefined;
  #reader: QemuFileReader | undefined;
  #channels = 0;
  #state: 'setup' | 'started' | 'failed' = 'setup';
  #grace: NodeJS.Timeout | undefined;

  /**
   * @param secure the TLS step each connection takes before it is read (QEMU's
   *   migration_tls_channel_process_incoming): resolves with the socket to read, or rejects
   *   with what failed, which fails the migration.
   */
  constructor(
    receiver: MultifdReceiver | undefined,
    count: number,
    on: IncomingEvents,
    secure?: (s: Socket) => Promise<Socket>,
  ) {
    this.#receiver = receiver;
    this.#count = count;
    this.#on = on;
    this.#secure = secure;
  }

  /** Takes an accepted connection. */
  accept(accepted: Socket): void {
    // Once loading started (or failed) nothing more is taken; without multifd the main
    // stream is the only connection.
    if (this.#state !== 'setup' || (!this.#receiver && this.#main)) {
      accepted.destroy();
      return;
    }
    if (!this.#secure) {
      this.#take(accepted);
      return;
    }
    // Before the TLS layer takes the connection over: the probes go on the TCP socket.
    accepted.setKeepAlive(true, KEEPALIVE_IDLE_MS);
    this.#conns.add(accepted);
    this.#secure(accepted).then(
      (s) => {
        this.#conns.delete(accepted);
        if (this.#state !== 'setup' || this.#closed) s.destroy();
        else this.#take(s);
      },
      (e: Error) => {
        this.#conns.delete(accepted);
        accepted.destroy();
        if (this.#closed || this.#state !== 'setup') return;
        // A connection that never spoke TLS cannot end a migration that TLS guards (a port
        // scan would): said and ignored, as QEMU 10.0 does. A TLS client that a check refused
        // fails it (QEMU listens on in `setup`), so that whoever waits for it learns why.
        if (isStrayConnection(e)) this.#on.ignored?.(e.message);
        else this.#fail(this.#tlsFailure(e));
      },
    );
  }

  /**
   * A multifd source that fails on one channel closes the others unused: a session closed
   * before its first byte then says nothing of this side's certificate, least of all when
   * another channel, which passed the same check, came before it.
   */
  #tlsFailure(e: Error): string {
    if (!this.#receiver || !e.message.startsWith(SOURCE_CLOSED_FIRST)) return e.message;
    const came = (this.#main ? 1 : 0) + this.#channels;
    return came > 0
      ? `${SOURCE_CLOSED_FIRST} on one channel after ${came} had come: it failed on another of its channels, not on this destination's certificate (its own error says why)`
      : `${SOURCE_CLOSED_FIRST}: it refused this destination's certificate or name, or failed on another of its channels (its own error says which)`;
  }

  /** Sorts a connection that is ready to be read (after its TLS step). */
  #take(accepted: Socket): void {
    let id: number | undefined;
    const s = acceptChannel(accepted, this.#receiver, this.#count, {
      main: (sock, reader) => {
        // A second main stream is not read (QEMU keeps the first as well).
        if (this.#main) {
          sock.destroy();
          return;
        }
        this.#main = sock;
        this.#reader = reader;
        this.#maybeStart();
      },
      multifd: (channel) => {
        id = channel;
        this.#channels++;
        this.#maybeStart();
      },
      error: (sock, e, initial) => {
        if (this.#state !== 'setup') {
          // A channel failed while loading: the load must not wait for it.
          this.#receiver?.fail(e);
          sock.destroy();
          this.#main?.destroy(e);
          return;
        }
        const n = this.#receiver?.created ?? 0;
        this.#fail(
          e.message,
          initial ? `failed to receive packet via multifd channel ${n}: ${e.message}` : e.message,
        );
      },
    });
    this.#conns.add(s);
    s.on('close', () => {
      this.#conns.delete(s);
      if (this.#state !== 'setup') return;
      if (s === this.#main) this.#mainClosed();
      // A channel at its first SYNC has stopped reading and would not see the close: one
      // that did was dropped before it got there, by a source that gave up.
      else if (id !== undefined) this.#fail(`multifd channel ${id} closed before the migration started`);
    });
  }

  /** Closes every connection (the VM quits, or setup failed). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#grace);
    for (const c of this.#conns) c.destroy();
    this.#conns.clear();
  }

  #maybeStart(): void {
    if (this.#state !== 'setup' || !this.#main || !this.#reader || this.#channels < this.#count) return;
    this.#state = 'started';
    clearTimeout(this.#grace);
    this.#on.start(this.#main, this.#reader);
  }

  /**
   * The main channel closed before the multifd channels all came. A source that completes
   * quickly may close it before this side has accepted the rest, so they get a moment.
   */
  #mainClosed(): void {
    this.#grace ??= setTimeout(() => {
      this.#fail(
        `the main channel closed before all multifd channels connected (${this.#channels} of ${this.#count})`,
      );
    }, SETUP_GRACE_MS);
  }

  #fail(desc: string, report = desc): void {
    if (this.#state !== 'setup') return;
    this.#state = 'failed';
    this.close();
    this.#on.fail(desc, report);
  }
}
